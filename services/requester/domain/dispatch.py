"""Effect dispatch: the calls shards' transitions ask for (AskForBid, BidAccepted, Verify, ...) wait in an
outbox until the state that asked for them is committed (write-ahead), then leave in batches: one batch
per peer and kind (asks, execution updates, verifications), each one port call, and their outcomes come
back in one step as new inputs of the shards' machines (`_after_call`). No task per shard or call: one
per batch.

A call to a node that cannot be reached while the node is taken for alive is tried again with back-off
(BidAccepted, ResultAccepted and CancelExecution, while the execution is still in the state that asked
for them; Verify while the shard verifies within its deadline): it goes back to the outbox when its
back-off ends. A node that registers again is told at once what it is still owed (`ShardFSM.resume_node`);
one silent past its node timeout is lost, and its executions with it (`NodeLiveness`).

A mixin of `Requester` (`lifecycle.py`): the state it uses is set by the orchestrator, declared below.
"""

import asyncio
import contextlib
import contextvars
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, assert_never

from bacalhau_grpc.common.errors import (
    BacalhauError,
    DeadlineExceededError,
    NotFoundError,
    UnavailableError,
)
from bacalhau_grpc.requester.domain.nodes import NodeRegistry
from bacalhau_grpc.requester.domain.ports import ComputePort, ExecutionUpdate, JobStore, VerifierPort
from bacalhau_grpc.requester.domain.records import JobRecord
from bacalhau_grpc.requester.domain.shard_fsm import (
    AskForBid,
    CancelExecution,
    ExecState,
    NotifyBidAccepted,
    NotifyBidRejected,
    NotifyResultAccepted,
    NotifyResultRejected,
    Phase,
    ShardFSM,
    Transition,
    Verify,
)

# The lifecycle's logger: these records kept their logger name when this part moved out of lifecycle.py.
log = logging.getLogger("bacalhau_grpc.requester.domain.lifecycle")

SpanFactory = Callable[..., contextlib.AbstractContextManager[Any]]

# What a shard's transition asks of the world outside.
Call = AskForBid | Verify | ExecutionUpdate

# Calls to a node retried while it is unreachable but alive (it may be restarting), with the execution
# state that waits for each: work it must do (run, publish) and work it must stop (a cancelled execution).
_RETRIED = {
    NotifyBidAccepted: ExecState.ACCEPTED,
    NotifyResultAccepted: ExecState.RESULT_ACCEPTED,
    CancelExecution: ExecState.CANCELLED,
}


@dataclass
class Outgoing:
    """A call waiting to go out (or to be tried again after `backoff` seconds), with the context it was
    asked for in (its trace: the batch call runs in the context of its last call)."""

    job_id: str
    shard_index: int
    call: Call
    backoff: float = 0.0
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


# A batch: all its calls go to one peer through one port call.
BatchKey = tuple[str, str]  # ("ask" | "update" | "verify", node ID or "" for the verifier)


class EffectDispatch:
    """Running the calls transitions ask for (mixed into `Requester`)."""

    # Set by `Requester.__init__`.
    node_id: str
    store: JobStore
    compute: ComputePort
    verifier: VerifierPort
    nodes: NodeRegistry
    retry_backoff_start: float
    retry_backoff_max: float
    _clock: Callable[[], float]
    _rng: random.Random
    _span: SpanFactory
    _tasks: set[asyncio.Task[Any]]
    _outbox: list[Outgoing]
    _outbox_waits: bool
    _retry_timers: set[asyncio.TimerHandle]
    _stopping: bool
    _draining: bool

    if TYPE_CHECKING:

        def _lookup(self, job_id: str) -> JobRecord | None: ...  # queries.py

        def _refill(self, shard: ShardFSM, transition: Transition, now: float) -> None: ...  # liveness.py

        def _apply(
            self, record: JobRecord, shard: ShardFSM, transition: Transition
        ) -> None: ...  # lifecycle.py

    # -- the outbox ------------------------------------------------------------------------------

    def _send(self, calls: Sequence[Outgoing]) -> None:
        """Queue calls; they leave once everything queued to the store so far is committed."""
        if self._stopping:
            for outgoing in calls:
                log.warning(
                    "requester stopping: %s not sent",
                    type(outgoing.call).__name__,
                    extra={"job_id": outgoing.job_id, "node_id": self.node_id},
                )
            return
        self._outbox.extend(calls)
        if not self._outbox_waits:
            self._outbox_waits = True
            self.store.when_committed(self._flush_outbox)

    def _flush_outbox(self) -> None:
        """The outbox's state is committed: send its calls, one batch per peer and kind."""
        self._outbox_waits = False
        outgoing, self._outbox = self._outbox, []
        if self._stopping:
            self._send(outgoing)  # logs them
            return
        batches: dict[BatchKey, list[Outgoing]] = {}
        for item in outgoing:
            batches.setdefault(_batch_key(item.call), []).append(item)
        loop = asyncio.get_running_loop()
        for key, batch in batches.items():
            task = loop.create_task(self._perform(key, batch), context=batch[-1].context)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _perform(self, key: BatchKey, batch: list[Outgoing]) -> None:
        try:
            with contextlib.ExitStack() as spans:
                # One span per call, each in its job's trace; the task runs in the context the batch's last
                # call was asked for in (so a span whose job's trace is not that one links it), and the
                # batch call runs in the last span.
                for item in batch:
                    spans.enter_context(
                        self._span(
                            f"requester.{type(item.call).__name__}",
                            job_id=item.job_id,
                            node_id=self.node_id,
                            shard_index=item.shard_index,
                        )
                    )
                results = await self._call(key, batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, BacalhauError):
                log.exception("%s calls to %s failed", key[0], key[1] or "the verifier")
            results = [exc] * len(batch)
        now = self._clock()
        for item, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException) and self._retry(item, result):
                continue
            self._after_call(item, result, now)

    async def _call(self, key: BatchKey, batch: list[Outgoing]) -> Sequence[Any]:
        """One port call for the batch: one result (a value or an error) per call."""
        kind, node_id = key
        if kind == "verify":
            requests = []
            for item in batch:
                record = self._lookup(item.job_id)
                assert isinstance(item.call, Verify)
                requests.append((record.job if record else None, item.shard_index, item.call.proposals))
            return await self._with_jobs(requests, self.verifier.verify_shards)
        address = self._address(node_id)
        if kind == "ask":
            asks = []
            for item in batch:
                record = self._lookup(item.job_id)
                asks.append((record.job if record else None, item.shard_index))
            return await self._with_jobs(asks, lambda found: self.compute.ask_for_bids(address, found))
        updates: list[ExecutionUpdate] = [item.call for item in batch]  # type: ignore[misc]
        return await self.compute.update_executions(address, updates)

    def _address(self, node_id: str) -> str:
        address = self.nodes.address(node_id)
        if not address:
            raise UnavailableError(f"node {node_id} is not registered with this requester")
        return address

    @staticmethod
    async def _with_jobs(requests: list[Any], send: Callable[[list[Any]], Any]) -> list[Any]:
        """`send` the requests whose job was found (the first field); NotFoundError for the others."""
        found = [r for r in requests if r[0] is not None]
        answers = iter(await send(found) if found else [])
        return [next(answers) if r[0] is not None else NotFoundError("the job is gone") for r in requests]

    # -- retries ---------------------------------------------------------------------------------

    def _retry(self, item: Outgoing, error: BaseException) -> bool:
        """Whether the failed call goes out again after a back-off (see the module's docstring); a call
        given up because the requester stops is dropped (the next start redoes it: `ShardFSM.resume`)."""
        if not isinstance(error, UnavailableError | DeadlineExceededError):
            return False
        if isinstance(item.call, Verify):
            shard = self._shard(item)
            if shard is None or shard.phase != Phase.VERIFYING_RESULTS:
                return False
            if self._draining:
                return True  # left verifying: the next start sends Verify again
            deadline = shard.execution_deadline
            delay = item.backoff or self.retry_backoff_start
            if deadline is not None and self._clock() + delay >= deadline:
                return False
            what = "verifier unreachable"
        else:
            if type(item.call) not in _RETRIED or not self._still_waits(item):
                return False
            if self._draining:
                return True
            delay = item.backoff or self.retry_backoff_start
            what = f"{type(item.call).__name__} to node {item.call.node_id} failed"
        log.info(
            "%s (%s); retrying in %.1fs",
            what,
            error,
            delay,
            extra={"job_id": item.job_id, "node_id": self.node_id},
        )
        item.backoff = min(delay * 2, self.retry_backoff_max)
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def again() -> None:
            if handle is not None:
                self._retry_timers.discard(handle)
            self._send([item])

        handle = loop.call_later(delay, again)
        self._retry_timers.add(handle)
        return True

    def _shard(self, item: Outgoing) -> ShardFSM | None:
        record = self._lookup(item.job_id)
        return None if record is None else record.shards[item.shard_index]

    def _still_waits(self, item: Outgoing) -> bool:
        """The node is taken for alive and its execution is still in the state that asked for the call."""
        call = item.call
        assert isinstance(call, NotifyBidAccepted | NotifyResultAccepted | CancelExecution)
        shard = self._shard(item)
        if shard is None or not self.nodes.is_live(call.node_id, self._clock()):
            return False
        execution = shard.execution(call.node_id)
        return (
            execution is not None
            and execution.execution_id == call.execution_id
            and execution.state == _RETRIED[type(call)]
        )

    async def _durable(self) -> None:
        """Wait until everything queued to the store so far is committed (no-op once the store closed)."""
        if self.store.committed_generation >= self.store.generation:
            return
        try:
            await self.store.flush()
        except RuntimeError as exc:  # the store is closing: what waits for it goes on all the same
            log.warning("%s", exc, extra={"node_id": self.node_id})

    # -- outcomes --------------------------------------------------------------------------------

    def _after_call(self, item: Outgoing, result: Any, now: float) -> None:
        """Feed a call's outcome back into its shard's machine (looked up again: it may be reloaded)."""
        shard = self._shard(item)
        if shard is None:
            return
        record = self._lookup(item.job_id)
        assert record is not None
        failed = isinstance(result, BaseException)
        error = (str(result) or type(result).__name__) if failed else ""
        call = item.call
        match call:
            case AskForBid(node_id=node_id):
                if failed:
                    transition = shard.on_ask_failed(node_id, error, now)
                elif result.accepted and result.execution_id:
                    transition = shard.on_bid(node_id, result.execution_id, now, self._rng)
                elif result.accepted:
                    transition = shard.on_ask_failed(node_id, "the node bid without an execution ID", now)
                else:
                    transition = shard.on_bid_declined(node_id, result.reason, now, busy=result.busy)
                # A refusal or failure leaves a bid short: ask another live node.
                self._refill(shard, transition, now)
            case Verify():
                transition = shard.on_verify_failed(error, now) if failed else shard.on_verified(result, now)
            case NotifyBidAccepted() if failed:
                transition = shard.on_bid_accept_failed(call.node_id, call.execution_id, error, now)
                self._refill(shard, transition, now)
            case NotifyResultAccepted() if failed:
                transition = shard.on_result_accept_failed(call.node_id, call.execution_id, error, now)
                self._refill(shard, transition, now)
            case (
                NotifyBidAccepted()
                | NotifyResultAccepted()
                | NotifyBidRejected()
                | NotifyResultRejected()
                | CancelExecution()
            ):
                if failed:
                    log.warning(
                        "%s to node %s failed: %s",
                        type(call).__name__,
                        call.node_id,
                        error,
                        extra={"job_id": item.job_id, "node_id": self.node_id},
                    )
                return
            case _:
                assert_never(call)
        self._apply(record, shard, transition)


def _batch_key(call: Call) -> BatchKey:
    match call:
        case Verify():
            return ("verify", "")
        case AskForBid():
            return ("ask", call.node_id)
        case NotifyBidAccepted() | NotifyBidRejected() | NotifyResultAccepted() | NotifyResultRejected():
            return ("update", call.node_id)
        case CancelExecution():
            return ("update", call.node_id)
        case _:
            assert_never(call)
