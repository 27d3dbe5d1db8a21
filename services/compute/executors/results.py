"""The files every executor leaves in a shard's result folder (Bacalhau v0.3's layout), and the RunResult
read from them.

    result_dir/stdout     the run's standard output, cut at the node's cap
    result_dir/stderr     the run's standard error, cut at the node's cap
    result_dir/exitCode   the exit code in decimal
    result_dir/<Name>/    one folder per output volume (made before the run, see `prepare_outputs`)

Executors that receive the streams in pieces (Docker's log stream) write them through a `CappedSink`;
executors whose runtime writes the files itself (wasmtime) call `cap_file` afterwards. Either way
`collect` reads the heads back for the summary sent to the requester.

Results never follow links: once the run is over, `without_links` removes from the folder every symbolic
link, hard link and special file (fifo, socket, device) the job left there, and the run's note (which the
job's ResultsProposed event shows) names each one. Hashing, publishing and downloading then see folders
and regular files only (`common.content.safe`).
"""

import dataclasses
from pathlib import Path

from bacalhau_grpc.common.content import safe
from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import checks, pb
from bacalhau_grpc.compute.executors.base import SUMMARY_BYTES, Mount, RunResult

STDOUT = "stdout"
STDERR = "stderr"
EXIT_CODE = "exitCode"
# The most of each stream a node keeps (v0.3 kept 1 GB; a shard's streams are rarely worth that).
DEFAULT_STREAM_CAP = 100 * 1024**2
# What `collect` reads of each stream: enough for the summary to tell whether it cut something.
_HEAD_BYTES = SUMMARY_BYTES + 4


class CappedSink:
    """A stream file that keeps the first `cap` bytes written to it and remembers whether more came. Each
    write reaches the file at once (live logs read it while the run goes on)."""

    def __init__(self, path: Path, cap: int = DEFAULT_STREAM_CAP) -> None:
        self.path = path
        self.cap = cap
        self.written = 0
        self.truncated = False
        self._file = path.open("wb")

    def write(self, data: bytes) -> None:
        room = self.cap - self.written
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        if data:
            self._file.write(data)
            self._file.flush()  # readers of live logs see each piece as it arrives
            self.written += len(data)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "CappedSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cap_file(path: Path, cap: int = DEFAULT_STREAM_CAP) -> bool:
    """Cuts the file at `cap` bytes; True when it was longer. A missing file becomes an empty one."""
    if not path.exists():
        path.touch()
        return False
    if path.stat().st_size <= cap:
        return False
    with path.open("r+b") as f:
        f.truncate(cap)
    return True


def write_exit_code(result_dir: Path, exit_code: int) -> None:
    (result_dir / EXIT_CODE).write_text(str(exit_code))


def collect(
    result_dir: Path, exit_code: int, *, stdout_truncated: bool = False, stderr_truncated: bool = False
) -> RunResult:
    """Writes `exitCode` and returns the RunResult of the folder (the heads of its stream files)."""
    write_exit_code(result_dir, exit_code)
    return RunResult(
        stdout=_head(result_dir / STDOUT),
        stderr=_head(result_dir / STDERR),
        exit_code=exit_code,
        result_dir=result_dir,
        stdout_truncated=stdout_truncated,
        stderr_truncated=stderr_truncated,
    )


def without_links(result: RunResult) -> RunResult:
    """The run's result once its folder holds only folders and regular files with one link (see
    `safe.prune`); what was removed is added to its note."""
    if result.result_dir is None or not result.result_dir.is_dir() or result.result_dir.is_symlink():
        return result
    note = safe.describe_dropped(safe.prune(result.result_dir))
    if not note:
        return result
    return dataclasses.replace(result, note=f"{result.note}; {note}" if result.note else note)


def _head(path: Path) -> bytes:
    if not path.exists():
        return b""
    with path.open("rb") as f:
        return f.read(_HEAD_BYTES)


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
