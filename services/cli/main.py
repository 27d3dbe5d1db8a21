"""`bacalhau-grpc`: run nodes (serve, devstack) and use a requester (create, list, describe, events, cancel,
id, sign-job)."""

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from bacalhau_grpc.cli import cancel, devstack, get, jobs, serve, sign
from bacalhau_grpc.common.errors import BacalhauError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bacalhau-grpc",
        description="Bacalhau v0.3's compute-over-data network as gRPC services.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve.add_parser(commands)
    devstack.add_parser(commands)
    cancel.add_parser(commands)
    get.add_parser(commands)
    sign.add_parsers(commands)

    create = commands.add_parser(
        "create",
        help="submit a job from a job file (YAML or JSON)",
        description="Submit a Bacalhau job file, signed with your key ($BACALHAU_DIR or "
        "~/.bacalhau-grpc/client_key.pem, created on first use), and print the job's ID. Missing fields "
        "get Go's create defaults (Deal.Concurrency 1, Verifier Noop, Publisher Noop, APIVersion "
        "V1beta1); server-owned fields (ID, ClientID, CreatedAt, ...) are ignored with a warning.",
    )
    create.add_argument("file", help="the job file; - reads standard input")
    create.add_argument("--wait", action="store_true", help="follow the job's events until it ends")
    create.add_argument(
        "--wait-timeout", type=float, default=0.0, help="give up waiting after this many seconds (0: never)"
    )
    jobs.add_api_flags(create)
    create.set_defaults(handler=_async(jobs.cmd_create))

    list_ = commands.add_parser("list", help="list jobs", description="List jobs, newest first.")
    list_.add_argument("--id-filter", help="only jobs whose ID starts with this")
    list_.add_argument("-n", "--number", type=int, default=10, help="how many jobs to show (default 10)")
    list_.add_argument(
        "--sort-by", choices=("created_at", "id"), default="created_at", help="(default created_at)"
    )
    list_.add_argument(
        "--reverse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="newest (or highest ID) first (default; --no-reverse for oldest first)",
    )
    list_.add_argument("--output", "-o", choices=("table", "json", "yaml"), default="table")
    list_.add_argument("--include-tag", action="append", help="only jobs with this annotation (repeatable)")
    list_.add_argument("--exclude-tag", action="append", help="no job with this annotation (repeatable)")
    list_.add_argument("--all", action="store_true", help="jobs of every client, not only yours")
    list_.add_argument("--client-id", help="whose jobs to list (default: yours, see `bacalhau-grpc id`)")
    list_.add_argument("--hide-header", action="store_true", help="no header row")
    list_.add_argument("--wide", action="store_true", help="full IDs and cells")
    jobs.add_api_flags(list_)
    list_.set_defaults(handler=_async(jobs.cmd_list))

    describe = commands.add_parser(
        "describe", help="show a job with its state and events", description="Show a job as YAML."
    )
    describe.add_argument("id", help="the job's ID or a unique prefix of it")
    describe.add_argument("--json", action="store_true", help="JSON instead of YAML")
    jobs.add_api_flags(describe)
    describe.set_defaults(handler=_async(jobs.cmd_describe))

    events = commands.add_parser("events", help="show a job's events, one per line")
    events.add_argument("id", help="the job's ID or a unique prefix of it")
    events.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new events until the job ends"
    )
    jobs.add_api_flags(events)
    events.set_defaults(handler=_async(jobs.cmd_events))
    return parser


def _async(command):
    def run(args: argparse.Namespace) -> int:
        return asyncio.run(command(args))

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`bacalhau-grpc list | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except jobs.CommandError as err:
        return _fail(str(err))
    except devstack.DevstackError as err:
        return _fail(str(err))
    except (BacalhauError, ValueError, OSError) as err:
        return _fail(str(err) or type(err).__name__)
    except KeyboardInterrupt:
        if args.command in ("create", "events"):
            print("Printout canceled (the job is still running).", file=sys.stderr)
            return 0
        print("Interrupted.", file=sys.stderr)
        return 130
    return code


def _fail(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
