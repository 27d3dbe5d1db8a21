"""A compute node's executions and their state machine (Bacalhau v0.3's compute `store` package).

One execution is one node's attempt at one shard of one job: it is created when the node bids and
ends Completed, Failed or Cancelled:

    Created(1) -> BidAccepted(2) -> Running(3) -> WaitingVerification(4) -> ResultAccepted(5)
    -> Publishing(6) -> Completed(7)           and, from any active state, -> Failed(8) | Cancelled(9)

Every update is a compare-and-set: the caller names the state(s) it expects the execution to be in
(and optionally its version); a mismatch raises `FailedPreconditionError` and changes nothing. Every
update bumps the version and appends a `Transition` to the execution's history.
"""

import enum
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bacalhau_grpc.common.errors import FailedPreconditionError, InvalidArgumentError
from bacalhau_grpc.common.model import jobs, pb


class ExecutionState(enum.IntEnum):
    """The states of an execution on a compute node, numbered as Bacalhau v0.3's `ExecutionState` iota."""

    CREATED = 1
    BID_ACCEPTED = 2
    RUNNING = 3
    WAITING_VERIFICATION = 4
    RESULT_ACCEPTED = 5
    PUBLISHING = 6
    COMPLETED = 7
    FAILED = 8
    CANCELLED = 9

    @property
    def label(self) -> str:
        """Go's text form: `Created`, `BidAccepted`, `WaitingVerification`, ..."""
        return _LABELS[self]

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def is_active(self) -> bool:
        return self not in TERMINAL_STATES


_LABELS = {
    ExecutionState.CREATED: "Created",
    ExecutionState.BID_ACCEPTED: "BidAccepted",
    ExecutionState.RUNNING: "Running",
    ExecutionState.WAITING_VERIFICATION: "WaitingVerification",
    ExecutionState.RESULT_ACCEPTED: "ResultAccepted",
    ExecutionState.PUBLISHING: "Publishing",
    ExecutionState.COMPLETED: "Completed",
    ExecutionState.FAILED: "Failed",
    ExecutionState.CANCELLED: "Cancelled",
}

S = ExecutionState
TERMINAL_STATES = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})
ACTIVE_STATES = frozenset(set(S) - TERMINAL_STATES)

# The forward path; Failed and Cancelled are reachable from every active state.
_NEXT = {
    S.CREATED: S.BID_ACCEPTED,
    S.BID_ACCEPTED: S.RUNNING,
    S.RUNNING: S.WAITING_VERIFICATION,
    S.WAITING_VERIFICATION: S.RESULT_ACCEPTED,
    S.RESULT_ACCEPTED: S.PUBLISHING,
    S.PUBLISHING: S.COMPLETED,
}
ALLOWED_TRANSITIONS: dict[ExecutionState, frozenset[ExecutionState]] = {
    state: frozenset({_NEXT[state], S.FAILED, S.CANCELLED}) if state in _NEXT else frozenset() for state in S
}

# The fields `transition` may change besides the state (everything that is not an identity).
UPDATABLE_FIELDS = frozenset({"run_output", "proposal", "published_result", "status"})


def new_execution_id() -> str:
    """`e-<uuid4>`, as v0.3."""
    return f"e-{uuid.uuid4()}"


@dataclass(frozen=True, slots=True)
class Transition:
    """One entry of an execution's history: the update that produced `version`."""

    version: int
    # None for the creation (the first entry).
    from_state: ExecutionState | None
    to_state: ExecutionState
    at: float
    reason: str = ""


@dataclass(slots=True, eq=False)
class Execution:
    """One node's attempt at one shard. Mutated only through `transition` (or the store's `update`)."""

    id: str
    job: pb.Job
    shard_index: int
    # What the execution holds of the node's capacity while it runs.
    usage: pb.ResourceUsageData
    state: ExecutionState = ExecutionState.CREATED
    # What the run produced (the summary sent to the requester), once it ran.
    run_output: pb.RunCommandResult | None = None
    # The verification proposal sent with the results (empty for the noop verifier).
    proposal: bytes = b""
    # Where the results were published, once they were.
    published_result: pb.StorageSpec | None = None
    # Why the execution is in its state (the error of a failure, the reason of a cancellation).
    status: str = ""
    version: int = 1
    created_at: float = 0.0
    updated_at: float = 0.0
    history: list[Transition] = field(default_factory=list)

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def requester_node_id(self) -> str:
        return self.job.requester_node_id

    @property
    def shard_id(self) -> str:
        return jobs.get_shard_id(self.job.id, self.shard_index)

    @property
    def is_active(self) -> bool:
        return self.state not in TERMINAL_STATES

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def describe(self) -> str:
        return f"execution {self.id} (shard {self.shard_id}) is {self.state.label}"


def new_execution(job: pb.Job, shard_index: int, usage: pb.ResourceUsageData) -> Execution:
    """A fresh execution in state Created; its history starts with the creation."""
    if not job.id:
        raise InvalidArgumentError("the job has no ID", field="job.id")
    if shard_index < 0:
        raise InvalidArgumentError(f"{shard_index} is negative", field="shard_index")
    now = time.time()
    execution = Execution(
        id=new_execution_id(),
        job=job,
        shard_index=shard_index,
        usage=usage,
        created_at=now,
        updated_at=now,
    )
    execution.history.append(Transition(1, None, S.CREATED, now, "bid"))
    return execution


def _states(expected: ExecutionState | Iterable[ExecutionState]) -> frozenset[ExecutionState]:
    return frozenset({expected}) if isinstance(expected, ExecutionState) else frozenset(expected)


def transition(
    execution: Execution,
    to: ExecutionState,
    *,
    expected: ExecutionState | Iterable[ExecutionState],
    expected_version: int | None = None,
    reason: str = "",
    **changes: Any,
) -> Transition:
    """Compare-and-set: moves `execution` to `to` if it is in one of the `expected` states (and at
    `expected_version`, when given) and the move is allowed; applies `changes`; appends the history.

    Raises `FailedPreconditionError` (and changes nothing) otherwise.
    """
    unknown = set(changes) - UPDATABLE_FIELDS
    if unknown:
        raise TypeError(f"execution fields that cannot be updated: {sorted(unknown)}")
    allowed_from = _states(expected)
    if execution.state not in allowed_from:
        wanted = " or ".join(sorted(s.label for s in allowed_from))
        raise FailedPreconditionError(f"{execution.describe()}, expected {wanted}")
    if expected_version is not None and execution.version != expected_version:
        raise FailedPreconditionError(
            f"execution {execution.id} is at version {execution.version}, expected {expected_version}"
        )
    if to not in ALLOWED_TRANSITIONS[execution.state]:
        raise FailedPreconditionError(
            f"{execution.describe()}: it cannot move from {execution.state.label} to {to.label}"
        )
    now = time.time()
    record = Transition(execution.version + 1, execution.state, to, now, reason)
    for name, value in changes.items():
        setattr(execution, name, value)
    if reason and to in (S.FAILED, S.CANCELLED) and "status" not in changes:
        execution.status = reason
    execution.state = to
    execution.version = record.version
    execution.updated_at = now
    execution.history.append(record)
    return record


class ExecutionStore(Protocol):
    """Where a node keeps its executions (implemented over SQLite in `compute.store`).

    `get` and `update` raise `NotFoundError` for an unknown ID; `update` is `transition` on the stored
    execution, recorded durably (batched: `flush` waits until everything so far is written).
    """

    def create(self, execution: Execution) -> None: ...

    def get(self, execution_id: str) -> Execution: ...

    def update(
        self,
        execution_id: str,
        to: ExecutionState,
        *,
        expected: ExecutionState | Iterable[ExecutionState],
        expected_version: int | None = None,
        reason: str = "",
        **changes: Any,
    ) -> Execution: ...

    def active(self) -> list[Execution]: ...

    def counts_by_state(self) -> dict[ExecutionState, int]: ...

    async def flush(self) -> None: ...
