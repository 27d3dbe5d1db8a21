"""The Noop executor: runs nothing, returns what its knobs say (tests, demos, benchmarks)."""

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.runs import STDERR, STDOUT, ExecutorError, RunContext, RunResult

log = logging.getLogger(__name__)


class NoopExecutor:
    """Runs nothing: writes the configured stdout and stderr, waits `delay` seconds, then returns them with
    the configured exit code.

    The knobs (settings `noop_stdout`, `noop_stderr`, `noop_exit_code`, `noop_delay`, `noop_error`) let
    tests and demos produce any result, a long run (for timeouts and cancellation), a failing exit code,
    or a failed run (`error`: after the delay the run raises ExecutorError with this message, so the node
    reports a compute failure).

    Like a real run, the output is written as the run starts, before the delay, into `stdout` and `stderr`
    files that live logs read while the run lasts: the run's result folder when it is given one, else (the
    node gives noop runs none) a folder of the executor's own, named by `output_dir(execution_id)` while
    the run lasts and removed when it ends. A run with no output writes no files. The result itself is
    unchanged: the streams and exit code, without a result folder (so its proposal hashes the streams).
    """

    engine = pb.Engine.ENGINE_NOOP

    def __init__(
        self,
        *,
        stdout: str = "",
        stderr: str = "",
        exit_code: int = 0,
        delay: float = 0.0,
        error: str = "",
        output_root: Path | None = None,
    ) -> None:
        self.error = error
        self.stdout = stdout.encode()
        self.stderr = stderr.encode()
        self.exit_code = exit_code
        self.delay = delay
        self.runs = 0
        # Where runs without a result folder write their streams (a fresh folder per run); None: the
        # system's temporary folder.
        self.output_root = output_root
        self._outputs: dict[str, Path] = {}

    def is_installed(self) -> bool:
        return True

    def output_dir(self, execution_id: str) -> Path | None:
        """The folder holding the `stdout` and `stderr` of the execution's run while it lasts, when the run
        writes them outside a result folder; None otherwise."""
        return self._outputs.get(execution_id)

    async def run(self, context: RunContext) -> RunResult:
        self.runs += 1
        own = self._write_output(context)
        try:
            if self.delay > 0:
                await asyncio.sleep(self.delay)
            if self.error:
                raise ExecutorError(self.error)
            return RunResult(stdout=self.stdout, stderr=self.stderr, exit_code=self.exit_code)
        finally:
            if own is not None:
                self._outputs.pop(context.execution.id, None)
                shutil.rmtree(own, ignore_errors=True)

    def _write_output(self, context: RunContext) -> Path | None:
        """Writes both stream files (together: a reader sees both or neither); returns the folder when it is
        the executor's own."""
        if not (self.stdout or self.stderr):
            return None
        folder = context.result_dir
        own = None
        try:
            if folder is None:
                if self.output_root is not None:
                    self.output_root.mkdir(parents=True, exist_ok=True)
                own = folder = Path(tempfile.mkdtemp(prefix="noop-", dir=self.output_root))
            (folder / STDOUT).write_bytes(self.stdout)
            (folder / STDERR).write_bytes(self.stderr)
        except OSError as exc:  # live logs only: the result does not depend on these files
            log.warning("noop run of %s could not write its output files: %s", context.execution.id, exc)
            if own is not None:
                shutil.rmtree(own, ignore_errors=True)
            return None
        if own is not None:
            self._outputs[context.execution.id] = own
        return own

    async def cancel(self, execution_id: str) -> None:
        return None
