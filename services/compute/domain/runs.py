"""One run of an execution, as the compute domain and its executors share it: what an executor is given
(`RunContext`, its `Mount`s) and returns (`RunResult`, or `ExecutorError`), the run's timeout, and the
result folder's layout (Bacalhau v0.3's):

    result_dir/stdout     the run's standard output, cut at the node's cap
    result_dir/stderr     the run's standard error, cut at the node's cap
    result_dir/exitCode   the exit code in decimal
    result_dir/<Name>/    one folder per output volume (made before the run, see `prepare_outputs`)

Results never follow links: once the run is over, `without_links` removes from the folder every symbolic
link, hard link and special file (fifo, socket, device) the job left there, and the run's note (which the
job's ResultsProposed event shows) names each one. Hashing, publishing and downloading then see folders
and regular files only (`common.content.safe`).

The `Executor` interface itself is in `domain/ports.py`; how executors write the folder is in
`compute/executors/results.py`.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from bacalhau_grpc.common.content import safe
from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import checks, pb
from bacalhau_grpc.compute.domain.executions import Execution

STDOUT = "stdout"
STDERR = "stderr"
EXIT_CODE = "exitCode"
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


def run_timeout(spec: pb.Spec) -> float:
    """The most a run may take: `Spec.Timeout`, or DEFAULT_RUN_TIMEOUT when it is not > 0."""
    return spec.timeout if spec.timeout > 0 else DEFAULT_RUN_TIMEOUT


def without_links(result: RunResult) -> RunResult:
    """The run's result once its folder holds only folders and regular files with one link (see
    `safe.prune`); what was removed is added to its note."""
    if result.result_dir is None or not result.result_dir.is_dir() or result.result_dir.is_symlink():
        return result
    note = safe.describe_dropped(safe.prune(result.result_dir))
    if not note:
        return result
    return dataclasses.replace(result, note=f"{result.note}; {note}" if result.note else note)


def prepare_outputs(
    result_dir: Path, outputs: list[pb.StorageSpec] | tuple[pb.StorageSpec, ...]
) -> tuple[Mount, ...]:
    """Makes the result folder and a fresh writable `result_dir/<Name>` per output volume.

    Outputs that cannot be made (see `checks.output_error`) raise InvalidArgumentError naming the field.
    """
    problem = checks.output_error(outputs)
    if problem is not None:
        raise InvalidArgumentError(problem[0], field=problem[1])
    result_dir.mkdir(parents=True, exist_ok=True)
    mounts: list[Mount] = []
    for output in outputs:
        folder = result_dir / output.name
        folder.mkdir()
        folder.chmod(0o777)  # containers may run as any user
        mounts.append(Mount(source=folder, target=output.path, read_only=False))
    return tuple(mounts)
