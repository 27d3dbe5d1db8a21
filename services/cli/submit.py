"""Submitting a job and following it, shared by `create`, `docker run`, `wasm run` and `run python`
(Bacalhau v0.3's `ExecuteJob`), all through the SDK's `Client` (their flags are `cli.submit_flags`):

* the local checks before anything is sent ("Error verifying job: ..."): the requester's own submission
  rules (`requester.domain.validation`, built on `common.model.checks`), so a job the CLI lets through
  is one the requester accepts;
* `--dry-run`: the job file as YAML (the canonical flat shape), which `create` accepts unchanged;
* the `--wait` UX (§1.9; the printout and the job's outcome are `cli.follow`): "Job successfully
  submitted. Job ID: ...", one line per new lifecycle step ("Creating job for submission ... done ✅"),
  a shard counter for sharded jobs, then "Job Results By Node:" and the `get`/`describe` hints. Unlike
  v0.3 it follows the job's event stream until EVERY shard has ended (not until the first terminal
  event), `--wait-timeout-secs` bounds the wait, and a job that did not complete exits 1 with the reason
  on stderr. Ctrl+C stops the printout only; `--download` fetches the results once the job completed;
* job files (flat or v0.3.15 nested, Job or JobWithInfo, any key case), read for `create`, `sign` and
  `validate`: `create`'s defaults are filled in and server-owned fields dropped with v0.3's warning.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bacalhau_grpc.cli import flags, follow, progress, query
from bacalhau_grpc.cli.flags import CommandError
from bacalhau_grpc.common.errors import BacalhauError, InvalidArgumentError
from bacalhau_grpc.common.model import jobfile, jobs, pb
from bacalhau_grpc.sdk import WaitTimeoutError, sdk_types
from bacalhau_grpc.sdk.client import to_pb, to_sdk

PROG = "bacalhau-grpc"

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


def check_job(job: pb.Job, context: bytes = b"", submission_id: str = "") -> None:
    """The requester's submission rules, run locally: InvalidArgumentError listing every problem."""
    # the requester's pure domain rules (no transport), imported only when a job is checked
    from bacalhau_grpc.requester.domain.validation import validate_submission

    validate_submission(pb.JobCreatePayload(job=job, context=context, submission_id=submission_id))


def verify(job: pb.Job, context: bytes = b"", submission_id: str = "") -> None:
    """`check_job` before anything is sent; VerifyError lists every problem, each naming its field."""
    try:
        check_job(job, context, submission_id)
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
    submission_id = getattr(args, "submission_id", None) or ""
    if not getattr(args, "skip_syntax_checking", False):
        verify(job, submission.context, submission_id)
    wait, quiet = args.wait, args.id_only
    if args.download and not wait:
        raise CommandError("--download needs --wait: the results can only be fetched once the job ended")
    async with flags.api_client(args, timeout=args.gettimeout) as client:
        if submission.notice and wait and not quiet:
            print(submission.notice, flush=True)
        shown = progress.bar("Uploading context", quiet=quiet) if submission.context else None
        with shown or contextlib.nullcontext():
            submitted = await client.submit(
                to_sdk(job, sdk_types.Job),
                context=submission.context,
                submission_id=submission_id or None,
                on_progress=shown,
            )
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
            ended = await client.wait(job_id, timeout=args.wait_timeout_secs or None, on_event=printer.event)
        except WaitTimeoutError:
            printer.close()
            raise CommandError(
                f"job {job_id} did not end within {args.wait_timeout_secs:g} s (--wait-timeout-secs); it "
                f"is still running: `{PROG} describe {job_id}` shows where it is"
            ) from None
        printer.close()
        info = to_pb(ended, pb.JobWithInfo)
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


# --------------------------------------------------------------------------------------------- job files


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
