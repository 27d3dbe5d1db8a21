"""`id`: print the user's ClientID. `sign-job FILE`: print a signed SubmitJobRequest JSON body for grpcurl.

    bacalhau-grpc sign-job job.yaml | grpcurl -cacert ca.pem -d @ HOST:PORT \\
        bacalhau.requester.v1.RequesterService/SubmitJob
"""

import argparse
import os

from google.protobuf import json_format

from bacalhau_grpc.cli import submit
from bacalhau_grpc.common.signing import ClientKey, default_directory

ID_EXAMPLES = """\
examples:
  # your ClientID (64 hex characters)
  bacalhau-grpc id

  # the ID of another key, in another folder (created there on first use)
  BACALHAU_DIR=/tmp/other-key bacalhau-grpc id

  # the jobs submitted with that other key (list shows only yours by default)
  bacalhau-grpc list --client-id "$(BACALHAU_DIR=/tmp/other-key bacalhau-grpc id)"
"""


def add_parsers(subparsers) -> None:
    ident = subparsers.add_parser(
        "id",
        help="print your client ID",
        description="Print your ClientID: the SHA-256 (hex) of the public key your submissions are signed "
        "with ($BACALHAU_DIR or ~/.bacalhau-grpc/client_key.pem, created on first use). It owns your jobs.",
        epilog=ID_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ident.set_defaults(handler=cmd_id)

    sign = subparsers.add_parser(
        "sign-job",
        help="print a signed SubmitJob request body (JSON) for a job file",
        description="Sign a Bacalhau job file (YAML or JSON) with your key and print the SubmitJobRequest "
        "as JSON, for `grpcurl -d @`. The job gets create's defaults, as with `create`.",
        epilog="bacalhau-grpc sign-job job.yaml | grpcurl -cacert ca.pem -d @ HOST:PORT "
        "bacalhau.requester.v1.RequesterService/SubmitJob",
    )
    sign.add_argument("file", help="the job file; - reads standard input")
    sign.set_defaults(handler=cmd_sign_job)


def cmd_id(args: argparse.Namespace) -> int:
    print(client_key().client_id)
    return 0


def cmd_sign_job(args: argparse.Namespace) -> int:
    job = submit.prepare_job(submit.read_job_file(args.file))
    request = client_key().signed_submit_request(job)
    print(json_format.MessageToJson(request))
    return 0


def client_key(environ=os.environ) -> ClientKey:
    """The user's signing key ($BACALHAU_DIR or ~/.bacalhau-grpc/client_key.pem), created on first use."""
    return ClientKey.load_or_create(default_directory(environ))
