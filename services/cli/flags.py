"""What the client commands share: their error type, the requester API flags, Go-style boolean flags and
a help layout that keeps examples as written."""

import argparse
import os
from typing import Any

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.sdk.client import DEFAULT_API_HOST, DEFAULT_API_PORT
from bacalhau_grpc.sdk.client import api_address as sdk_address

# The words Go's strconv.ParseBool (pflag) takes.
TRUE_WORDS = ("1", "t", "T", "TRUE", "true", "True")
FALSE_WORDS = ("0", "f", "F", "FALSE", "false", "False")


class CommandError(ValueError):
    """A failure the CLI reports as one "Error: ..." line on stderr and exit code 1."""


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps a one-paragraph description; keeps text written on several lines (the examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def command_parser(subparsers: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A sub-command whose epilog (examples) keeps its layout."""
    return subparsers.add_parser(name, formatter_class=_HelpFormatter, **kwargs)


def add_bool_flag(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    name: str,
    *,
    default: bool,
    help: str,
) -> None:
    """`--NAME` / `--no-NAME`, and Go's `--NAME=false` / `--NAME=true` (any pflag ParseBool word)."""
    dest = name.replace("-", "_")
    parser.add_argument(
        f"--{name}", dest=dest, action=argparse.BooleanOptionalAction, default=default, help=help
    )
    # argparse looks a whole argument up as an option string before splitting it at "=", so each
    # `--NAME=WORD` form is its own (hidden) option.
    for words, action in ((TRUE_WORDS, "store_true"), (FALSE_WORDS, "store_false")):
        for word in words:
            parser.add_argument(
                f"--{name}={word}",
                dest=dest,
                action=action,
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )


def add_api_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("requester API")
    group.add_argument(
        "--api-host", help=f"the requester's host (env BACALHAU_API_HOST; default {DEFAULT_API_HOST})"
    )
    group.add_argument(
        "--api-port", help=f"the requester's port (env BACALHAU_API_PORT; default {DEFAULT_API_PORT})"
    )


def api_address(args: argparse.Namespace, environ: Any = os.environ) -> str:
    """Flags win over BACALHAU_API_HOST / BACALHAU_API_PORT, which win over 127.0.0.1:1234."""
    try:
        return sdk_address(args.api_host, args.api_port, environ)
    except InvalidArgumentError as err:
        raise CommandError(err.reason) from None
