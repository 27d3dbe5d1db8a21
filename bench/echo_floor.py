"""The floor the network's figures are compared with, measured in the same run: a grpc.aio unary echo of
1.4 KB between two processes on loopback (plaintext; a generic handler, so no protobuf work either side).
It prints calls/s with 16 calls in flight and with one, and the round trip's p50.

Machines here differ by 2x, so the benchmarks' targets are ratios to this floor (bench_network.py).
Run alone with `python -m bench.echo_floor`.
"""

import asyncio
import statistics
import subprocess
import sys
import time

import grpc

PAYLOAD = b"x" * 1400
METHOD = "/bench.Echo/Echo"
SERVER = """
import asyncio, grpc

async def main():
    async def echo(request, context):
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()

asyncio.run(main())
"""


async def measure(calls: int = 4000) -> dict[str, float]:
    """Calls/s at 16 in flight and at 1, and the p50 round trip (seconds), against an echo server process."""
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            echo = channel.unary_unary(METHOD)
            for _ in range(200):  # warm up
                await echo(PAYLOAD)
            queue = iter(range(calls))

            async def caller() -> None:
                for _ in queue:
                    await echo(PAYLOAD)

            start = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(16)))
            parallel = calls / (time.perf_counter() - start)
            trips = []
            for _ in range(calls // 4):
                began = time.perf_counter()
                await echo(PAYLOAD)
                trips.append(time.perf_counter() - began)
        return {"rate16": parallel, "rate1": 1 / statistics.mean(trips), "rtt_p50": statistics.median(trips)}
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    floor = asyncio.run(measure())
    print(
        f"echo 1.4 KB: {floor['rate16']:.0f} calls/s with 16 in flight, {floor['rate1']:.0f}/s with one, "
        f"round trip p50 {floor['rtt_p50'] * 1000:.2f} ms"
    )
