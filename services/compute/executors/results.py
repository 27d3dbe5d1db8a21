"""How executors write a shard's result folder (its layout, and the link-free results, are the domain's:
`compute/domain/runs.py`), and the RunResult read from it.

Executors that receive the streams in pieces (Docker's log stream) write them through a `CappedSink`;
executors whose runtime writes the files itself (wasmtime) call `cap_file` afterwards. Either way
`collect` reads the heads back for the summary sent to the requester.
"""

from pathlib import Path

from bacalhau_grpc.compute.domain.runs import EXIT_CODE, STDERR, STDOUT, SUMMARY_BYTES, RunResult

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


def _head(path: Path) -> bytes:
    if not path.exists():
        return b""
    with path.open("rb") as f:
        return f.read(_HEAD_BYTES)
