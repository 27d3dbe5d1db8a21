"""`bacalhau-grpc`: run nodes (serve, devstack), submit jobs (docker run, wasm run, run python, create,
validate) and look at them (list, describe, events, logs, wait, cancel, get, version, id, sign-job) and at the
compute nodes (node list, node describe); `completion` prints the shell completion script."""

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

# gRPC's core logs a failed TLS handshake on stderr (at INFO, read when grpc is imported): a client command
# reports it as its one "Error: ..." line instead. Nodes (serve, devstack) keep gRPC's logging; a
# GRPC_VERBOSITY the user set wins.
SERVING_COMMANDS = ("serve", "devstack")
if len(sys.argv) < 2 or sys.argv[1] not in SERVING_COMMANDS:
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from bacalhau_grpc.cli import (  # noqa: E402
    certs,
    completion,
    create,
    dashboard,
    devstack,
    nodes,
    query,
    serve,
    sign,
    validate,
)
from bacalhau_grpc.cli import run as run_commands  # noqa: E402
from bacalhau_grpc.common.errors import BacalhauError  # noqa: E402
from bacalhau_grpc.common.model.version import build_version_info  # noqa: E402
from bacalhau_grpc.devstack import DevstackError  # noqa: E402


class _PrintVersion(argparse.Action):
    """`--version`: the version `version --client` reports, worked out only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"bacalhau-grpc {build_version_info().git_version}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bacalhau-grpc",
        description="Bacalhau v0.3's compute-over-data network as gRPC services.",
    )
    parser.add_argument("--version", action=_PrintVersion, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve.add_parser(commands)
    devstack.add_parser(commands)
    sign.add_parsers(commands)
    certs.add_parser(commands)

    create.add_parser(commands)
    run_commands.add_parsers(commands)
    validate.add_parser(commands)

    query.add_parsers(commands)
    nodes.add_parser(commands)
    dashboard.add_parser(commands)
    completion.add_parser(commands, parser)
    return parser


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
    except DevstackError as err:
        return _fail(str(err))
    except (BacalhauError, ValueError, OSError) as err:
        return _fail(str(err) or type(err).__name__)
    except KeyboardInterrupt:
        interrupted = getattr(args, "interrupted", "")
        if interrupted:  # a command following a job: the job goes on
            print(interrupted, file=sys.stderr)
            return 0
        print("Interrupted.", file=sys.stderr)
        return 130
    return code


def _fail(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
