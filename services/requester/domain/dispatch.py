"""Effect dispatch: the calls a shard's transition asks for (AskForBid, BidAccepted, Verify, ...) run
as tasks through the ports, each only once the state that asked for it is committed (write-ahead), with
retries while a node restarts or the verifier is away; their outcomes come back as new inputs of the
shard's machine (`_after_call`).

A mixin of `Requester` (`lifecycle.py`): the state it uses is set by the orchestrator, declared below.
"""

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bacalhau_grpc.common.errors import (
    BacalhauError,
    DeadlineExceededError,
    NotFoundError,
    UnavailableError,
)
from bacalhau_grpc.requester.domain import shard_fsm as fsm_mod
from bacalhau_grpc.requester.domain.nodes import NodeRegistry
from bacalhau_grpc.requester.domain.ports import ComputePort, JobStore, VerifierPort
from bacalhau_grpc.requester.domain.records import JobRecord
from bacalhau_grpc.requester.domain.shard_fsm import Phase, ShardFSM, Transition

# The lifecycle's logger: these records kept their logger name when this part moved out of lifecycle.py.
log = logging.getLogger("bacalhau_grpc.requester.domain.lifecycle")

SpanFactory = Callable[..., contextlib.AbstractContextManager[Any]]


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
    _stopping: bool
    _draining: bool

    if TYPE_CHECKING:

        def _lookup(self, job_id: str) -> JobRecord | None: ...  # queries.py

        def _refill(self, shard: ShardFSM, transition: Transition, now: float) -> None: ...  # liveness.py

        def _apply(
            self, record: JobRecord, shard: ShardFSM, transition: Transition
        ) -> None: ...  # lifecycle.py

    def _dispatch(self, job_id: str, shard_index: int, action: Any) -> None:
        if self._stopping:
            log.warning(
                "requester stopping: %s not sent",
                type(action).__name__,
                extra={"job_id": job_id, "node_id": self.node_id},
            )
            return
        task = asyncio.get_running_loop().create_task(self._perform(job_id, shard_index, action))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _address(self, node_id: str) -> str:
        address = self.nodes.address(node_id)
        if not address:
            raise UnavailableError(f"node {node_id} is not registered with this requester")
        return address

    async def _perform(self, job_id: str, shard_index: int, action: Any) -> None:
        node_id = getattr(action, "node_id", "")
        name = type(action).__name__
        try:
            # Write-ahead: the state that asked for this call (and its events) is committed before the
            # call can have an effect elsewhere, so a restart re-derives exactly the calls that may have
            # been lost (`ShardFSM.resume`) and never loses an event whose effect was seen.
            await self._durable()
            with self._span(
                f"requester.{name}", job_id=job_id, node_id=self.node_id, shard_index=shard_index
            ):
                outcome = await self._call_retrying(job_id, shard_index, action)
        except asyncio.CancelledError:
            raise
        except _Abandoned:
            return
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            if not isinstance(exc, BacalhauError):
                log.exception(
                    "%s to %s failed", name, node_id, extra={"job_id": job_id, "node_id": self.node_id}
                )
            outcome = ("failed", error)
        self._after_call(job_id, shard_index, action, outcome)

    async def _call_retrying(self, job_id: str, shard_index: int, action: Any) -> tuple[str, Any]:
        """`_call`; telling a node its bid or its results were accepted is retried with back-off while the
        node cannot be reached but is still taken for alive (it may be restarting: it comes back with its
        node ID, perhaps at a new address) and its execution still waits for the call. Without this a
        compute node's restart would fail the executions it was being told about."""
        delay = self.retry_backoff_start
        while True:
            try:
                return await self._call(job_id, shard_index, action)
            except (UnavailableError, DeadlineExceededError) as exc:
                if type(action) not in _RETRIED or not self._still_waits(job_id, shard_index, action):
                    raise
                if self._draining:  # stopping: the next start tells the node again (`ShardFSM.resume`)
                    raise _Abandoned from exc
                log.info(
                    "%s to node %s failed (%s); retrying in %.1fs",
                    type(action).__name__,
                    action.node_id,
                    exc,
                    delay,
                    extra={"job_id": job_id, "node_id": self.node_id},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_backoff_max)

    def _still_waits(self, job_id: str, shard_index: int, action: Any) -> bool:
        """The node is taken for alive and its execution is still in the state that asked for `action`."""
        record = self._lookup(job_id)
        if record is None or not self.nodes.is_live(action.node_id, self._clock()):
            return False
        execution = record.shards[shard_index].execution(action.node_id)
        wanted = _RETRIED[type(action)]
        return (
            execution is not None
            and execution.execution_id == action.execution_id
            and execution.state == wanted
        )

    async def _durable(self) -> None:
        """Wait until everything queued to the store so far is committed (no-op once the store closed)."""
        if self.store.committed_generation >= self.store.generation:
            return
        try:
            await self.store.flush()
        except RuntimeError as exc:  # the store is closing: the call goes out all the same
            log.warning("%s", exc, extra={"node_id": self.node_id})

    async def _verify(self, job_id: str, shard_index: int, action: fsm_mod.Verify) -> list[Any]:
        """Verify, retried with back-off while the verifier cannot be reached (it may be restarting) and
        the shard still waits for the verdicts within its execution deadline."""
        delay = self.retry_backoff_start
        while True:
            record = self._lookup(job_id)
            if record is None:
                raise NotFoundError(f"job {job_id} not found")
            try:
                return await self.verifier.verify(record.job, shard_index, action.proposals)
            except (UnavailableError, DeadlineExceededError) as exc:
                shard = record.shards[shard_index]
                deadline = shard.execution_deadline
                if self._draining and shard.phase == Phase.VERIFYING_RESULTS:
                    # Stopping: leave the shard verifying; the next start sends Verify again.
                    raise _Abandoned from exc
                if shard.phase != Phase.VERIFYING_RESULTS:
                    raise
                if deadline is not None and self._clock() + delay >= deadline:
                    raise
                log.info(
                    "verifier unreachable (%s); retrying in %.1fs",
                    exc,
                    delay,
                    extra={"job_id": job_id, "node_id": self.node_id},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_backoff_max)

    async def _call(self, job_id: str, shard_index: int, action: Any) -> tuple[str, Any]:
        if isinstance(action, fsm_mod.Verify):
            return ("ok", await self._verify(job_id, shard_index, action))
        address = self._address(action.node_id)
        if isinstance(action, fsm_mod.AskForBid):
            record = self._lookup(job_id)
            if record is None:
                raise NotFoundError(f"job {job_id} not found")
            return ("ok", await self.compute.ask_for_bid(address, record.job, shard_index))
        if isinstance(action, fsm_mod.NotifyBidAccepted):
            await self.compute.bid_accepted(address, action.execution_id)
        elif isinstance(action, fsm_mod.NotifyBidRejected):
            await self.compute.bid_rejected(address, action.execution_id, action.reason)
        elif isinstance(action, fsm_mod.NotifyResultAccepted):
            await self.compute.result_accepted(address, action.execution_id)
        elif isinstance(action, fsm_mod.NotifyResultRejected):
            await self.compute.result_rejected(address, action.execution_id, action.reason)
        elif isinstance(action, fsm_mod.CancelExecution):
            await self.compute.cancel_execution(address, action.execution_id, action.reason)
        else:  # pragma: no cover - every action kind is listed above
            raise TypeError(f"unknown action {action!r}")
        return ("ok", None)

    def _after_call(self, job_id: str, shard_index: int, action: Any, outcome: tuple[str, Any]) -> None:
        """Feed a call's outcome back into its shard's machine (looked up again: it may be reloaded)."""
        kind, value = outcome
        record = self._lookup(job_id)
        if record is None:
            return
        shard = record.shards[shard_index]
        now = self._clock()
        node_id = getattr(action, "node_id", "")
        failed = kind == "failed"
        if isinstance(action, fsm_mod.AskForBid):
            if failed:
                transition = shard.on_ask_failed(node_id, value, now)
            elif value.accepted and value.execution_id:
                transition = shard.on_bid(node_id, value.execution_id, now, self._rng)
            elif value.accepted:
                transition = shard.on_ask_failed(node_id, "the node bid without an execution ID", now)
            else:
                transition = shard.on_bid_declined(node_id, value.reason, now, busy=value.busy)
            # A refusal or failure leaves a bid short: ask another live node.
            self._refill(shard, transition, now)
        elif isinstance(action, fsm_mod.Verify):
            transition = shard.on_verify_failed(value, now) if failed else shard.on_verified(value, now)
        elif failed and isinstance(action, fsm_mod.NotifyBidAccepted):
            transition = shard.on_bid_accept_failed(node_id, action.execution_id, value, now)
            self._refill(shard, transition, now)
        elif failed and isinstance(action, fsm_mod.NotifyResultAccepted):
            transition = shard.on_result_accept_failed(node_id, action.execution_id, value, now)
            self._refill(shard, transition, now)
        else:
            if failed:
                log.warning(
                    "%s to node %s failed: %s",
                    type(action).__name__,
                    node_id,
                    value,
                    extra={"job_id": job_id, "node_id": self.node_id},
                )
            return
        self._apply(record, shard, transition)


# Calls to a node retried while it is unreachable but alive, with the execution state that waits for each.
_RETRIED = {
    fsm_mod.NotifyBidAccepted: fsm_mod.ExecState.ACCEPTED,
    fsm_mod.NotifyResultAccepted: fsm_mod.ExecState.RESULT_ACCEPTED,
}


class _Abandoned(Exception):
    """A call given up because the requester stops: its shard keeps waiting and `resume` redoes it."""
