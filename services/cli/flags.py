"""What the client commands share: their error type, the requester API flags (address, TLS, retries),
Go-style boolean flags, cobra's reading of words that start with "-", and a help layout that keeps examples
as written."""

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from bacalhau_grpc.common.errors import DeadlineExceededError, InvalidArgumentError
from bacalhau_grpc.sdk.client import (
    DEFAULT_API_HOST,
    DEFAULT_API_PORT,
    DEFAULT_RETRY_TIMEOUT,
    Client,
    OnRetry,
)
from bacalhau_grpc.sdk.client import api_address as sdk_address
from bacalhau_grpc.sdk.tls import ENV_CA_CERT, ENV_CLIENT_CERT, ENV_CLIENT_KEY, ClientTls, client_tls

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


class CobraWordsParser(argparse.ArgumentParser):
    """A command that reads words starting with "-" as cobra (pflag) does: before `--` every such word is a
    flag, so one it does not know is an error with pflag's message, where argparse would take a word such
    as `'-foo -bar'` (it has a space) or `-5` as a positional. Words after `--` are positional whatever
    they look like (`docker run IMAGE -- sh -c 'echo hi'`)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        parsed, extras = super().parse_known_args(words, namespace)
        before = words[: words.index("--")] if "--" in words else words
        after = len(words) - len(before) - 1 if "--" in words else 0
        positionals = self._positional_words(parsed)
        # The words after `--` are all positionals, the last ones: the positionals before it come first.
        suspects = positionals[: max(len(positionals) - after, 0)] + [w for w in extras if w in before]
        for word in suspects:
            if word.startswith("-") and word != "-":
                self.error(f"{unknown_flag(word)} (the job's own arguments go after --)")
        return parsed, extras

    def _positional_words(self, parsed: argparse.Namespace) -> list[str]:
        words: list[str] = []
        for action in self._actions:
            if action.option_strings or action.dest == argparse.SUPPRESS:
                continue
            value = getattr(parsed, action.dest, None)
            if isinstance(value, str):
                words.append(value)
            elif isinstance(value, list):
                words.extend(str(item) for item in value)
        return words


def unknown_flag(word: str) -> str:
    """pflag's error for a word it reads as a flag and does not know (`-foo -bar`, `--foo=1`)."""
    if word.startswith("--"):
        return f"unknown flag: {word.partition('=')[0]}"
    return f"unknown shorthand flag: '{word[1]}' in {word}"


def command_parser(subparsers: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A sub-command whose epilog (examples) keeps its layout."""
    return subparsers.add_parser(name, formatter_class=_HelpFormatter, **kwargs)


def add_bool_flag(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    name: str,
    *,
    default: bool | None,
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
    add_bool_flag(
        group,
        "tls",
        default=None,
        help="connect with TLS, verifying the requester with --ca-cert (implied by --ca-cert or "
        f"{ENV_CA_CERT}; --tls=false: plaintext whatever the environment says)",
    )
    group.add_argument(
        "--ca-cert",
        metavar="FILE",
        help=f"the cluster's CA certificate (PEM), for TLS (env {ENV_CA_CERT}; setting it means TLS; "
        "a devstack prints its path)",
    )
    group.add_argument(
        "--client-cert",
        metavar="FILE",
        help=f"an operator's client certificate (PEM; env {ENV_CLIENT_CERT}), for the requester's node "
        "port (mutual TLS)",
    )
    group.add_argument(
        "--client-key", metavar="FILE", help=f"the key of --client-cert (PEM; env {ENV_CLIENT_KEY})"
    )
    group.add_argument(
        "--retry-timeout",
        metavar="SECONDS",
        type=retry_seconds,
        default=DEFAULT_RETRY_TIMEOUT,
        help="while the requester cannot be reached or does not answer in time, retry each call with "
        f"back-off for up to this many seconds (default {DEFAULT_RETRY_TIMEOUT:g}; 0: fail at once); reads, "
        "cancel and submissions (which carry a submission ID) are retried, other errors fail at once",
    )


def retry_seconds(text: str) -> float:
    """`--retry-timeout`: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 (no retries) or more seconds, got {text}")
    return value


def api_address(args: argparse.Namespace, environ: Any = os.environ) -> str:
    """Flags win over BACALHAU_API_HOST / BACALHAU_API_PORT, which win over 127.0.0.1:1234."""
    try:
        return sdk_address(args.api_host, args.api_port, environ)
    except InvalidArgumentError as err:
        raise CommandError(err.reason) from None


def api_tls(args: argparse.Namespace, environ: Any = os.environ) -> ClientTls | None:
    """TLS from --tls, --ca-cert, --client-cert and --client-key, which win over BACALHAU_TLS_CA_CERT,
    BACALHAU_TLS_CLIENT_CERT and BACALHAU_TLS_CLIENT_KEY; None: plaintext."""
    try:
        return client_tls(
            getattr(args, "tls", None),
            getattr(args, "ca_cert", None),
            getattr(args, "client_cert", None),
            getattr(args, "client_key", None),
            environ,
        )
    except InvalidArgumentError as err:
        raise CommandError(err.reason) from None


def api_client(args: argparse.Namespace, *, timeout: float, environ: Any = os.environ) -> Client:
    """The SDK client of the requester the API flags (and the environment) name, retrying for up to
    --retry-timeout seconds; on a terminal it says on stderr what it is waiting for."""
    address = api_address(args, environ)
    retry_timeout = getattr(args, "retry_timeout", DEFAULT_RETRY_TIMEOUT)
    return Client(
        address,
        timeout=timeout,
        tls=api_tls(args, environ) or False,
        retry_timeout=retry_timeout,
        on_retry=retry_printer(address, retry_timeout) if sys.stderr.isatty() else None,
    )


def retry_printer(address: str, retry_timeout: float, out: Any = None) -> OnRetry:
    """An `on_retry` that prints one line per retry (to `out`, default stderr): `waiting for the requester
    at HOST:PORT (unavailable: Connection refused); retrying in 0.8s (up to 30s)`."""

    def show(method: str, error: Exception, delay: float) -> None:
        print(retry_line(address, error, delay, retry_timeout), file=out or sys.stderr, flush=True)

    return show


def retry_line(address: str, error: Exception, delay: float, retry_timeout: float) -> str:
    """What the CLI says before it retries a call: the requester, why (briefly), when and for how long."""
    kind = "no answer in time" if isinstance(error, DeadlineExceededError) else "unavailable"
    details = str(error).removeprefix(f"cannot reach the requester at {address}: ")
    # gRPC's details end with the cause ("...: Failed to connect to remote host: Connection refused").
    reason = details.rsplit(": ", 1)[-1].strip() or type(error).__name__
    return (
        f"waiting for the requester at {address} ({kind}: {reason}); "
        f"retrying in {delay:.1f}s (up to {retry_timeout:g}s)"
    )
