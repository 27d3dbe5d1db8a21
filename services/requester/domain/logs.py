"""Live logs of a job: what its executions write to stdout and stderr, fetched from their compute nodes.

Which executions: those of the job's shards (one per node that bid on a shard, failed and replaced ones
included), narrowed to one shard (`shard_index`) and to the nodes whose ID starts with `node_id`. An
execution whose bid was not accepted (still a bid, or rejected) ran nothing and shows nothing.

Where each execution's output comes from:

* still running (its bid accepted, no results yet): its compute node, through `ComputePort.stream_logs`
  (StreamExecutionLogs): everything written so far, then, with follow, the rest as it is written until
  the run is over. The node reads the run's files, so this is the whole output (up to the node's cap);
* ended with results (proposed, verified, rejected or published): the run output its ResultsProposed
  event carries, i.e. the first 2 KiB of each stream (the whole output is in the published results:
  `bacalhau-grpc get`). The node is not asked: its files are gone once the execution ends;
* failed or cancelled before it had results: nothing (its node removed its files).

Each chunk carries at most 64 KiB and names its execution, node and shard; a stream's bytes keep their
order, but chunks of different executions (and of stdout and stderr) interleave.

Without follow: what each matching execution has now, one execution after the other (shard order, then
bid order), then the stream ends. With follow: the executions stream side by side, executions that start
later are picked up too (a bid accepted after the stream began, the replacement of a lost node), and the
stream ends once the job has ended and every execution's output has been streamed. A requester shutting
down ends a following stream with UnavailableError (follow again). Once the job has ended, every execution
has ended at the requester, so a node still streaming one `AFTER_END_GRACE` seconds later disagrees (it
never heard its bid was accepted, say): that execution is cut short, as below.

Errors: a job that does not exist raises NotFoundError, a shard it does not have InvalidArgumentError
(both before anything is streamed). A compute node that cannot be reached (or fails) while its execution
is streamed cuts that execution's output short where it stopped; the other executions go on, and once
everything else was streamed the call fails with UnavailableError naming each cut execution, its node,
its shard and the error. So a user sees all the output that could be had, and then, with a non-zero
status, why some is missing; nothing is ever mixed into the streams' bytes.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass

from bacalhau_grpc.common.errors import BacalhauError, InvalidArgumentError, UnavailableError
from bacalhau_grpc.requester.domain.lifecycle import JobRecord, Requester
from bacalhau_grpc.requester.domain.shard_fsm import ExecState, Execution

log = logging.getLogger(__name__)

# The most bytes one chunk carries.
CHUNK_BYTES = 64 * 1024
# Chunks fetched ahead of a slow reader, for all of a followed job's executions together.
QUEUE_SIZE = 64
# Seconds a followed execution's node may go on streaming after the job has ended (every execution has
# then ended at the requester; a node still streaming disagrees, and its stream is cut).
AFTER_END_GRACE = 10.0


@dataclass(frozen=True, slots=True)
class LogChunk:
    """A piece of one execution's stdout or stderr."""

    execution_id: str
    node_id: str
    shard_index: int
    stderr: bool
    data: bytes


async def job_logs(
    requester: Requester,
    job_id: str,
    *,
    shard_index: int | None = None,
    node_id: str = "",
    follow: bool = False,
    caller: str | None = None,
) -> AsyncGenerator[LogChunk, None]:
    """The output of the job's executions (see the module's docstring). The job is looked up (by ID or
    unique prefix, as `caller` may read it: domain/visibility.py) and the filters checked at once; the
    chunks come from the returned iterator."""
    record = await requester.job_record(job_id, caller=caller)
    total = len(record.shards)
    if shard_index is not None and not 0 <= shard_index < total:
        raise InvalidArgumentError(
            f"job {record.id} has no shard {shard_index} (its shards are 0 to {total - 1})",
            field="shard_index",
        )
    logs = _JobLogs(requester, record, shard_index, node_id)
    return _counted(requester.follower(caller), logs.follow()) if follow else logs.now()


async def _counted(
    hold: contextlib.AbstractContextManager[None], chunks: AsyncGenerator[LogChunk, None]
) -> AsyncGenerator[LogChunk, None]:
    """A follower's chunks, counted against its client's max_followers_per_client while it streams
    (ResourceExhaustedError at the first chunk asked for when the client follows that many already)."""
    with hold:
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                yield chunk


@dataclass(frozen=True, slots=True)
class _Pump:
    """A task streaming one running execution's output from its node into the queue."""

    task: "asyncio.Task[None]"
    shard_index: int
    execution: Execution


@dataclass(frozen=True, slots=True)
class _Ended:
    """A followed execution's output was all streamed (or cut short: see `_JobLogs.failures`)."""

    execution_id: str


class _JobLogs:
    def __init__(
        self, requester: Requester, record: JobRecord, shard_index: int | None, node_id: str
    ) -> None:
        self.requester = requester
        self.record = record
        self.shard_index = shard_index
        self.node_id = node_id
        # Executions whose output was taken (streamed, or started streaming).
        self.taken: set[str] = set()
        # Shards with nothing left to take: they had ended when they were last looked at.
        self.done: set[int] = set()
        self.done_before = 0
        # One line per execution whose output was cut short.
        self.failures: list[str] = []

    # -- the two modes ------------------------------------------------------------------------------

    async def now(self) -> AsyncGenerator[LogChunk, None]:
        for shard_index, execution in self._new():
            try:
                async for chunk in self._output(shard_index, execution, follow=False):
                    yield chunk
            except BacalhauError as exc:
                self._cut(shard_index, execution, exc)
        self._raise_failures()

    async def follow(self) -> AsyncGenerator[LogChunk, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[LogChunk | _Ended] = asyncio.Queue(QUEUE_SIZE)
        pumps: dict[str, _Pump] = {}
        stopped: list[asyncio.Task[None]] = []
        getter: asyncio.Future[LogChunk | _Ended] | None = None
        ended_at: float | None = None  # when the job was first seen ended
        try:
            while True:
                # Taken before looking, so a change made while this looks (or yields) wakes the wait below.
                changed = self.record.changed
                if self.requester.watches_closed:
                    raise UnavailableError(
                        f"the requester is shutting down: follow the logs of job {self.record.id} again"
                    )
                for shard_index, execution in self._new():
                    if execution.state == ExecState.ACCEPTED:  # running: its node streams it, alongside
                        task = asyncio.ensure_future(self._pump(shard_index, execution, queue))
                        pumps[execution.execution_id] = _Pump(task, shard_index, execution)
                    else:
                        async for chunk in self._output(shard_index, execution, follow=True):
                            yield chunk
                if self.record.finished:
                    if not pumps:
                        break
                    ended_at = loop.time() if ended_at is None else ended_at
                waiter = asyncio.ensure_future(changed.wait())
                try:
                    while not waiter.done():
                        if getter is None:
                            getter = asyncio.ensure_future(queue.get())
                        timeout = None if ended_at is None else ended_at + AFTER_END_GRACE - loop.time()
                        if timeout is not None and timeout <= 0:
                            # The job has ended, yet nodes still stream: they and the requester disagree
                            # (e.g. a node never heard that its bid was accepted). Cut them short.
                            for pump in pumps.values():
                                pump.task.cancel()
                                stopped.append(pump.task)
                                self._cut(
                                    pump.shard_index,
                                    pump.execution,
                                    f"its node still streamed it {AFTER_END_GRACE:g}s after the job ended",
                                )
                            pumps.clear()
                            while not queue.empty():  # what they sent before
                                if isinstance(item := queue.get_nowait(), LogChunk):
                                    yield item
                            break
                        await asyncio.wait(
                            (getter, waiter), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                        )
                        if not getter.done():
                            continue
                        item, getter = getter.result(), None
                        if isinstance(item, LogChunk):
                            yield item
                            continue
                        del pumps[item.execution_id]
                        if self.record.finished and not pumps:
                            break  # look once more, then end
                finally:
                    waiter.cancel()
        finally:
            if getter is not None:
                getter.cancel()
            tasks = [pump.task for pump in pumps.values()] + stopped
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._raise_failures()

    async def _pump(
        self, shard_index: int, execution: Execution, queue: "asyncio.Queue[LogChunk | _Ended]"
    ) -> None:
        try:
            async for chunk in self._output(shard_index, execution, follow=True):
                await queue.put(chunk)
        except asyncio.CancelledError:
            raise
        except BacalhauError as exc:
            self._cut(shard_index, execution, exc)
        except Exception as exc:
            log.exception("streaming the logs of execution %s failed", execution.execution_id)
            self._cut(shard_index, execution, exc)
        await queue.put(_Ended(execution.execution_id))

    # -- one execution ------------------------------------------------------------------------------

    async def _output(
        self, shard_index: int, execution: Execution, *, follow: bool
    ) -> AsyncGenerator[LogChunk, None]:
        """One execution's output: from its node while it runs, else from its results (if any)."""

        def chunk(stderr: bool, data: bytes) -> LogChunk:
            return LogChunk(execution.execution_id, execution.node_id, shard_index, stderr, data)

        if execution.state != ExecState.ACCEPTED:
            output = execution.run_output
            if output is None:
                return
            for stderr, text in ((False, output.stdout), (True, output.stderr)):
                data = text.encode()
                for start in range(0, len(data), CHUNK_BYTES):
                    yield chunk(stderr, data[start : start + CHUNK_BYTES])
            return
        address = self.requester.node_address(execution.node_id)
        stream = self.requester.compute.stream_logs(address, execution.execution_id, follow)
        async with contextlib.aclosing(stream) as pieces:
            async for stderr, data in pieces:
                yield chunk(stderr, data)

    # -- picking executions -------------------------------------------------------------------------

    def _new(self) -> list[tuple[int, Execution]]:
        """The matching executions not taken yet whose output can be had now (their bid was decided), in
        shard order then bid order; they count as taken from here on."""
        found: list[tuple[int, Execution]] = []
        for shard_index in self._shard_indexes():
            shard = self.record.shards[shard_index]
            ended = shard.is_terminal  # before looking: an ended shard gets no new executions
            for execution in list(shard.executions.values()):
                if (
                    execution.execution_id in self.taken
                    or execution.state in (ExecState.BID, ExecState.REJECTED)
                    or not execution.node_id.startswith(self.node_id)
                ):
                    continue
                self.taken.add(execution.execution_id)
                found.append((shard_index, execution))
            if ended:
                self.done.add(shard_index)
        return found

    def _shard_indexes(self) -> Iterator[int]:
        if self.shard_index is not None:
            if self.shard_index not in self.done:
                yield self.shard_index
            return
        while self.done_before in self.done:
            self.done_before += 1
        for index in range(self.done_before, len(self.record.shards)):
            if index not in self.done:
                yield index

    # -- failures -----------------------------------------------------------------------------------

    def _cut(self, shard_index: int, execution: Execution, error: object) -> None:
        self.failures.append(
            f"execution {execution.execution_id} on node {execution.node_id} (shard {shard_index}): "
            f"{str(error) or type(error).__name__}"
        )

    def _raise_failures(self) -> None:
        if self.failures:
            raise UnavailableError(
                f"the output of {len(self.failures)} execution(s) is incomplete: " + "; ".join(self.failures)
            )
