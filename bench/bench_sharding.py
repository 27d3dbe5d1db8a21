"""One noop job over 10,000 input files with batch size 1 (10,000 shards) through a devstack (requester,
verifier and 3 compute nodes as separate processes): the time from submission to every shard completed,
and the overhead per shard. The files are uploaded first as a job context (kept by the requester under
their CID) and named as the sharded job's IPFS input. Goal: <= 20 s.
Run with `make bench` (or `python -m bench.bench_sharding --files 2000`).
"""

import argparse
import asyncio
import tempfile
import time

import grpc

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.content.archive import make_tar_gz
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.devstack import Devstack
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from bench.bench_network import bench_job

GOAL_SECONDS = 20.0
# Concurrency 1: a shard ends with its one publication, or with an error.
ENDING_EVENTS = {pb.JobEventType.JOB_EVENT_TYPE_RESULTS_PUBLISHED, pb.JobEventType.JOB_EVENT_TYPE_ERROR}


async def run(files: int, deadline: float) -> dict:
    key = ClientKey.generate()
    archive = make_tar_gz({f"file-{i:05d}.txt": b"x" for i in range(files)})
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as data_dir:
        async with (
            Devstack(nodes=3, data_dir=data_dir, log_level="WARNING") as devstack,
            channels.open_channel(
                devstack.requester_address, credentials=devstack.channel_credentials()
            ) as channel,
        ):
            stub = rgrpc.RequesterServiceStub(channel)
            upload = (
                await stub.SubmitJob(
                    key.signed_submit_request(bench_job(1, pb.Verifier.VERIFIER_NOOP), archive), timeout=60
                )
            ).job
            job = bench_job(1, pb.Verifier.VERIFIER_NOOP)
            job.spec.inputs.append(
                pb.StorageSpec(
                    storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS,
                    cid=upload.spec.contexts[0].cid,
                    path="/inputs",
                )
            )
            job.spec.sharding.glob_pattern = "/inputs/*.txt"
            job.spec.sharding.batch_size = 1
            started = time.monotonic()
            submitted = (await stub.SubmitJob(key.signed_submit_request(job), timeout=120)).job
            accepted = time.monotonic()
            shards = submitted.execution_plan.total_shards
            ended: dict[int, int] = {}  # shard index -> the event that ended it
            watch = rpb.WatchJobEventsRequest(job_id=submitted.id)
            try:
                async for reply in stub.WatchJobEvents(watch, timeout=deadline):  # one stream, no polling
                    event = reply.event
                    if event.event_name in ENDING_EVENTS:
                        ended.setdefault(event.shard_index, event.event_name)
                        if len(ended) == shards:
                            break
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
            elapsed = time.monotonic() - started
    errors = sum(e != pb.JobEventType.JOB_EVENT_TYPE_RESULTS_PUBLISHED for e in ended.values())
    return {
        "shards": shards,
        "ended": len(ended),
        "errors": errors,
        "submit": accepted - started,
        "elapsed": elapsed,
    }


async def main(files: int, deadline: float) -> None:
    r = await run(files, deadline)
    shards, elapsed = r["shards"], r["elapsed"]
    print(f"devstack: 1 requester + 1 verifier + 3 compute nodes; one noop job over {files} files, batch 1")
    print(f"shards: {shards}; {r['ended']} ended ({r['errors']} in Error)")
    if r["ended"] < shards:
        rate = r["ended"] / elapsed
        print(f"NOT COMPLETED within the {deadline:g} s deadline: {rate:.0f} shards/s until then")
        return
    print(f"submission (explode + plan + {shards} shard machines): {r['submit']:.2f} s")
    print(
        f"submit to every shard completed: {elapsed:.1f} s "
        f"(goal {GOAL_SECONDS:g} s: {elapsed / GOAL_SECONDS:.2f}x)"
    )
    print(f"per shard: {elapsed / shards * 1000:.2f} ms ({shards / elapsed:.0f} shards/s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--deadline", type=float, default=600.0, help="give up after this many seconds")
    args = parser.parse_args()
    asyncio.run(main(args.files, args.deadline))
