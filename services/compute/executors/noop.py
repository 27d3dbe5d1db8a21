"""The Noop executor: runs nothing, returns what its knobs say (tests, demos, benchmarks)."""

import asyncio

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.executors.base import ExecutorError, RunContext, RunResult


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

    async def run(self, context: RunContext) -> RunResult:
        self.runs += 1
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        if self.error:
            raise ExecutorError(self.error)
        return RunResult(stdout=self.stdout, stderr=self.stderr, exit_code=self.exit_code)

    async def cancel(self, execution_id: str) -> None:
        return None
