"""Live logs of one execution on this node: what its run writes to stdout and stderr, as it writes it.

Where the output is:

* While the run lasts and until the execution ends, every executor keeps the streams in files: Docker
  copies the container's attach stream into `work_root/<execution id>/results/stdout|stderr` piece by
  piece (`CappedSink`, each piece written through), WASM and Python guests write those files themselves
  (wasmtime's WASI stdout/stderr), and the noop executor writes its knobs' output when the run starts into
  its own folder (`NoopExecutor.output_dir`: the node gives noop runs no result folder). The folder is
  removed once the execution ends (Completed, Failed, Cancelled).
* After that, the node keeps the heads of the streams in the execution's `run_output` (the first 2 KiB
  of each, as sent to the requester with the results).

`execution_logs` tails the files: it polls every `POLL_INTERVAL` seconds, reads only the bytes that came
since the last read (chunks of at most `CHUNK_BYTES`), and keeps each file open once found, so a folder
removed meanwhile is still read to its end. It checks the execution's state BEFORE reading: once the run
is over (the execution is past Running: its results proposed, or it ended) nothing more will be written,
so reading the files to their end then gives everything and the stream stops. A stream whose file was
never found by then comes from `run_output` instead (possibly a head, cut at 2 KiB); a run that failed
or was cancelled before it finished has no `run_output`, so only what its files held is shown.

Without `follow`, the stream is what exists now (the files as far as written, or the heads once the run
is over), then it ends. With `follow`, it goes on until the run is over: an execution still waiting for
its bid to be accepted (Created, BidAccepted) or for capacity is waited for. An unknown execution raises
NotFoundError.
"""

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import BinaryIO

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.compute.domain.executions import Execution, ExecutionState
from bacalhau_grpc.compute.domain.node import ComputeNode
from bacalhau_grpc.compute.domain.runs import STDERR, STDOUT

# The most bytes one chunk carries.
CHUNK_BYTES = 64 * 1024
# How often a followed execution's files and state are looked at.
POLL_INTERVAL = 0.1

S = ExecutionState
# The states in which the run has not finished yet (it may still write).
_RUN_NOT_OVER = frozenset({S.CREATED, S.BID_ACCEPTED, S.RUNNING})

# One piece of output: (True for stderr, False for stdout; the bytes).
LogChunk = tuple[bool, bytes]


def execution_logs(
    node: ComputeNode, execution_id: str, *, follow: bool = False, poll_interval: float = POLL_INTERVAL
) -> AsyncGenerator[LogChunk, None]:
    """The execution's output as (is_stderr, bytes) chunks (see the module's docstring).

    Raises NotFoundError for an unknown execution and InvalidArgumentError for an empty ID, at once."""
    if not execution_id:
        raise InvalidArgumentError("the execution ID is empty", field="execution_id")
    node.store.get(execution_id)  # NotFoundError before anything is streamed
    return _stream(node, execution_id, follow, poll_interval)


class _Tail:
    """One stream's file, read from where the last read stopped."""

    def __init__(self, name: str, stderr: bool) -> None:
        self.name = name
        self.stderr = stderr
        self.file: BinaryIO | None = None

    def open(self, folders: Sequence[Path]) -> None:
        for folder in folders:
            with contextlib.suppress(OSError):  # not there (yet, or any more)
                self.file = (folder / self.name).open("rb", buffering=0)
                return

    def pending(self) -> int:
        """How many bytes were written past what was read (0 when the file was cut shorter meanwhile)."""
        if self.file is None:
            return 0
        return max(os.fstat(self.file.fileno()).st_size - self.file.tell(), 0)

    def read(self, size: int) -> bytes:
        assert self.file is not None
        return self.file.read(size) or b""

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


async def _stream(
    node: ComputeNode, execution_id: str, follow: bool, interval: float
) -> AsyncGenerator[LogChunk, None]:
    tails = (_Tail(STDOUT, stderr=False), _Tail(STDERR, stderr=True))
    try:
        while True:
            # The state first: when the run is over, every byte it wrote is in the files read below.
            execution = node.store.get(execution_id)
            run_over = execution.state not in _RUN_NOT_OVER
            folders = _output_folders(node, execution)
            for tail in tails:
                if tail.file is None:
                    tail.open(folders)
                # What was written up to now (a run writing faster than this reads waits for the next turn).
                left = tail.pending()
                while left > 0 and (data := tail.read(min(left, CHUNK_BYTES))):
                    left -= len(data)
                    yield tail.stderr, data
            if run_over:
                for tail in tails:
                    if tail.file is None:
                        for data in _chunks(_head(execution, tail.stderr)):
                            yield tail.stderr, data
                return
            if not follow:
                return
            await asyncio.sleep(interval)
    finally:
        for tail in tails:
            tail.close()


def _output_folders(node: ComputeNode, execution: Execution) -> list[Path]:
    """Where the execution's stream files may be: its result folder, or its executor's own folder."""
    folders = [node.work_root / execution.id / "results"]
    executor = node.executors.get(execution.job.spec.engine)
    own = getattr(executor, "output_dir", None)
    if own is not None:
        folder = own(execution.id)
        if folder is not None:
            folders.append(folder)
    return folders


def _head(execution: Execution, stderr: bool) -> bytes:
    """What the node kept of a stream after the run: the head sent with the results (may be empty)."""
    output = execution.run_output
    if output is None:
        return b""
    return (output.stderr if stderr else output.stdout).encode()


def _chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
