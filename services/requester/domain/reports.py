"""What compute nodes report back to the requester (run complete, published, compute failure, cancel
complete): each report is a new input of its shard's machine, answered only once it is committed.

A batch of reports (ReportExecutions) is taken in one synchronous step, each in order, and answered after
one wait for the store: one commit for the whole batch, no task per report.

A mixin of `Requester` (`lifecycle.py`): the state it uses is set by the orchestrator, declared below.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bacalhau_grpc.common.errors import (
    BacalhauError,
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


@dataclass(frozen=True)
class RunComplete:
    """The node ran its execution and proposes results (OnRunComplete)."""

    job_id: str
    shard_index: int
    node_id: str
    execution_id: str
    verification_proposal: bytes = b""
    run_output: pb.RunCommandResult | None = None
    status: str = ""


@dataclass(frozen=True)
class PublishComplete:
    """The node published its accepted results (OnPublishComplete)."""

    job_id: str
    shard_index: int
    node_id: str
    execution_id: str
    published_result: pb.StorageSpec | None = None
    status: str = ""


@dataclass(frozen=True)
class ComputeFailure:
    """The node could not run or publish its execution (OnComputeFailure)."""

    job_id: str
    shard_index: int
    node_id: str
    execution_id: str
    error: str = ""


@dataclass(frozen=True)
class CancelComplete:
    """The node stopped an execution it was told to cancel (OnCancelComplete)."""

    job_id: str
    shard_index: int
    node_id: str
    execution_id: str


Report = RunComplete | PublishComplete | ComputeFailure | CancelComplete

# What each report is about, for the errors that name it.
_WHAT = {
    RunComplete: "results",
    PublishComplete: "published results",
    ComputeFailure: "a compute error",
    CancelComplete: "a cancellation report",
}


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

    async def report(self, report: Report) -> None:
        """Take one report; answer once it is committed (raises what `reports` gives for it)."""
        (error,) = await self.reports([report])
        if error is not None:
            raise error

    async def reports(self, reports: Sequence[Report]) -> list[Exception | None]:
        """Take the reports in order in one step, wait once until all of them are committed, and give one
        result per report: None when it was taken, else its error. A node that heard OK never has to
        report again, and one that did not (the requester crashed) reports again (or is asked to by the
        calls `resume` repeats) and finds the same report taken once. A report from a node that does not
        hold the execution changes nothing and is refused (PERMISSION_DENIED); one that does not fit the
        execution's state is recorded as an InvalidRequest event and refused (FAILED_PRECONDITION). An
        unexpected error is that report's result too: the others are taken all the same."""
        results: list[Exception | None] = []
        for report in reports:
            try:
                results.append(self._take(report))
            except Exception as exc:
                results.append(exc)
        await self._durable()
        return results

    def _take(self, report: Report) -> BacalhauError | None:
        """Apply one report to its shard: None, or the error to answer once it is committed."""
        record, shard = self._callback_target(report)
        with self._span(
            f"requester.{_SPAN_NAMES[type(report)]}",
            job_id=report.job_id,
            node_id=self.node_id,
            shard_index=report.shard_index,
        ):
            now = self._clock()
            match report:
                case RunComplete():
                    transition = shard.on_run_complete(
                        report.node_id,
                        report.execution_id,
                        report.verification_proposal,
                        report.run_output,
                        now,
                        status=report.status,
                    )
                case PublishComplete():
                    transition = shard.on_published(
                        report.node_id,
                        report.execution_id,
                        report.published_result,
                        now,
                        status=report.status,
                    )
                case ComputeFailure():
                    error = report.error or "the node reported a failure without a message"
                    transition = shard.on_compute_failure(report.node_id, report.execution_id, error, now)
                    self._refill(shard, transition, now)
                case CancelComplete():
                    transition = shard.on_cancel_complete(report.node_id, report.execution_id, now)
                    self._refill(shard, transition, now)
            if transition.denied is not None:
                raise PermissionDeniedError(transition.denied)
            self._apply(record, shard, transition)
        return None if transition.invalid is None else FailedPreconditionError(transition.invalid)

    # One report at a time, by its fields (as the single calls of the node protocol carry them).

    async def on_run_complete(self, **fields: Any) -> None:
        await self.report(RunComplete(**fields))

    async def on_publish_complete(self, **fields: Any) -> None:
        await self.report(PublishComplete(**fields))

    async def on_compute_failure(self, **fields: Any) -> None:
        await self.report(ComputeFailure(**fields))

    async def on_cancel_complete(self, **fields: Any) -> None:
        await self.report(CancelComplete(**fields))

    def _callback_target(self, report: Report) -> tuple[JobRecord, ShardFSM]:
        job_id, shard_index = report.job_id, report.shard_index
        if not job_id:
            raise InvalidArgumentError("a job ID is required", field="job_id")
        check_node_id(report.node_id, field="node_id")
        record = self._lookup(job_id)
        if record is None:
            raise NotFoundError(f"job {job_id} not found")
        if not 0 <= shard_index < len(record.shards):
            # Nobody holds an execution of a shard that does not exist: refused, nothing recorded.
            raise PermissionDeniedError(
                f"{_WHAT[type(report)]} received for shard {job_id}:{shard_index}, which does not exist"
            )
        return record, record.shards[shard_index]


# The span of each report (named after the single call that carries it).
_SPAN_NAMES = {
    RunComplete: "OnRunComplete",
    PublishComplete: "OnPublishComplete",
    ComputeFailure: "OnComputeFailure",
    CancelComplete: "OnCancelComplete",
}
