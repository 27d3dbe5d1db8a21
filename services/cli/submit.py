"""Submitting jobs, shared by `create`, `docker run`, `wasm run` and `run python` (Bacalhau v0.3's
`ExecuteJob`), all through the SDK's `Client`:

* the flags they share: the deal (`--concurrency`, `--confidence`, `--min-bids`, `--timeout`), the
  volumes (`-i`, `-u`, `-v`, `-o`), labels, and the runtime and download flags (`--wait`, `--id-only`,
  `--node-details`, `--wait-timeout-secs`, `-g/--gettimeout`, `--download`, `--output-dir`,
  `--download-timeout-secs`, `--dry-run`), with v0.3's defaults and parse errors ("invalid input volume:
  %s", ...). Boolean flags take Go's forms too: `--wait=false`, `--wait=0`, and also `--no-wait`;
* the local checks before anything is sent ("Error verifying job: ..."): the requester's own submission
  rules (`requester.domain.validation`, built on `common.model.checks`), so a job the CLI lets through
  is one the requester accepts;
* `--dry-run`: the job file as YAML (the canonical flat shape), which `create` accepts unchanged;
* the `--wait` UX (§1.9): "Job successfully submitted. Job ID: ...", one line per new lifecycle step
  ("Creating job for submission ... done ✅"), a shard counter for sharded jobs, then "Job Results By
  Node:" and the `get`/`describe` hints. Unlike v0.3 it follows the job's event stream until EVERY shard
  has ended (not until the first terminal event), `--wait-timeout-secs` bounds the wait, and a job that
  did not complete exits 1 with the reason on stderr. Ctrl+C stops the printout only;
* `create [FILE]`: a Bacalhau job file (flat or v0.3.15 nested, Job or JobWithInfo, any key case) from a
  file or standard input; server-owned fields are dropped with v0.3's warning.

Defaults that differ from v0.3: the publisher is `Local` (v0.3: Estuary, which without credentials
published to IPFS), so results can be downloaded with `get` or `--download`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import re
import sys
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bacalhau_grpc.cli import flags, output, query
from bacalhau_grpc.cli.flags import CommandError
from bacalhau_grpc.common.errors import BacalhauError, InvalidArgumentError
from bacalhau_grpc.common.model import enums, jobfile, jobs, pb
from bacalhau_grpc.sdk import Client, sdk_types
from bacalhau_grpc.sdk.client import to_pb, to_sdk

PROG = "bacalhau-grpc"
DEFAULT_JOB_TIMEOUT = 1800.0  # seconds: the requester's default execution timeout (v0.3's --timeout)
DEFAULT_WAIT_TIMEOUT = 600.0  # --wait-timeout-secs (v0.3's DefaultDockerRunWaitSeconds)
DEFAULT_CALL_TIMEOUT = 10.0  # -g/--gettimeout: each call to the requester
DEFAULT_DOWNLOAD_TIMEOUT = 300.0
DEFAULT_PUBLISHER = "local"  # v0.3: estuary; Local results can be downloaded (README "Publishers")
INPUTS_PATH = "/inputs"
DEFAULT_OUTPUT = ("outputs", "/outputs")  # v0.3 always adds it
LANGUAGE_PYTHON, LANGUAGE_PYTHON_VERSION = "python", "3.10"

# pflag's ParseBool words, for `--flag=WORD`.

_E = sdk_types.JobEventType
_S = pb.JobStateType

# The lifecycle steps the --wait printout names (v0.3's eventsWorthPrinting), and those that are failures.
STEP_MESSAGES = {
    _E.CREATED: "Creating job for submission",
    _E.BID: "Finding node(s) for the job",
    _E.BID_ACCEPTED: "Node accepted the job",
    _E.RUNNING: "Node started running the job",
    _E.COMPUTE_ERROR: "Error while executing the job.",
    _E.RESULTS_PROPOSED: "Job finished, verifying results",
    _E.RESULTS_REJECTED: "Results failed verification.",
    _E.RESULTS_ACCEPTED: "Results accepted, publishing",
    _E.ERROR: "Unknown error while running job.",
}
FAILURE_STEPS = frozenset({_E.COMPUTE_ERROR, _E.RESULTS_REJECTED, _E.ERROR})
STEP_WIDTH = max(len(message) for message in STEP_MESSAGES.values())
# Without --node-details, at most this many (node, shard) lines in the results summary.
SUMMARY_ROWS = 20
# How often a sharded job's progress line is repeated when stdout is not a terminal.
PROGRESS_INTERVAL = 5.0
STREAM_HEAD_LINES = 20

# Go's `create` clears these server-owned fields and names them in a warning (its names, in its order,
# with the ExecutionPlan under the name it carries here).
SERVER_OWNED = (
    ("ClientID", "client_id"),
    ("CreatedAt", "created_at"),
    ("ExecutionPlan", "execution_plan"),
    ("JobEvents", "events"),
    ("ID", "id"),
    ("LocalJobEvents", "local_events"),
    ("RequesterNodeID", "requester_node_id"),
    ("RequesterPublicKey", "requester_public_key"),
    ("JobState", "state"),
)


class VerifyError(CommandError):
    """The local checks refused the job: reported as "Error verifying job: ..."."""


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
    """The labels (annotations) v0.3 keeps: only A-Za-z0-9._~!:@,;+-|^ and emoji; others are dropped with
    a warning, and the job is still submitted."""
    warn = warn or sys.stderr
    labels = []
    for label in split_list(values):
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


# --------------------------------------------------------------------------------------- the submission


@dataclass
class Submission:
    """A job to submit, with what goes with it."""

    job: sdk_types.Job
    context: bytes = b""  # a tar.gz the requester mounts at /job (the module or the program)
    notice: str = ""  # printed before the upload (e.g. "Uploading ...")
    dry_run_note: str = ""  # a YAML comment above the --dry-run output


@dataclass
class _Session:
    job_id: str = ""


def run_submission(args: argparse.Namespace, make: Callable[[], Submission]) -> int:
    """The handler of every submitting command: builds the submission, then checks, submits and follows
    it. Errors are one line on stderr (exit 1); Ctrl+C while following stops the printout only (exit 0)."""
    session = _Session()
    try:
        submission = make()
        return asyncio.run(_submit(args, submission, session))
    except KeyboardInterrupt:
        if session.job_id:
            print("\nPrintout canceled (the job is still running).", flush=True)
            return 0
        print("Interrupted.", file=sys.stderr)
        return 130
    except VerifyError as err:
        return fail(f"Error verifying job: {err}")
    except (CommandError, BacalhauError, OSError) as err:
        return fail(f"Error: {_text(err)}")


def fail(line: str) -> int:
    sys.stdout.flush()
    print(line, file=sys.stderr, flush=True)
    return 1


def _text(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    return str(err) or type(err).__name__


def verify(job: pb.Job, context: bytes = b"") -> None:
    """The requester's submission rules, applied before anything is sent; VerifyError names the field."""
    # the requester's pure domain rules (no transport), imported only when a job is submitted
    from bacalhau_grpc.requester.domain.validation import validate_submission

    try:
        validate_submission(pb.JobCreatePayload(job=job, context=context))
    except InvalidArgumentError as err:
        raise VerifyError(str(err)) from None


def dry_run_text(job: pb.Job, note: str = "") -> str:
    comment = "".join(f"# {line}\n" for line in note.splitlines())
    return comment + jobfile.dump_job(job, format="yaml")


async def _submit(args: argparse.Namespace, submission: Submission, session: _Session) -> int:
    job = to_pb(submission.job, pb.Job)
    if args.dry_run:
        print(dry_run_text(job, submission.dry_run_note), end="")
        return 0
    if not getattr(args, "skip_syntax_checking", False):
        verify(job, submission.context)
    wait, quiet = args.wait, args.id_only
    if args.download and not wait:
        raise CommandError("--download needs --wait: the results can only be fetched once the job ended")
    address = flags.api_address(args)
    async with Client(address, timeout=args.gettimeout) as client:
        if submission.notice and wait and not quiet:
            print(submission.notice, flush=True)
        submitted = await client.submit(to_sdk(job, sdk_types.Job), context=submission.context)
        job_id = session.job_id = submitted.id
        if not wait or quiet:
            print(job_id, flush=True)
            if not wait:
                return 0
        else:
            print(f"Job successfully submitted. Job ID: {job_id}")
            print(
                "Checking job status... (Enter Ctrl+C to exit at any time, your job will continue running):"
            )
            print(flush=True)
        total = submitted.execution_plan.total_shards if submitted.execution_plan else 1
        printer = _Printer(quiet=quiet, total_shards=total)
        try:
            async with asyncio.timeout(args.wait_timeout_secs or None):
                async for event in client.events(job_id, follow=True):
                    printer.event(event)
        except TimeoutError:
            printer.close()
            raise CommandError(
                f"job {job_id} did not end within {args.wait_timeout_secs:g} s (--wait-timeout-secs); it "
                f"is still running: `{PROG} describe {job_id}` shows where it is"
            ) from None
        printer.close()
        info = to_pb(await client.get(job_id), pb.JobWithInfo)
        end = job_outcome(info)
        if not quiet:
            print("\n".join(results_by_node(info, details=args.node_details)))
        downloaded = None
        if args.download and end.completed:
            downloaded = await query.download(
                client, job_id, args.output_dir, args.download_timeout_secs, quiet=quiet
            )
        if not quiet:
            print()
            if end.completed and downloaded is None:
                print(f"To download the results, execute:\n  {PROG} get {job_id}\n")
            print(f"To get more details about the run, execute:\n  {PROG} describe {job_id}", flush=True)
        if not end.completed:
            return fail(f"Error: {end.reason}")
        return 0


# ------------------------------------------------------------------------------------ following a job


@dataclass
class ShardProgress:
    """Which shards have ended, from the job's events: a shard ends with an Error event, or once every
    node whose results were accepted has published them (or failed to)."""

    total: int
    accepted: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    settled: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    published: set[int] = field(default_factory=set)
    ended: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)

    def update(self, event: sdk_types.JobEvent) -> bool:
        """Takes an event in; True when a shard ended with it."""
        shard = event.shard_index
        if shard in self.ended:
            return False
        name = event.event_name
        if name == _E.ERROR:
            self.failed.add(shard)
        elif name == _E.RESULTS_ACCEPTED:
            self.accepted[shard].add(event.target_node_id)
            return False
        elif name == _E.RESULTS_PUBLISHED:
            self.published.add(shard)
            self.settled[shard].add(event.source_node_id)
        elif name == _E.COMPUTE_ERROR and event.source_node_id in self.accepted[shard]:
            self.settled[shard].add(event.source_node_id)
        else:
            return False
        if shard not in self.failed and not (
            shard in self.published and self.accepted[shard] <= self.settled[shard]
        ):
            return False
        self.ended.add(shard)
        return True

    def text(self) -> str:
        failed = f", {len(self.failed)} failed" if self.failed else ""
        return f"Shards: {len(self.ended)}/{self.total} done{failed}"


class _Printer:
    """The --wait printout: one line per new lifecycle step, and a shard counter for sharded jobs (updated
    in place on a terminal, a line now and then otherwise)."""

    def __init__(self, *, quiet: bool, total_shards: int, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.quiet = quiet
        self.seen: set[int] = set()
        self.progress = ShardProgress(total_shards) if total_shards > 1 else None
        self.tty = self.out.isatty()
        self._progress_shown = False
        self._last_progress = 0.0

    def event(self, event: sdk_types.JobEvent) -> None:
        name = event.event_name
        ended = self.progress is not None and self.progress.update(event)
        if self.quiet:
            return
        if name in STEP_MESSAGES and name not in self.seen:
            self.seen.add(name)
            self._clear_progress()
            print(step_line(event), file=self.out, flush=True)
            if self.progress is not None and self.tty:
                self._show_progress()
        elif ended:
            self._show_progress()

    def _show_progress(self) -> None:
        assert self.progress is not None
        text = f"\t{self.progress.text()}"
        now = time.monotonic()
        done = len(self.progress.ended) == self.progress.total
        if self.tty:  # redrawn in place
            print(f"\r\033[K{text}", end="", file=self.out, flush=True)
            self._progress_shown = True
        elif done or now - self._last_progress >= PROGRESS_INTERVAL:  # a line now and then
            print(text, file=self.out, flush=True)
            self._last_progress = now

    def _clear_progress(self) -> None:
        if self._progress_shown:
            print("\r\033[K", end="", file=self.out)
            self._progress_shown = False

    def close(self) -> None:
        if self.quiet:
            return
        if self.progress is not None and self._progress_shown:
            print(file=self.out)
            self._progress_shown = False
        print(file=self.out, flush=True)


def step_line(event: sdk_types.JobEvent) -> str:
    """v0.3's line for a lifecycle step ("\\t       Creating job for submission ... done ✅"); a failure
    says so, with the reason the event carries."""
    message = STEP_MESSAGES[event.event_name]
    if event.event_name not in FAILURE_STEPS:
        return f"\t{message:>{STEP_WIDTH}} ... done ✅"
    where = output.short_node_id(event.target_node_id or event.source_node_id)
    reason = f" ({where}: {event.status})" if event.status else ""
    return f"\t{message:>{STEP_WIDTH}} ... failed ❌{reason}"


# ------------------------------------------------------------------------------------------ the results


@dataclass
class Outcome:
    completed: bool
    reason: str = ""


def _rows(info: pb.JobWithInfo) -> list[pb.JobShardState]:
    return output.rows(info.job_state if info.job_state.nodes else info.job.state)


def job_outcome(info: pb.JobWithInfo) -> Outcome:
    """Completed when every shard has a completed (published) result; otherwise why not, from the
    requester's own row (the shard's failure) or else the nodes' rows."""
    job = info.job
    total = max(job.execution_plan.total_shards, 1)
    by_shard: dict[int, list[pb.JobShardState]] = defaultdict(list)
    for row in _rows(info):
        by_shard[row.shard_index].append(row)
    failed = [
        shard
        for shard in range(total)
        if not any(r.state == _S.JOB_STATE_TYPE_COMPLETED for r in by_shard[shard])
    ]
    if not failed:
        return Outcome(True)
    first = failed[0]
    reason = _shard_failure(by_shard[first], job.requester_node_id)
    if total == 1:
        return Outcome(False, f"job {job.id} failed: {reason}")
    return Outcome(
        False,
        f"job {job.id} failed: {len(failed)} of {total} shards did not complete; shard {first}: {reason}",
    )


def _shard_failure(rows: Sequence[pb.JobShardState], requester_node_id: str) -> str:
    ranked = sorted(
        (r for r in rows if r.state in (_S.JOB_STATE_TYPE_ERROR, _S.JOB_STATE_TYPE_CANCELLED)),
        key=lambda r: (r.node_id != requester_node_id, r.state != _S.JOB_STATE_TYPE_ERROR, not r.status),
    )
    if not ranked:
        state = max((r.state for r in rows), default=0)
        return f"it ended in state {output.state_name(state)}"
    row = ranked[0]
    if not row.status:
        return f"it ended in state {output.state_name(row.state)}"
    return row.status if row.state == _S.JOB_STATE_TYPE_ERROR else f"cancelled: {row.status}"


def results_by_node(info: pb.JobWithInfo, *, details: bool) -> list[str]:
    """ "Job Results By Node:" and, per node and shard, what it did: every row in v0.3's layout with
    `details`, else one line per row that ran (at most SUMMARY_ROWS)."""
    lines = ["Job Results By Node:"]
    rows = _rows(info)
    if details:
        node = None
        for row in rows:
            if row.node_id != node:
                node = row.node_id
                lines.append(f"Node {output.short_node_id(node)}:")
            lines.extend(_row_details(row))
        return lines
    ran = [
        r
        for r in rows
        if r.HasField("run_output") or r.state in (_S.JOB_STATE_TYPE_ERROR, _S.JOB_STATE_TYPE_COMPLETED)
    ]
    for row in ran[:SUMMARY_ROWS]:
        lines.append(_row_summary(row))
    if len(ran) > SUMMARY_ROWS:
        lines.append(f"  ... and {len(ran) - SUMMARY_ROWS} more (--node-details shows every one)")
    return lines


def _row_summary(row: pb.JobShardState) -> str:
    bits = [output.state_name(row.state)]
    if row.HasField("run_output"):
        bits.append(f"exit code {jobs.run_exit_code(row.run_output)}")
    if row.published_result.cid:
        bits.append(f"results {row.published_result.cid}")
    if row.status and row.state != _S.JOB_STATE_TYPE_COMPLETED:
        bits.append(row.status)
    return f"  Node {output.short_node_id(row.node_id)}, shard {row.shard_index}: {', '.join(bits)}"


def _row_details(row: pb.JobShardState) -> list[str]:
    status = output.state_name(row.state)
    if row.status and row.state != _S.JOB_STATE_TYPE_COMPLETED:
        status += f" ({row.status})"
    lines = [f"  Shard {row.shard_index}:", f"    Status: {status}"]
    if not row.HasField("run_output"):
        lines.append("    No RunOutput for this shard")
    else:
        result = row.run_output
        lines.append(f"    Container Exit Code: {jobs.run_exit_code(result)}")
        lines += _stream("Stdout", result.stdout, result.stdout_truncated)
        lines += _stream("Stderr", result.stderr, result.stderr_truncated)
        if result.error_msg:
            lines.append(f"    Runner Error: {result.error_msg}")
    if row.published_result.ListFields():
        published = row.published_result.cid or output.storage_text(row.published_result)
        lines.append(f"    Results CID: {published}")
    return lines


def _stream(name: str, text: str, truncated: bool) -> list[str]:
    if not text:
        return [f"    {name}: <NONE>"]
    head = text.splitlines()
    cut = len(head) > STREAM_HEAD_LINES
    note = " (truncated: the first 2 KiB)" if truncated else ""
    lines = [f"    {name}{note}:", *(f"      {line}" for line in head[:STREAM_HEAD_LINES])]
    if cut:
        lines.append(f"      ... ({len(head) - STREAM_HEAD_LINES} more lines)")
    return lines


def report_end(info: pb.JobWithInfo) -> int:
    """The results summary of an ended job (with details); 0 when it completed, else 1 with the reason on
    stderr."""
    print("\n".join(results_by_node(info, details=True)))
    end = job_outcome(info)
    return 0 if end.completed else fail(f"Error: {end.reason}")


# ------------------------------------------------------------------------------------------------ create


def prepare_job(text: bytes, *, warn: TextIO | None = None) -> pb.Job:
    """The job of a job file with `create`'s defaults filled in and server-owned fields cleared (with v0.3's
    warning naming them). Defaults: APIVersion V1beta1, Deal.Concurrency 1, Verifier Noop, Publisher Local
    (v0.3: Estuary)."""
    warn = warn or sys.stderr
    try:
        job = jobfile.load_job(text)
    except InvalidArgumentError as err:
        raise CommandError(f"The job provided is invalid: {err}") from err
    ignored = [name for name, attr in SERVER_OWNED if _has_data(job, attr)]
    if ignored:
        print(
            "WARNING: The following fields have data in them and will be ignored on creation: "
            + ", ".join(ignored),
            file=warn,
        )
        for _, attr in SERVER_OWNED:
            job.ClearField(attr)
    if not job.api_version:
        job.api_version = jobs.api_version_latest()
    if job.deal.concurrency == 0:
        job.deal.concurrency = 1
    if job.spec.verifier == pb.Verifier.VERIFIER_UNSPECIFIED:
        job.spec.verifier = pb.Verifier.VERIFIER_NOOP
    if job.spec.publisher == pb.Publisher.PUBLISHER_UNSPECIFIED:
        job.spec.publisher = pb.Publisher.PUBLISHER_LOCAL
    return job


def _has_data(job: pb.Job, attr: str) -> bool:
    value = getattr(job, attr)
    if isinstance(value, str | bytes):
        return bool(value)
    if hasattr(value, "ListFields") and not hasattr(value, "append"):
        return job.HasField(attr) and bool(value.ListFields() or value.ByteSize())
    return len(value) > 0


def read_job_file(name: str | None) -> bytes:
    """The job file's bytes; `-` or no name reads standard input (saying so when it is a terminal)."""
    if name in (None, "-"):
        if sys.stdin.isatty():
            print("No input provided, waiting ... (Ctrl+D to complete)", file=sys.stderr, flush=True)
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as err:
        raise CommandError(f"cannot read the job file {name}: {err.strerror or err}") from err


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
