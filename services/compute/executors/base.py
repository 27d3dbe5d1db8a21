"""Executors: what runs an execution. The `Executor` protocol and what it is given and returns.

An executor's `run(context)` gets a `RunContext`: the execution (job, shard), the prepared inputs
(contexts and the shard's input volumes, local paths to mount read-only at their job paths), the
outputs (fresh writable folders `result_dir/<Name>` to mount at their job paths), the result folder
and the run's timeout. It writes `stdout`, `stderr` and `exitCode` into the result folder (see
`executors.results`) and returns a `RunResult` (the heads of the streams and the exit code, plus the
summary sent to the requester), or raises `ExecutorError` (the run could not happen: the execution
fails). A non-zero exit code is a RESULT, not an error. Cancellation is asyncio cancellation of the
task that awaits `run`; an executor that runs something outside the event loop (a container, a guest
thread) stops it in `cancel`.

`run_with_timeout` bounds a run by the job's `Spec.Timeout` (600 s when unset, as v0.3's compute node).
"""

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.executions import Execution

# The RunOutput summary carries the first 2 KiB of each stream (as in Bacalhau v0.3).
SUMMARY_BYTES = 2048
# v0.3 compute run timeout when the job has none.
DEFAULT_RUN_TIMEOUT = 600.0
# Seconds past the timeout before a run that enforces its own timeout is cancelled anyway.
BACKSTOP_SLACK = 5.0


class ExecutorError(Exception):
    """The run could not happen or did not finish; the text is what the requester is told."""


@dataclass(frozen=True, slots=True)
class Mount:
    """A local file or folder the job sees at `target` (an absolute path inside the job)."""

    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True, slots=True)
class RunContext:
    """Everything an executor needs for one run."""

    execution: Execution
    # The node running it (container names and labels).
    node_id: str
    # The job's contexts (`Spec.Contexts`, in order; a WASM job's module is the first), prepared on this
    # node: mounted read-only at their paths.
    contexts: tuple[Mount, ...] = ()
    # The shard's input volumes, prepared on this node: mounted read-only at their paths.
    inputs: tuple[Mount, ...] = ()
    # A WASM job's import modules (`Spec.Wasm.ImportModules`, in order), prepared on this node.
    import_modules: tuple[Mount, ...] = ()
    # One fresh folder `result_dir/<Name>` per output volume: mounted writable at the output's path.
    outputs: tuple[Mount, ...] = ()
    # The shard's result folder (empty at the start): stdout, stderr, exitCode and the output folders.
    result_dir: Path | None = None
    # Seconds the run may take (the job's timeout, or the node's default).
    timeout: float = DEFAULT_RUN_TIMEOUT

    @property
    def job(self) -> pb.Job:
        return self.execution.job

    @property
    def spec(self) -> pb.Spec:
        return self.execution.job.spec


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run produced."""

    # The streams, or (for runs that wrote them to the result folder) their first bytes: at least
    # SUMMARY_BYTES + 1 when there were more, so the summary can tell it cut them.
    stdout: bytes
    stderr: bytes
    exit_code: int
    # The folder holding the shard's results (stdout, stderr, exitCode, outputs), when the executor
    # writes one; the deterministic proposal hashes it and the publisher publishes it.
    result_dir: Path | None = None
    # Set when the stream files themselves were cut at the node's cap (more was written than kept).
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    # A line for the job's events about how it ran, e.g. "ran on CPython 3.12.0 (WASI)"; may be empty.
    note: str = ""

    def summary(self) -> pb.RunCommandResult:
        """The `RunOutput` sent with the results: the first 2 KiB of each stream, truncated flags."""
        stdout, stdout_cut = _head(self.stdout)
        stderr, stderr_cut = _head(self.stderr)
        return pb.RunCommandResult(
            stdout=stdout,
            stdout_truncated=stdout_cut or self.stdout_truncated,
            stderr=stderr,
            stderr_truncated=stderr_cut or self.stderr_truncated,
            exit_code=self.exit_code,
        )


def _head(data: bytes) -> tuple[str, bool]:
    """The first SUMMARY_BYTES as text, and whether anything was cut. A character cut in half at the
    end is dropped; other invalid UTF-8 shows as replacement characters."""
    if len(data) <= SUMMARY_BYTES:
        return data.decode("utf-8", errors="replace"), False
    return _drop_partial_character(data[:SUMMARY_BYTES]).decode("utf-8", errors="replace"), True


def _drop_partial_character(head: bytes) -> bytes:
    end = len(head)
    start = end
    while start > 0 and end - start < 3 and head[start - 1] & 0xC0 == 0x80:  # continuation bytes
        start -= 1
    if start == 0:
        return head
    lead = head[start - 1]
    length = 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4 if lead >> 3 == 0b11110 else 1
    return head[: start - 1] if length > end - start + 1 else head


class Executor(Protocol):
    """Runs executions of one engine."""

    @property
    def engine(self) -> int:
        """The `pb.Engine` this executor runs."""
        ...

    def is_installed(self) -> bool: ...

    async def run(self, context: RunContext) -> RunResult: ...

    async def cancel(self, execution_id: str) -> None:
        """Stops whatever the run started outside the event loop; the run's task is cancelled too."""
        ...


def run_timeout(spec: pb.Spec) -> float:
    """The most a run may take: `Spec.Timeout`, or DEFAULT_RUN_TIMEOUT when it is not > 0."""
    return spec.timeout if spec.timeout > 0 else DEFAULT_RUN_TIMEOUT


async def run_with_timeout(executor: Executor, context: RunContext) -> RunResult:
    """`executor.run`, bounded by `context.timeout`: "execution timed out after 2.5s" past it.

    Executors that enforce the timeout themselves (`enforces_timeout = True`: they kill a container or
    interrupt a guest and say so, keeping what it wrote) get BACKSTOP_SLACK more seconds before this
    backstop cancels them."""
    slack = BACKSTOP_SLACK if getattr(executor, "enforces_timeout", False) else 0.0
    try:
        async with asyncio.timeout(context.timeout + slack):
            return await executor.run(context)
    except TimeoutError:
        await executor.cancel(context.execution.id)
        raise ExecutorError(f"execution timed out after {context.timeout:g}s") from None
