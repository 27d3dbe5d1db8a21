"""The flags the submitting commands (`docker run`, `wasm run`, `run python`, `create`) share, and what
their values become in the job (Bacalhau v0.3's flags, defaults and parse errors):

* the deal (`--concurrency`, `--confidence`, `--min-bids`, `--timeout`), the engine, verifier and
  publisher choices, the volumes (`-i`, `-u`, `-v`, `-o`), `-e` and labels;
* the runtime and download flags (`--wait`, `--id-only`, `--node-details`, `--wait-timeout-secs`,
  `-g/--gettimeout`, `--submission-id`, `--download`, `--output-dir`, `--download-timeout-secs`,
  `--dry-run`), which `cli.submit` acts on. Boolean flags take Go's forms too: `--wait=false`,
  `--wait=0`, and also `--no-wait`;
* their values as job parts: storage specs ("invalid input volume: %s", ...), environment variables,
  labels (unsafe ones dropped with a warning), the deal, the enum choices, DO_NOT_TRACK.

Defaults that differ from v0.3: the publisher is `Local` (v0.3: Estuary, which without credentials
published to IPFS), so results can be downloaded with `get` or `--download`.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from bacalhau_grpc.cli import flags
from bacalhau_grpc.cli.flags import CommandError
from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import enums
from bacalhau_grpc.sdk import sdk_types

DEFAULT_JOB_TIMEOUT = 1800.0  # seconds: the requester's default execution timeout (v0.3's --timeout)
DEFAULT_WAIT_TIMEOUT = 600.0  # --wait-timeout-secs (v0.3's DefaultDockerRunWaitSeconds)
DEFAULT_CALL_TIMEOUT = 10.0  # -g/--gettimeout: each call to the requester
DEFAULT_DOWNLOAD_TIMEOUT = 300.0
DEFAULT_PUBLISHER = "local"  # v0.3: estuary; Local results can be downloaded (README "Publishers")
INPUTS_PATH = "/inputs"
DEFAULT_OUTPUT = ("outputs", "/outputs")  # v0.3 always adds it
LANGUAGE_PYTHON, LANGUAGE_PYTHON_VERSION = "python", "3.10"


# ------------------------------------------------------------------------------------------------ flags


def add_deal_flags(parser: argparse.ArgumentParser, *, concurrency_short: bool = True) -> None:
    group = parser.add_argument_group("deal")
    names = ("-c", "--concurrency") if concurrency_short else ("--concurrency",)
    group.add_argument(*names, type=int, default=1, help="how many nodes run each shard (default 1)")
    group.add_argument(
        "--confidence",
        type=int,
        default=0,
        help="the smallest group of agreeing results the deterministic verifier accepts (default 0)",
    )
    group.add_argument(
        "--min-bids", type=int, default=0, help="bids to collect before any is accepted (default 0)"
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_JOB_TIMEOUT,
        help=f"seconds the job may run, verify and publish (default {DEFAULT_JOB_TIMEOUT:g})",
    )


def add_engine_choice_flags(
    parser: argparse.ArgumentParser, *, verifier_default: str | None = "noop", engine: bool = False
) -> None:
    group = parser.add_argument_group("job")
    if engine:
        group.add_argument(
            "--engine",
            default="docker",
            help="the engine: noop, docker, wasm, language, pythonwasm (default docker; any case)",
        )
    shown = verifier_default or "deterministic, or noop with concurrency 1"
    group.add_argument(
        "--verifier", default=verifier_default, help=f"noop or deterministic (default {shown})"
    )
    group.add_argument(
        "--publisher",
        default=DEFAULT_PUBLISHER,
        help="where results go: local, ipfs, estuary, filecoin, noop (default local: the compute node's "
        "store, downloadable with `get`; Estuary and Filecoin publish to IPFS without credentials)",
    )


def add_input_flags(parser: argparse.ArgumentParser, *, cids: bool = True) -> None:
    group = parser.add_argument_group("data")
    if cids:
        group.add_argument(
            "-i",
            "--inputs",
            action="append",
            default=[],
            metavar="CID",
            help=f"an IPFS CID mounted at {INPUTS_PATH} (repeatable, or comma-separated)",
        )
    group.add_argument(
        "-u",
        "--input-urls",
        action="append",
        default=[],
        metavar="URL",
        help=f"an http(s) URL of a file, downloaded to {INPUTS_PATH}/<file name> (repeatable)",
    )
    group.add_argument(
        "-v",
        "--input-volumes",
        action="append",
        default=[],
        metavar="CID:PATH",
        help="an IPFS CID mounted at PATH (repeatable, or comma-separated)",
    )


def add_env_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable (repeatable)",
    )


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output-volumes",
        action="append",
        default=[],
        metavar="NAME:PATH",
        help="an output folder NAME at PATH (repeatable; outputs:/outputs is always there)",
    )


def add_label_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-l",
        "--labels",
        action="append",
        default=[],
        metavar="LABEL",
        help="annotations for the job (repeatable, or comma-separated); characters other than "
        "A-Za-z0-9._~!:@,;+-|^ and emoji drop the label, with a warning",
    )


def add_runtime_flags(parser: argparse.ArgumentParser, *, skip_syntax_checking: bool = False) -> None:
    group = parser.add_argument_group("runtime")
    group.add_argument("--dry-run", action="store_true", help="print the job file (YAML) and submit nothing")
    flags.add_bool_flag(
        group,
        "wait",
        default=True,
        help="follow the job until every shard has ended (default; --wait=false prints only the job ID)",
    )
    group.add_argument(
        "--wait-timeout-secs",
        type=float,
        default=DEFAULT_WAIT_TIMEOUT,
        help=f"stop waiting after this many seconds with exit code 1; the job keeps running (default "
        f"{DEFAULT_WAIT_TIMEOUT:g}; 0: no limit)",
    )
    flags.add_bool_flag(group, "id-only", default=False, help="print only the job's ID (and wait silently)")
    flags.add_bool_flag(
        group,
        "node-details",
        default=False,
        help="show every node's state, exit code, stdout and stderr heads and result CID",
    )
    group.add_argument(
        "--submission-id",
        metavar="ID",
        help="the submission's ID (default: a new random one): the requester answers a submission it has "
        "already seen from you with the job it created then, so a script that runs this command again "
        "after a failure with the same ID does not create a second job",
    )
    group.add_argument(
        "-g",
        "--gettimeout",
        type=float,
        default=DEFAULT_CALL_TIMEOUT,
        help=f"seconds each call to the requester may take (default {DEFAULT_CALL_TIMEOUT:g})",
    )
    if skip_syntax_checking:
        group.add_argument(
            "--skip-syntax-checking",
            action="store_true",
            help="skip the CLI's checks of the job before it is sent (the requester still checks it)",
        )
    download = parser.add_argument_group("download")
    flags.add_bool_flag(
        download, "download", default=False, help="download the results once the job completed (as `get`)"
    )
    download.add_argument(
        "--output-dir", type=Path, help="where --download writes the results (default ./job-<id8>)"
    )
    download.add_argument(
        "--download-timeout-secs",
        type=float,
        default=DEFAULT_DOWNLOAD_TIMEOUT,
        help=f"the most the download may take (default {DEFAULT_DOWNLOAD_TIMEOUT:g})",
    )


# ------------------------------------------------------------------------------------------ flag values


def split_list(values: Iterable[str]) -> list[str]:
    """pflag's StringSlice: each value is a CSV record (quotes allowed); items are trimmed, empty dropped."""
    items: list[str] = []
    for value in values:
        for record in csv.reader([value], skipinitialspace=True):
            items.extend(item.strip() for item in record if item.strip())
    return items


_ENV_START = re.compile(r"^[^=,\s]+=")


def split_env(values: Iterable[str]) -> list[str]:
    """`-e K=V` values; a comma splits two variables (`-e A=1,B=2`, as v0.3) only when what follows it
    starts a new `KEY=`, so `-e LIST=a,b,c` keeps its commas."""
    variables: list[str] = []
    for value in values:
        parts: list[str] = []
        for piece in value.split(","):
            if parts and not _ENV_START.match(piece):
                parts[-1] += "," + piece
            else:
                parts.append(piece)
        variables.extend(part for part in parts if part)
    return variables


def env_map(values: Iterable[str]) -> dict[str, str]:
    """`-e K=V` values as a map (WASM); v0.3's message for an empty key or value, or a NUL."""
    variables: dict[str, str] = {}
    for item in split_env(values):
        key, sep, value = item.partition("=")
        if not sep or not key or not value or "\0" in item:
            raise CommandError(f"invalid environment variable {key}={value}")
        variables[key] = value
    return variables


def _pair(text: str, what: str) -> tuple[str, str]:
    parts = text.split(":")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise CommandError(f"invalid {what}: {text}")
    return parts[0], parts[1]


def ipfs_volume(cid: str, path: str, name: str = "") -> sdk_types.StorageSpec:
    return sdk_types.StorageSpec(
        storage_source=sdk_types.StorageSourceType.IPFS, cid=cid, path=path, name=name
    )


def url_volume(url: str, path: str) -> sdk_types.StorageSpec:
    return sdk_types.StorageSpec(storage_source=sdk_types.StorageSourceType.URL_DOWNLOAD, url=url, path=path)


def input_volumes(
    cids: Iterable[str] = (), urls: Iterable[str] = (), volumes: Iterable[str] = ()
) -> list[sdk_types.StorageSpec]:
    """-i CIDs (at /inputs), -u URLs (to /inputs/<file>) and -v CID:PATH volumes, in that order."""
    inputs = [ipfs_volume(cid, INPUTS_PATH) for cid in split_list(cids)]
    inputs += [url_volume(url.strip("'\" "), INPUTS_PATH) for url in split_list(urls)]
    for volume in split_list(volumes):
        cid, path = _pair(volume, "input volume")
        inputs.append(ipfs_volume(cid, path))
    return inputs


def output_volumes(values: Iterable[str], *, warn: TextIO | None = None) -> list[sdk_types.StorageSpec]:
    """outputs:/outputs plus each -o NAME:PATH; a later output at the same path replaces an earlier one
    (with a warning when both were asked for)."""
    warn = warn or sys.stderr
    by_path: dict[str, tuple[str, bool]] = {DEFAULT_OUTPUT[1]: (DEFAULT_OUTPUT[0], False)}
    for value in split_list(values):
        name, path = _pair(value, "output volume")
        earlier = by_path.get(path)
        if earlier is not None and earlier[1]:
            print(f"WARNING: output volume {name}:{path} replaces {earlier[0]}:{path}", file=warn)
        by_path[path] = (name, True)
    return [
        sdk_types.StorageSpec(storage_source=sdk_types.StorageSourceType.IPFS, name=name, path=path)
        for path, (name, _) in by_path.items()
    ]


_LABEL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~!:@,;+-|^")


def _emoji(char: str) -> bool:
    return unicodedata.category(char) == "So" or char in "\u200d\ufe0f" or 0x1F000 <= ord(char) <= 0x1FAFF


def safe_labels(values: Iterable[str], *, warn: TextIO | None = None) -> list[str]:
    """The labels (annotations) v0.3 keeps, each first trimmed of surrounding quotes and spaces as -u's URLs
    are (`-l "'a'"` is the label a): only A-Za-z0-9._~!:@,;+-|^ and emoji; others are dropped with a
    warning, and the job is still submitted."""
    warn = warn or sys.stderr
    labels = []
    for label in (value.strip("'\" ") for value in split_list(values)):
        if all(char in _LABEL_SAFE or _emoji(char) for char in label):
            labels.append(label)
        else:
            print(
                f"WARNING: label {label!r} dropped: only A-Za-z0-9._~!:@,;+-|^ and emoji are allowed",
                file=warn,
            )
    return labels


def parse_choice(go_enum: enums.GoEnum, text: str, flag: str) -> int:
    try:
        return go_enum.parse(text)
    except InvalidArgumentError as err:
        raise CommandError(f"{flag}: {err.reason}") from None


def deal(args: argparse.Namespace) -> sdk_types.Deal:
    return sdk_types.Deal(concurrency=args.concurrency, confidence=args.confidence, min_bids=args.min_bids)


def do_not_track(environ: Any = os.environ) -> bool:
    """DO_NOT_TRACK=1 sets Spec.DoNotTrack (v0.3, for docker run and run python)."""
    return environ.get("DO_NOT_TRACK", "").strip().lower() in ("1", "true", "yes")
