"""What compute nodes report back to the requester (OnRunComplete, OnPublishComplete, OnComputeFailure,
OnCancelComplete): each report is a new input of its shard's machine, answered only once it is committed.

A mixin of `Requester` (`lifecycle.py`): the state it uses is set by the orchestrator, declared below.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING

from bacalhau_grpc.common.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.node_ids import check_node_id
from bacalhau_grpc.requester.domain.dispatch import SpanFactory
from bacalhau_grpc.requester.domain.records import JobRecord
from bacalhau_grpc.requester.domain.shard_fsm import ShardFSM, Transition


class NodeReports:
    """The node protocol's callbacks (mixed into `Requester`)."""

    # Set by `Requester.__init__`.
    node_id: str
    _clock: Callable[[], float]
    _span: SpanFactory

    if TYPE_CHECKING:

        def _lookup(self, job_id: str) -> JobRecord | None: ...  # queries.py

        def _refill(self, shard: ShardFSM, transition: Transition, now: float) -> None: ...  # liveness.py

        async def _durable(self) -> None: ...  # dispatch.py

        def _apply(
            self, record: JobRecord, shard: ShardFSM, transition: Transition
        ) -> None: ...  # lifecycle.py

    async def on_run_complete(
        self,
        *,
        job_id: str,
        shard_index: int,
        node_id: str,
        execution_id: str,
        verification_proposal: bytes = b"",
        run_output: pb.RunCommandResult | None = None,
        status: str = "",
    ) -> None:
        record, shard = self._callback_target(job_id, shard_index, node_id, "results")
        with self._span(
            "requester.OnRunComplete", job_id=job_id, node_id=self.node_id, shard_index=shard_index
        ):
            transition = shard.on_run_complete(
                node_id, execution_id, verification_proposal, run_output, self._clock(), status=status
            )
            await self._finish_durably(record, shard, transition)

    async def on_publish_complete(
        self,
        *,
        job_id: str,
        shard_index: int,
        node_id: str,
        execution_id: str,
        published_result: pb.StorageSpec | None = None,
        status: str = "",
    ) -> None:
        record, shard = self._callback_target(job_id, shard_index, node_id, "published results")
        with self._span(
            "requester.OnPublishComplete", job_id=job_id, node_id=self.node_id, shard_index=shard_index
        ):
            transition = shard.on_published(
                node_id, execution_id, published_result, self._clock(), status=status
            )
            await self._finish_durably(record, shard, transition)

    async def on_compute_failure(
        self, *, job_id: str, shard_index: int, node_id: str, execution_id: str, error: str
    ) -> None:
        record, shard = self._callback_target(job_id, shard_index, node_id, "a compute error")
        with self._span(
            "requester.OnComputeFailure", job_id=job_id, node_id=self.node_id, shard_index=shard_index
        ):
            now = self._clock()
            transition = shard.on_compute_failure(
                node_id, execution_id, error or "the node reported a failure without a message", now
            )
            self._refill(shard, transition, now)
            await self._finish_durably(record, shard, transition)

    async def on_cancel_complete(
        self, *, job_id: str, shard_index: int, node_id: str, execution_id: str
    ) -> None:
        record, shard = self._callback_target(job_id, shard_index, node_id, "a cancellation report")
        now = self._clock()
        transition = shard.on_cancel_complete(node_id, execution_id, now)
        self._refill(shard, transition, now)
        await self._finish_durably(record, shard, transition)

    def _callback_target(
        self, job_id: str, shard_index: int, node_id: str, what: str
    ) -> tuple[JobRecord, ShardFSM]:
        if not job_id:
            raise InvalidArgumentError("a job ID is required", field="job_id")
        check_node_id(node_id, field="node_id")
        record = self._lookup(job_id)
        if record is None:
            raise NotFoundError(f"job {job_id} not found")
        if not 0 <= shard_index < len(record.shards):
            # Nobody holds an execution of a shard that does not exist: refused, nothing recorded.
            raise PermissionDeniedError(
                f"{what} received for shard {job_id}:{shard_index}, which does not exist"
            )
        return record, record.shards[shard_index]

    async def _finish_durably(self, record: JobRecord, shard: ShardFSM, transition: Transition) -> None:
        """Apply a node's report and answer only once it is committed: a node that heard OK never has
        to report again, and one that did not (the requester crashed) reports again (or is asked to by
        the calls `resume` repeats) and finds the same report taken once. A report from a node that does
        not hold the execution changes nothing and is refused (PERMISSION_DENIED)."""
        if transition.denied is not None:
            raise PermissionDeniedError(transition.denied)
        self._apply(record, shard, transition)
        await self._durable()
        if transition.invalid is not None:
            raise FailedPreconditionError(transition.invalid)
