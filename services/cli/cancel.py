"""`cancel ID`: cancel a job the client submitted (its running executions are stopped on their nodes)."""

import argparse
import asyncio

from bacalhau.requester.v1 import requester_service_pb2 as rpb
from bacalhau.requester.v1 import requester_service_pb2_grpc as rgrpc
from bacalhau_grpc.cli import jobs
from bacalhau_grpc.common.channels import open_channel


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "cancel",
        help="cancel a job",
        description="Cancel a job you submitted (with your key, see `bacalhau-grpc id`): every execution "
        "still running is stopped and the job ends Cancelled. Cancelling a cancelled job again succeeds; "
        "a completed or failed job cannot be cancelled.",
    )
    parser.add_argument("id", help="the job's ID (or a unique prefix of it)")
    parser.add_argument("--reason", default="", help="why, recorded in the job's events")
    jobs.add_api_flags(parser)
    parser.set_defaults(handler=lambda args: asyncio.run(cmd_cancel(args)))
    return parser


async def cmd_cancel(args: argparse.Namespace) -> int:
    address = jobs.api_address(args)
    request = rpb.CancelJobRequest(
        job_id=args.id,
        client_id=jobs.default_client_id(),  # only the job's owner (its key) may cancel it
        reason=getattr(args, "reason", "") or "",
    )
    async with open_channel(address) as channel:
        stub = rgrpc.RequesterServiceStub(channel)
        response = await jobs._call(address, stub.CancelJob, request, args.timeout)
    print(f"Job {response.job.id or args.id} cancelled")
    return 0
