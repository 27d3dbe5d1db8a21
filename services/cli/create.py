"""`create [FILE]`: submit a Bacalhau job file (flat or v0.3.15 nested, Job or JobWithInfo, any key case)
from a file or standard input, and follow it as the other submitting commands do (`cli.submit`);
server-owned fields are dropped with v0.3's warning."""

from __future__ import annotations

import argparse
from typing import Any

from bacalhau_grpc.cli import flags
from bacalhau_grpc.cli.submit import PROG, Submission, prepare_job, read_job_file, run_submission
from bacalhau_grpc.cli.submit_flags import add_runtime_flags
from bacalhau_grpc.sdk import sdk_types
from bacalhau_grpc.sdk.client import to_sdk

CREATE_EXAMPLES = f"""\
examples:
  # submit a job file and follow it until every shard has ended
  {PROG} create job.yaml

  # from standard input, printing only the job's ID at once
  cat job.json | {PROG} create --wait=false

  # the job as it would be submitted, without submitting it
  {PROG} create job.yaml --dry-run

  # wait, then download the results into ./results
  {PROG} create job.yaml --download --output-dir results
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = flags.command_parser(
        subparsers,
        "create",
        help="submit a job from a job file (YAML or JSON)",
        description="Submit a Bacalhau job file (YAML or JSON; the flat shape or v0.3.15's nested one; a "
        "Job or a JobWithInfo, whose Job is used; keys and enum values in any case), signed with your key "
        "($BACALHAU_DIR or ~/.bacalhau-grpc/client_key.pem, created on first use), and follow it. Missing "
        "fields get create's defaults (APIVersion V1beta1, Deal.Concurrency 1, Verifier Noop, Publisher "
        "Local); server-owned fields (ID, ClientID, CreatedAt, ...) are ignored with a warning.",
        epilog=CREATE_EXAMPLES,
    )
    parser.add_argument("file", nargs="?", help="the job file; - or nothing reads standard input")
    add_runtime_flags(parser)
    flags.add_api_flags(parser)
    parser.set_defaults(handler=cmd_create)
    return parser


def cmd_create(args: argparse.Namespace) -> int:
    def make() -> Submission:
        job = prepare_job(read_job_file(args.file))
        return Submission(to_sdk(job, sdk_types.Job))

    return run_submission(args, make)
