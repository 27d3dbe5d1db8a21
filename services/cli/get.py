"""`get ID [--output-dir DIR]`: download a job's verified results (layout in `cli.download`)."""

import argparse
import asyncio
import sys
from pathlib import Path

from bacalhau.requester.v1 import requester_service_pb2 as rpb
from bacalhau.requester.v1 import requester_service_pb2_grpc as rgrpc
from bacalhau_grpc.cli import jobs
from bacalhau_grpc.cli.download import download_results
from bacalhau_grpc.common.channels import open_channel


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "get",
        help="download a job's results",
        description="Download the published (verified) results of a job: raw/<cid>/ per published CID, "
        "per_shard/<shard>_node_<node>/ per result, and combined_results/ with stdout and stderr "
        "concatenated in shard order. The folder's path is printed on stdout.",
    )
    parser.add_argument("id", help="the job's ID (or a unique prefix of it)")
    parser.add_argument("--output-dir", type=Path, help="where to write them (default ./job-<id8>)")
    parser.add_argument(
        "--download-timeout-secs", type=float, default=300.0, help="the most a download may take (300)"
    )
    jobs.add_api_flags(parser)
    parser.set_defaults(handler=lambda args: asyncio.run(cmd_get(args)))
    return parser


async def cmd_get(args: argparse.Namespace) -> int:
    address = jobs.api_address(args)
    async with open_channel(address) as channel:
        stub = rgrpc.RequesterServiceStub(channel)
        job = (
            await jobs._call(address, stub.GetJob, rpb.GetJobRequest(job_id=args.id), args.timeout)
        ).job.job
        print(f"Fetching results of job '{job.id}'...", file=sys.stderr, flush=True)
        output_dir = (args.output_dir or Path(f"job-{job.id[:8]}")).resolve()
        output_dir.mkdir(parents=True, exist_ok=True)
        progress = _progress_bar() if sys.stderr.isatty() else None
        await download_results(
            channel, job.id, output_dir, timeout=args.download_timeout_secs, progress=progress
        )
        if progress is not None:
            print(file=sys.stderr)
    print(f"Results for job '{job.id}' have been written to...", file=sys.stderr)
    print(output_dir)
    return 0


def _progress_bar():
    def show(received: int) -> None:
        print(f"\r  downloaded {received / 1024**2:.1f} MiB", end="", file=sys.stderr, flush=True)

    return show
