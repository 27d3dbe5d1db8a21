"""The requester's compute client keeps at most MAX_ASKS_IN_FLIGHT AskForBid calls in flight per node, so
a job with thousands of shards does not overrun the node's gRPC server (a real server on 127.0.0.1:0)."""

import asyncio

import grpc

from bacalhau.compute.v1 import compute_service_pb2 as cpb
from bacalhau.compute.v1 import compute_service_pb2_grpc as cgrpc
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.clients.compute import MAX_ASKS_IN_FLIGHT, GrpcComputeClient


class HeldAsks(cgrpc.ComputeServiceServicer):
    """Holds every AskForBid until MAX_ASKS_IN_FLIGHT are in flight at once, then answers them all."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.release = asyncio.Event()

    async def AskForBid(self, request, context):
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= MAX_ASKS_IN_FLIGHT:
            self.release.set()
        await self.release.wait()
        self.in_flight -= 1
        return cpb.AskForBidResponse(accepted=True, execution_id=f"e-{request.shard_index}", node_id="n")


async def test_asks_beyond_the_limit_wait_their_turn():
    servicer = HeldAsks()
    server = grpc.aio.server()
    cgrpc.add_ComputeServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = GrpcComputeClient(call_timeout=30)
    try:
        job = pb.Job(id="job-1")
        asks = [client.ask_for_bid(f"127.0.0.1:{port}", job, i) for i in range(3 * MAX_ASKS_IN_FLIGHT)]
        answers = await asyncio.wait_for(asyncio.gather(*asks), 30)
    finally:
        await client.close()
        await server.stop(0)
    assert [a.execution_id for a in answers] == [f"e-{i}" for i in range(3 * MAX_ASKS_IN_FLIGHT)]
    assert servicer.peak == MAX_ASKS_IN_FLIGHT
