"""Latency as a client sees it, against the echo floor measured in the same run (bench/echo_floor.py), on a
devstack of separate processes with TLS as deployed:

- a lone noop job on an idle devstack: submit → its ResultsPublished event arriving on WatchJobEvents,
  one job at a time; its p50 against one echo round trip (target: at most 10x);
- with `--stored` finished jobs in the requester: `list` (first page; filtered by client; a deep page,
  the 50th of 20) and `describe` (GetJob) p99 against GetVersion's p99 in the same run (target: at most
  5x each), and the requester's RSS after a tenth of the jobs and after all of them (flat is the goal).

Run with `make bench` (10,000 stored jobs) or `python -m bench.bench_latency --stored 100000`.
"""

import argparse
import asyncio
import random
import statistics
import tempfile
import time

import grpc

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.devstack import Devstack
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from bench import echo_floor
from bench.bench_network import bench_job
from bench.measure import p99, rss

LONE_JOBS = 100
QUERIES = 300


async def lone_jobs(stub: rgrpc.RequesterServiceStub, key: ClientKey) -> list[float]:
    """Submit → ResultsPublished seen on the job's event stream, one job at a time (seconds)."""
    request = key.signed_submit_request(bench_job(1, pb.Verifier.VERIFIER_NOOP))
    times = []
    for _ in range(LONE_JOBS):
        began = time.perf_counter()
        job_id = (await stub.SubmitJob(request, timeout=30)).job.id
        async for item in stub.WatchJobEvents(rpb.WatchJobEventsRequest(job_id=job_id), timeout=30):
            if item.event.event_name == pb.JobEventType.JOB_EVENT_TYPE_RESULTS_PUBLISHED:
                break
        times.append(time.perf_counter() - began)
    return times


async def store_jobs(
    stub: rgrpc.RequesterServiceStub, key: ClientKey, count: int, in_flight: int = 64
) -> None:
    """Submit `count` noop jobs, then wait until the last one submitted has published."""
    request = key.signed_submit_request(bench_job(1, pb.Verifier.VERIFIER_NOOP))
    queue = iter(range(count))
    last = [""]

    async def submitter() -> None:
        for _ in queue:
            while True:
                try:
                    last[0] = (await stub.SubmitJob(request, timeout=30)).job.id
                    break
                except grpc.aio.AioRpcError as err:  # the share of jobs in progress is full: wait
                    if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    await asyncio.sleep(0.05)

    await asyncio.gather(*(submitter() for _ in range(in_flight)))
    async for item in stub.WatchJobEvents(rpb.WatchJobEventsRequest(job_id=last[0]), timeout=120):
        if item.event.event_name == pb.JobEventType.JOB_EVENT_TYPE_RESULTS_PUBLISHED:
            return


async def timed(call, request) -> float:
    began = time.perf_counter()
    await call(request, timeout=30)
    return time.perf_counter() - began


async def queries(stub: rgrpc.RequesterServiceStub, key: ClientKey, job_ids: list[str]) -> dict[str, float]:
    """p99 seconds of GetVersion, list first page, list filtered, a deep list page and GetJob."""
    version, first, filtered, deep, describe = [], [], [], [], []
    deep_token = ""
    for _ in range(50):  # walk to the 50th page of 20 once; then ask for it again and again
        page = await stub.ListJobs(rpb.ListJobsRequest(page_size=20, page_token=deep_token), timeout=30)
        deep_token = page.next_page_token or deep_token
    for _ in range(QUERIES):
        version.append(await timed(stub.GetVersion, rpb.GetVersionRequest()))
        first.append(await timed(stub.ListJobs, rpb.ListJobsRequest(page_size=20)))
        filtered.append(
            await timed(stub.ListJobs, rpb.ListJobsRequest(client_id=key.client_id, page_size=20))
        )
        deep.append(await timed(stub.ListJobs, rpb.ListJobsRequest(page_size=20, page_token=deep_token)))
        describe.append(await timed(stub.GetJob, rpb.GetJobRequest(job_id=random.choice(job_ids))))
    return {
        "GetVersion": p99(version),
        "list, first page": p99(first),
        "list, filtered by client": p99(filtered),
        "list, 50th page": p99(deep),
        "describe (GetJob)": p99(describe),
    }


async def main(stored: int) -> None:
    floor = await echo_floor.measure()
    rtt = floor["rtt_p50"]
    print(
        f"floor: echo 1.4 KB {floor['rate16']:.0f} calls/s with 16 in flight, {floor['rate1']:.0f}/s "
        f"with one, round trip p50 {rtt * 1000:.2f} ms"
    )
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as data_dir:
        stack = Devstack(nodes=3, data_dir=data_dir, requester_flags=["--max-active-jobs-per-client=256"])
        await stack.start()
        try:
            channel = channels.open_channel(stack.requester_address, credentials=stack.channel_credentials())
            stub = rgrpc.RequesterServiceStub(channel)
            key = ClientKey.generate()
            lone = await lone_jobs(stub, key)
            p50 = statistics.median(lone)
            print(
                f"lone noop job, submit → published: p50 {p50 * 1000:.1f} ms, p99 {p99(lone) * 1000:.1f} ms; "
                f"{p50 / rtt:.0f}x one echo round trip (target: at most 10x; before batching: 50x)"
            )
            assert stack.requester is not None
            await store_jobs(stub, key, stored // 10)
            rss_tenth = rss(stack.requester.pid)
            await store_jobs(stub, key, stored - stored // 10)
            rss_all = rss(stack.requester.pid)
            listed = await stub.ListJobs(rpb.ListJobsRequest(page_size=1000), timeout=30)
            figures = await queries(stub, key, [job.id for job in listed.jobs])
            await channel.close()
        finally:
            await stack.stop()
    base = figures["GetVersion"]
    print(f"with {stored} finished jobs stored: p99 ms, and x GetVersion's p99 (target: at most 5x)")
    for name, value in figures.items():
        print(f"  {name:<26}{value * 1000:8.2f} ms  {value / base:6.1f}x")
    print(
        f"requester RSS: {rss_tenth / 2**20:.0f} MiB after {stored // 10} jobs, "
        f"{rss_all / 2**20:.0f} MiB after {stored} ({rss_all / rss_tenth:.2f}x)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().stored))
