"""What the shard machine hands back: the effects it asks for, as a typed union, and the verifier's verdict
it takes in.

Every input of `ShardFSM` returns a `Transition`: the `Action`s the lifecycle performs in order (events to
record, calls to make), plus `invalid` (the request was refused in the shard's state; an InvalidRequest
event is then among the actions) or `denied` (the caller does not hold what it reported about).
"""

from dataclasses import dataclass, field
from typing import Any

from bacalhau_grpc.common.model import pb


@dataclass(frozen=True)
class RecordEvent:
    event: pb.JobEvent


@dataclass(frozen=True)
class RecordLocalEvent:
    event: pb.JobLocalEvent


@dataclass(frozen=True)
class AskForBid:
    node_id: str


@dataclass(frozen=True)
class NotifyBidAccepted:
    node_id: str
    execution_id: str


@dataclass(frozen=True)
class NotifyBidRejected:
    node_id: str
    execution_id: str
    reason: str


@dataclass(frozen=True)
class ProposalData:
    node_id: str
    execution_id: str
    proposal: bytes
    run_output: pb.RunCommandResult | None


@dataclass(frozen=True)
class Verify:
    proposals: tuple[ProposalData, ...]


@dataclass(frozen=True)
class NotifyResultAccepted:
    node_id: str
    execution_id: str


@dataclass(frozen=True)
class NotifyResultRejected:
    node_id: str
    execution_id: str
    reason: str


@dataclass(frozen=True)
class CancelExecution:
    node_id: str
    execution_id: str
    reason: str


Action = (
    RecordEvent
    | RecordLocalEvent
    | AskForBid
    | NotifyBidAccepted
    | NotifyBidRejected
    | Verify
    | NotifyResultAccepted
    | NotifyResultRejected
    | CancelExecution
)


@dataclass(frozen=True)
class Verdict:
    """The verifier's decision on one execution."""

    execution_id: str
    node_id: str
    accepted: bool
    reason: str = ""


@dataclass
class Transition:
    """What an input did: actions to perform in order; `invalid` when the request was refused (an
    InvalidRequest event is then among the actions); `denied` when the caller does not hold what it
    reported about (no action at all: a stranger's reports leave nothing behind)."""

    actions: list[Action] = field(default_factory=list)
    invalid: str | None = None
    denied: str | None = None

    def events(self) -> list[pb.JobEvent]:
        return [a.event for a in self.actions if isinstance(a, RecordEvent)]

    def of(self, kind: type) -> list[Any]:
        return [a for a in self.actions if isinstance(a, kind)]
