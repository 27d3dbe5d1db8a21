"""Executors: what runs an execution. The `Executor` protocol, and the Noop executor.

An executor's `run` returns a `RunResult` (the complete stdout/stderr and exit code, plus the summary
sent to the requester) or raises `ExecutorError` (the run could not happen: the execution fails).
A non-zero exit code is a RESULT, not an error. Cancellation is asyncio cancellation of the task that
awaits `run`; an executor that runs something outside the event loop (a container, a process) stops
it in `cancel`.

`run_with_timeout` bounds a run by the job's `Spec.Timeout` (600 s when unset, as v0.3's compute node).
"""

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.executions import Execution

# The RunOutput summary carries the first 2 KiB of each stream (§3.5).
SUMMARY_BYTES = 2048
# v0.3 compute run timeout when the job has none.
DEFAULT_RUN_TIMEOUT = 600.0


class ExecutorError(Exception):
    """The run could not happen or did not finish; the text is what the requester is told."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run produced."""

    stdout: bytes
    stderr: bytes
    exit_code: int
    # The folder holding the shard's results (stdout, stderr, exitCode, outputs), when the executor
    # writes one; the deterministic proposal hashes it and the publisher publishes it.
    result_dir: Path | None = None

    def summary(self) -> pb.RunCommandResult:
        """The `RunOutput` sent with the results: the first 2 KiB of each stream, truncated flags."""
        stdout, stdout_cut = _head(self.stdout)
        stderr, stderr_cut = _head(self.stderr)
        return pb.RunCommandResult(
            stdout=stdout,
            stdout_truncated=stdout_cut,
            stderr=stderr,
            stderr_truncated=stderr_cut,
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

    async def run(self, execution: Execution) -> RunResult: ...

    async def cancel(self, execution_id: str) -> None:
        """Stops whatever the run started outside the event loop; the run's task is cancelled too."""
        ...


class NoopExecutor:
    """Runs nothing: waits `delay` seconds, then returns the configured stdout, stderr and exit code.

    The knobs (settings `noop_stdout`, `noop_stderr`, `noop_exit_code`, `noop_delay`, `noop_error`) let
    tests and demos produce any result, a long run (for timeouts and cancellation), a failing exit code,
    or a failed run (`error`: after the delay the run raises ExecutorError with this message, so the node
    reports a compute failure).
    """

    engine = pb.Engine.ENGINE_NOOP

    def __init__(
        self, *, stdout: str = "", stderr: str = "", exit_code: int = 0, delay: float = 0.0, error: str = ""
    ) -> None:
        self.error = error
        self.stdout = stdout.encode()
        self.stderr = stderr.encode()
        self.exit_code = exit_code
        self.delay = delay
        self.runs = 0

    def is_installed(self) -> bool:
        return True

    async def run(self, execution: Execution) -> RunResult:
        self.runs += 1
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        if self.error:
            raise ExecutorError(self.error)
        return RunResult(stdout=self.stdout, stderr=self.stderr, exit_code=self.exit_code)

    async def cancel(self, execution_id: str) -> None:
        return None


def run_timeout(spec: pb.Spec) -> float:
    """The most a run may take: `Spec.Timeout`, or DEFAULT_RUN_TIMEOUT when it is not > 0."""
    return spec.timeout if spec.timeout > 0 else DEFAULT_RUN_TIMEOUT


async def run_with_timeout(executor: Executor, execution: Execution) -> RunResult:
    """`executor.run`, bounded by the job's timeout: "execution timed out after 2.5s" past it."""
    timeout = run_timeout(execution.job.spec)
    try:
        async with asyncio.timeout(timeout):
            return await executor.run(execution)
    except TimeoutError:
        await executor.cancel(execution.id)
        raise ExecutorError(f"execution timed out after {timeout:g}s") from None
