"""What the client commands share: their error type, the requester API flags, Go-style boolean flags,
cobra's reading of words that start with "-", and a help layout that keeps examples as written."""

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.sdk.client import DEFAULT_API_HOST, DEFAULT_API_PORT, Client
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
    """The SDK client of the requester the API flags (and the environment) name."""
    return Client(api_address(args, environ), timeout=timeout, tls=api_tls(args, environ) or False)
