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
* the `--wait` UX (§1.9; the printout and the job's outcome are `cli.follow`): "Job successfully
  submitted. Job ID: ...", one line per new lifecycle step ("Creating job for submission ... done ✅"),
  a shard counter for sharded jobs, then "Job Results By Node:" and the `get`/`describe` hints. Unlike
  v0.3 it follows the job's event stream until EVERY shard has ended (not until the first terminal
  event), `--wait-timeout-secs` bounds the wait, and a job that did not complete exits 1 with the reason
  on stderr. Ctrl+C stops the printout only;
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
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bacalhau_grpc.cli import flags, follow, query
from bacalhau_grpc.cli.flags import CommandError
from bacalhau_grpc.common.errors import BacalhauError, InvalidArgumentError
from bacalhau_grpc.common.model import enums, jobfile, jobs, pb
from bacalhau_grpc.sdk import sdk_types
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
        return follow.fail(f"Error verifying job: {err}")
    except (CommandError, BacalhauError, OSError) as err:
        return follow.fail(f"Error: {_text(err)}")


def _text(err: BaseException) -> str:
    if isinstance(err, InvalidArgumentError):
        return problems_text(err)
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    return str(err) or type(err).__name__


def check_job(job: pb.Job, context: bytes = b"") -> None:
    """The requester's submission rules, run locally: InvalidArgumentError listing every problem."""
    # the requester's pure domain rules (no transport), imported only when a job is checked
    from bacalhau_grpc.requester.domain.validation import validate_submission

    validate_submission(pb.JobCreatePayload(job=job, context=context))


def verify(job: pb.Job, context: bytes = b"") -> None:
    """`check_job` before anything is sent; VerifyError lists every problem, each naming its field."""
    try:
        check_job(job, context)
    except InvalidArgumentError as err:
        raise VerifyError(problems_text(err)) from None


def problems_text(err: InvalidArgumentError) -> str:
    """One problem as it is; several as a count and one "- " line each."""
    problems = err.problems
    if len(problems) == 1:
        return str(problems[0])
    return f"{len(problems)} problems:\n" + "\n".join(f"- {problem}" for problem in problems)


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
    async with flags.api_client(args, timeout=args.gettimeout) as client:
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
        printer = follow.Printer(quiet=quiet, total_shards=total)
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
        end = follow.job_outcome(info)
        if not quiet:
            print("\n".join(follow.results_by_node(info, details=args.node_details)))
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
            return follow.fail(f"Error: {end.reason}")
        return 0


# ------------------------------------------------------------------------------------------------ create


def prepare_job(text: bytes, *, warn: TextIO | None = None) -> pb.Job:
    """`read_job`; a file that cannot be read is "The job provided is invalid: ..." with every problem."""
    try:
        return read_job(text, warn=warn)
    except InvalidArgumentError as err:
        raise CommandError(f"The job provided is invalid: {problems_text(err)}") from err


def read_job(text: bytes, *, warn: TextIO | None = None) -> pb.Job:
    """The job of a job file with `create`'s defaults filled in and server-owned fields cleared (with v0.3's
    warning naming them). Defaults: APIVersion V1beta1, Deal.Concurrency 1, Verifier Noop, Publisher Local
    (v0.3: Estuary). InvalidArgumentError lists every value that cannot be read."""
    warn = warn or sys.stderr
    job = jobfile.load_job(text)
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
