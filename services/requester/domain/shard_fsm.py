"""The requester's state machine for one shard of a job: Bacalhau v0.3's shard lifecycle, from bidding to
publication, with our fixes (drawn in "Job lifecycle and state machines" in docs/architecture.md).

Pure: every input is a method taking the current time (`time.time()` seconds) and returning a
`Transition`, the list of actions the lifecycle must perform (events to record, calls to make) and,
for a request that is not valid in the shard's state, the reason to refuse it. Nothing here does I/O,
sleeps or reads a clock, so it is tested by driving it with explicit times.

Phases: EnqueuingBids -> (SelectingBids) -> AcceptingBids -> WaitingForResults -> VerifyingResults ->
WaitingToPublish -> Completed; Error and Cancelled (the client cancelled the job) end it early. A shard
that ends early ends every execution it still holds: a pending bid is rejected, a running, proposed or
publishing one gets an event on its node's row (Error with the reason, or BidCancelled) and a
CancelExecution call; a report about a released execution that arrives afterwards changes nothing.

A node lost while the shard runs (it reported a failure, stopped heartbeating, or could not be told its
bid was accepted) is replaced: the shard goes back to AcceptingBids with its slot open, the lifecycle
asks another live node that was not asked yet (`refill`), and the execution deadline set on the first
entry to WaitingForResults still holds. With no such node left the shard ends in Error.

Deadlines are wall-clock timestamps, so a reloaded machine keeps them: the negotiation deadline
(creation + negotiation timeout) covers the bidding phases; the execution deadline (entry to
WaitingForResults + Spec.Timeout) covers running, verifying and publishing. `next_deadline()` tells
the lifecycle when to call `on_timeout`.

The whole machine is plain data: `to_dict()` / `from_dict()` persist and reload it.
"""

import base64
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain import events as ev

E = pb.JobEventType
L = pb.JobLocalEventType
FORMAT_VERSION = 1


class Phase(StrEnum):
    ENQUEUING_BIDS = "EnqueuingBids"
    SELECTING_BIDS = "SelectingBids"
    ACCEPTING_BIDS = "AcceptingBids"
    WAITING_FOR_RESULTS = "WaitingForResults"
    VERIFYING_RESULTS = "VerifyingResults"
    WAITING_TO_PUBLISH = "WaitingToPublish"
    COMPLETED = "Completed"
    ERROR = "Error"
    CANCELLED = "Cancelled"


BIDDING_PHASES = frozenset({Phase.ENQUEUING_BIDS, Phase.SELECTING_BIDS, Phase.ACCEPTING_BIDS})
EXECUTION_PHASES = frozenset({Phase.WAITING_FOR_RESULTS, Phase.VERIFYING_RESULTS, Phase.WAITING_TO_PUBLISH})
TERMINAL_PHASES = frozenset({Phase.COMPLETED, Phase.ERROR, Phase.CANCELLED})


class ExecState(StrEnum):
    """Where one node's execution of the shard stands, as far as the requester knows."""

    BID = "Bid"  # the node bid; not decided yet
    ACCEPTED = "Accepted"  # bid accepted: the node runs it
    REJECTED = "Rejected"  # bid rejected
    PROPOSED = "Proposed"  # the node proposed results
    RESULT_ACCEPTED = "ResultAccepted"  # verified: the node publishes
    RESULT_REJECTED = "ResultRejected"
    PUBLISHED = "Published"
    FAILED = "Failed"  # the node could not run or publish it (or could not be told to)
    CANCELLED = "Cancelled"  # the requester cancelled it


# Executions whose results the requester has already received.
PROPOSED_OR_LATER = frozenset(
    {ExecState.PROPOSED, ExecState.RESULT_ACCEPTED, ExecState.RESULT_REJECTED, ExecState.PUBLISHED}
)
# Executions that still hold a slot of the shard (bid accepted, not failed or cancelled).
RUNNING = frozenset({ExecState.ACCEPTED, ExecState.PROPOSED})
# Executions the node still works on, which a failed shard must cancel.
ACTIVE = frozenset({ExecState.ACCEPTED, ExecState.PROPOSED, ExecState.RESULT_ACCEPTED})


@dataclass
class Execution:
    node_id: str
    execution_id: str
    state: ExecState
    bid_at: float
    proposal: bytes = b""
    run_output: pb.RunCommandResult | None = None
    reason: str = ""


# ---------------------------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------


@dataclass
class ShardFSM:
    job_id: str
    shard_index: int
    requester_node_id: str
    client_id: str
    concurrency: int
    min_bids: int
    # Spec.Timeout, seconds (already defaulted at submit).
    timeout: float
    created_at: float
    negotiation_deadline: float
    phase: Phase = Phase.ENQUEUING_BIDS
    status: str = ""
    execution_deadline: float | None = None
    # Nodes asked for a bid, in order; each node is asked once per shard (a busy one once more per
    # heartbeat that follows its refusal, see `busy`).
    asked: list[str] = field(default_factory=list)
    # Asked nodes that refused to bid or could not be asked.
    declined: list[str] = field(default_factory=list)
    # Nodes that refused only for want of free capacity (AskForBidResponse.busy): taken off `asked` and
    # left out of `offer` until `offer_again` after their next heartbeat.
    busy: list[str] = field(default_factory=list)
    # One execution per node that bid, in bid order.
    executions: dict[str, Execution] = field(default_factory=dict)
    verified: bool = False
    # Nodes whose execution was lost while the shard ran, in order (each is replaced, never asked again).
    replaced: list[str] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        *,
        job_id: str,
        shard_index: int,
        requester_node_id: str,
        client_id: str,
        deal: pb.Deal,
        timeout: float,
        negotiation_timeout: float,
        now: float,
    ) -> "ShardFSM":
        return cls(
            job_id=job_id,
            shard_index=shard_index,
            requester_node_id=requester_node_id,
            client_id=client_id,
            concurrency=max(int(deal.concurrency), 1),
            min_bids=max(int(deal.min_bids), 0),
            timeout=timeout,
            created_at=now,
            negotiation_deadline=now + negotiation_timeout,
        )

    # -- views ----------------------------------------------------------------------------------

    @property
    def shard_id(self) -> str:
        return f"{self.job_id}:{self.shard_index}"

    @property
    def is_terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def is_bidding(self) -> bool:
        return self.phase in BIDDING_PHASES

    def _in(self, *states: ExecState) -> list[Execution]:
        return [e for e in self.executions.values() if e.state in states]

    @property
    def bids(self) -> list[Execution]:
        """Bids received and not decided yet."""
        return self._in(ExecState.BID)

    @property
    def accepted(self) -> list[Execution]:
        """Executions holding a slot: accepted and not failed, cancelled or finished with."""
        return self._in(*RUNNING)

    @property
    def proposals(self) -> list[Execution]:
        return self._in(ExecState.PROPOSED)

    @property
    def published(self) -> list[Execution]:
        return self._in(ExecState.PUBLISHED)

    def execution(self, node_id: str) -> Execution | None:
        return self.executions.get(node_id)

    @property
    def is_replacing(self) -> bool:
        """Taking bids again to replace a lost execution (the execution deadline is already running)."""
        return self.phase in BIDDING_PHASES and self.execution_deadline is not None

    def next_deadline(self) -> float | None:
        """When `on_timeout` must be called next; None once the shard has ended."""
        if self.phase in BIDDING_PHASES:
            # A replacement is bounded by the job's timeout, not by the (long past) negotiation deadline.
            return self.execution_deadline if self.is_replacing else self.negotiation_deadline
        if self.phase in EXECUTION_PHASES:
            return self.execution_deadline
        return None

    # -- event helpers ---------------------------------------------------------------------------

    def _event(
        self, name: int, now: float, *, source: str = "", target: str = "", status: str = ""
    ) -> pb.JobEvent:
        return ev.new_event(
            name,
            job_id=self.job_id,
            now=now,
            shard_index=self.shard_index,
            client_id=self.client_id,
            source_node_id=source,
            target_node_id=target,
            status=status,
        )

    def _local(self, name: int, target: str = "") -> RecordLocalEvent:
        return RecordLocalEvent(
            ev.new_local_event(name, job_id=self.job_id, shard_index=self.shard_index, target_node_id=target)
        )

    def _invalid(self, node_id: str, message: str, now: float) -> Transition:
        event = self._event(
            E.JOB_EVENT_TYPE_INVALID_REQUEST,
            now,
            source=self.requester_node_id,
            target=node_id,
            status=message,
        )
        return Transition([RecordEvent(event)], invalid=message)

    # -- bidding ---------------------------------------------------------------------------------

    def wanted_bids(self) -> int:
        """How many more nodes to ask: enough that the answers still awaited, the bids not decided yet
        and the accepted executions reach max(MinBids, Concurrency) before selection, Concurrency after.
        Asking only that many (not every node, as v0.3's broadcast did) keeps a job's RPCs few; a node
        that refuses is replaced by asking another."""
        if self.phase not in BIDDING_PHASES:
            return 0
        awaited = [n for n in self.asked if n not in self.executions and n not in self.declined]
        target = (
            max(self.min_bids, self.concurrency) if self.phase == Phase.ENQUEUING_BIDS else self.concurrency
        )
        return target - len(awaited) - len(self.bids) - len(self.accepted)

    def offer(self, node_ids: Iterable[str], rng: random.Random | None = None) -> Transition:
        """Ask as many of the given nodes as the shard still wants (see `wanted_bids`), picked at random;
        each node is asked once per shard."""
        out = Transition()
        wanted = self.wanted_bids()
        if wanted <= 0:
            return out
        candidates = [
            n for n in node_ids if n not in self.asked and n not in self.executions and n not in self.busy
        ]
        (rng or random).shuffle(candidates)
        for node_id in candidates[:wanted]:
            self.asked.append(node_id)
            out.actions.append(AskForBid(node_id))
        return out

    def refill(
        self, live_node_ids: Iterable[str], now: float, rng: random.Random | None = None
    ) -> Transition:
        """`offer` to the live nodes; while replacing a lost execution, end the shard in Error when no
        candidate is left (every live node was asked, no answer or bid is pending)."""
        out = self.offer(live_node_ids, rng)
        if not self.is_replacing or self.wanted_bids() <= 0:
            return out
        awaited = [n for n in self.asked if n not in self.executions and n not in self.declined]
        if awaited or self.bids or self.busy:
            return out
        lost = self.executions.get(self.replaced[-1]) if self.replaced else None
        if lost is None:  # pragma: no cover - replacing always follows a loss
            why = "no node left to replace a lost execution"
        else:
            why = f"no node left to replace node {lost.node_id} (failed: {lost.reason})"
        self._fail(why, now, out)
        return out

    def on_ask_failed(self, node_id: str, error: str, now: float) -> Transition:
        self.declined.append(node_id)
        event = self._event(
            E.JOB_EVENT_TYPE_BID_CANCELLED,
            now,
            source=node_id,
            target=node_id,
            status=f"could not ask for a bid: {error}",
        )
        return Transition([RecordEvent(event)])

    def on_bid_declined(self, node_id: str, reason: str, now: float, *, busy: bool = False) -> Transition:
        """The node refused to bid; a `busy` node (no free capacity now) is asked again after its next
        heartbeat (`offer_again`), any other is not asked again."""
        status = f"declined to bid: {reason or 'no reason given'}"
        if busy and node_id in self.asked:
            self.asked.remove(node_id)
            self.busy.append(node_id)
            status += " (busy: asked again once it has room)"
        else:
            self.declined.append(node_id)
        event = self._event(
            E.JOB_EVENT_TYPE_BID_CANCELLED, now, source=node_id, target=node_id, status=status
        )
        return Transition([RecordEvent(event)])

    def offer_again(self, node_id: str, rng: random.Random | None = None) -> Transition:
        """The node, busy when asked before, heartbeated: `offer` the shard to it again."""
        if node_id in self.busy:
            self.busy.remove(node_id)
        return self.offer([node_id], rng)

    def on_bid(self, node_id: str, execution_id: str, now: float, rng: random.Random) -> Transition:
        """A node bid on the shard with `execution_id`."""
        out = Transition()
        known = self.executions.get(node_id)
        if known is not None:
            if known.execution_id != execution_id:
                # A second bid from a node (v0.3 logs and ignores it): release the new execution quietly.
                out.actions.append(
                    NotifyBidRejected(node_id, execution_id, "the node has already bid on this shard")
                )
            return out
        execution = Execution(node_id, execution_id, ExecState.BID, bid_at=now)
        self.executions[node_id] = execution
        out.actions.append(RecordEvent(self._event(E.JOB_EVENT_TYPE_BID, now, source=node_id)))
        if self.phase == Phase.ENQUEUING_BIDS:
            if len(self.bids) >= max(self.min_bids, 1):
                self.phase = Phase.SELECTING_BIDS
                self._select(now, rng, out)
        elif self.phase == Phase.ACCEPTING_BIDS:
            self._accept(execution, now, out)
            self._after_accepting(now, out)
        elif self.phase in TERMINAL_PHASES:
            self._reject(execution, f"the shard has ended ({self.phase})", now, out)
        else:
            self._reject(execution, "the shard has all the nodes it needs", now, out)
        return out

    def _select(self, now: float, rng: random.Random, out: Transition) -> None:
        """SelectingBids: shuffle the bidders, accept as many as there are open slots, reject the rest."""
        pending = self.bids
        rng.shuffle(pending)
        open_slots = max(self.concurrency - len(self.accepted), 0)
        for execution in pending[:open_slots]:
            self._accept(execution, now, out)
        for execution in pending[open_slots:]:
            self._reject(execution, "the shard has all the nodes it needs", now, out)
        self._after_accepting(now, out)

    def _accept(self, execution: Execution, now: float, out: Transition) -> None:
        execution.state = ExecState.ACCEPTED
        out.actions.append(
            RecordEvent(
                self._event(
                    E.JOB_EVENT_TYPE_BID_ACCEPTED,
                    now,
                    source=self.requester_node_id,
                    target=execution.node_id,
                )
            )
        )
        out.actions.append(self._local(L.JOB_LOCAL_EVENT_TYPE_BID_ACCEPTED, execution.node_id))
        out.actions.append(NotifyBidAccepted(execution.node_id, execution.execution_id))

    def _reject(self, execution: Execution, reason: str, now: float, out: Transition) -> None:
        execution.state = ExecState.REJECTED
        execution.reason = reason
        out.actions.append(
            RecordEvent(
                self._event(
                    E.JOB_EVENT_TYPE_BID_REJECTED,
                    now,
                    source=self.requester_node_id,
                    target=execution.node_id,
                    status=reason,
                )
            )
        )
        out.actions.append(self._local(L.JOB_LOCAL_EVENT_TYPE_BID_REJECTED, execution.node_id))
        out.actions.append(NotifyBidRejected(execution.node_id, execution.execution_id, reason))

    def _after_accepting(self, now: float, out: Transition) -> None:
        if len(self.accepted) >= self.concurrency:
            self.phase = Phase.WAITING_FOR_RESULTS
            if self.execution_deadline is None:  # a replacement keeps the first deadline
                self.execution_deadline = now + self.timeout
            self._maybe_verify(out)
        else:
            self.phase = Phase.ACCEPTING_BIDS

    def on_bid_accept_failed(self, node_id: str, execution_id: str, error: str, now: float) -> Transition:
        """The node could not be told its bid was accepted: it will not run the shard."""
        execution = self.executions.get(node_id)
        if (
            execution is None
            or execution.execution_id != execution_id
            or execution.state != ExecState.ACCEPTED
        ):
            return Transition()
        execution.state = ExecState.FAILED
        execution.reason = f"could not tell the node its bid was accepted: {error}"
        out = Transition(
            [
                RecordEvent(
                    self._event(
                        E.JOB_EVENT_TYPE_BID_CANCELLED,
                        now,
                        source=self.requester_node_id,
                        target=node_id,
                        status=execution.reason,
                    )
                )
            ]
        )
        self._lost_execution(execution, now, out)
        return out

    # -- results ---------------------------------------------------------------------------------

    def _check_execution(
        self, node_id: str, execution_id: str, what: str, now: float
    ) -> Execution | Transition:
        """The node's execution the report is about; a refusal (`denied`, nothing recorded) when the node
        holds no such execution of this shard."""
        execution = self.executions.get(node_id)
        if execution is None:
            return Transition(
                denied=f"{what} from node {node_id}, which holds no execution of shard {self.shard_id}"
            )
        if execution.execution_id != execution_id:
            return Transition(
                denied=f"{what} for execution {execution_id or '(none)'}, which node {node_id} does not hold "
                f"for shard {self.shard_id}"
            )
        return execution

    def on_run_complete(
        self,
        node_id: str,
        execution_id: str,
        proposal: bytes,
        run_output: pb.RunCommandResult | None,
        now: float,
        *,
        status: str = "",
    ) -> Transition:
        checked = self._check_execution(node_id, execution_id, "results received", now)
        if isinstance(checked, Transition):
            return checked
        execution = checked
        if execution.state in PROPOSED_OR_LATER and execution.proposal == bytes(proposal):
            return Transition()  # a repeated report (the node retried a call it saw fail): already recorded
        if execution.state == ExecState.CANCELLED:
            return Transition()  # released (the shard ended or was cancelled): its row has ended already
        if self.is_terminal:
            return self._invalid(
                node_id, f"results received for shard {self.shard_id}, which has ended ({self.phase})", now
            )
        if execution.state != ExecState.ACCEPTED:
            return self._invalid(
                node_id,
                f"results received from node {node_id} whose execution of shard {self.shard_id} is "
                f"{execution.state}, not running",
                now,
            )
        execution.state = ExecState.PROPOSED
        execution.proposal = bytes(proposal)
        execution.run_output = run_output
        event = self._event(E.JOB_EVENT_TYPE_RESULTS_PROPOSED, now, source=node_id, status=status)
        event.verification_proposal = execution.proposal
        if run_output is not None:
            event.run_output.CopyFrom(run_output)
        out = Transition([RecordEvent(event)])
        self._maybe_verify(out)
        return out

    def _maybe_verify(self, out: Transition) -> None:
        if self.phase == Phase.WAITING_FOR_RESULTS and len(self.proposals) >= self.concurrency:
            self.phase = Phase.VERIFYING_RESULTS
            out.actions.append(self._verify_action())

    def _verify_action(self) -> Verify:
        return Verify(
            tuple(ProposalData(e.node_id, e.execution_id, e.proposal, e.run_output) for e in self.proposals)
        )

    def resume(self) -> Transition:
        """The calls to make again after the machine was reloaded (an outbox derived from its state).

        The lifecycle commits a machine before it makes the calls the machine asked for, so the calls
        that may have been lost with the previous process (not made yet, or made with the answer lost)
        are exactly those its state still waits on: a bid asked for and not answered, a bid accepted or
        rejected, a verification, results accepted or rejected. Every one of them is idempotent on the
        other side (a repeated AskForBid answers with the same execution, a repeated BidAccepted or
        ResultAccepted makes the node report again what it did, the verifier is pure), and the answers
        that come back twice (a repeated report) change nothing here, so no event is recorded twice."""
        out = Transition()
        if self.is_terminal:
            return out
        if self.phase in BIDDING_PHASES:
            for node_id in self.asked:
                if node_id not in self.executions and node_id not in self.declined:
                    out.actions.append(AskForBid(node_id))
        for execution in self.executions.values():
            if execution.state == ExecState.ACCEPTED:
                out.actions.append(NotifyBidAccepted(execution.node_id, execution.execution_id))
            elif execution.state == ExecState.REJECTED:
                out.actions.append(
                    NotifyBidRejected(execution.node_id, execution.execution_id, execution.reason)
                )
            elif execution.state == ExecState.RESULT_ACCEPTED:
                out.actions.append(NotifyResultAccepted(execution.node_id, execution.execution_id))
            elif execution.state == ExecState.RESULT_REJECTED:
                out.actions.append(
                    NotifyResultRejected(execution.node_id, execution.execution_id, execution.reason)
                )
        if self.phase == Phase.VERIFYING_RESULTS:
            out.actions.append(self._verify_action())
        return out

    def resume_node(self, node_id: str) -> Transition:
        """The calls to repeat to a node that registered again (it restarted, and may have lost the last
        things it was told): BidAccepted while it should run the shard, ResultAccepted while it should
        publish. A node that has kept them takes them as repeats; one that lost them answers that it does
        not know the execution, and the failed call replaces it (`on_bid_accept_failed`, ...)."""
        out = Transition()
        execution = self.executions.get(node_id)
        if self.is_terminal or execution is None:
            return out
        if execution.state == ExecState.ACCEPTED:
            out.actions.append(NotifyBidAccepted(node_id, execution.execution_id))
        elif execution.state == ExecState.RESULT_ACCEPTED:
            out.actions.append(NotifyResultAccepted(node_id, execution.execution_id))
        return out

    def on_verified(self, verdicts: Iterable[Verdict], now: float) -> Transition:
        """The verifier's verdicts: accept or reject each proposal; no accepted result fails the shard."""
        out = Transition()
        if self.phase != Phase.VERIFYING_RESULTS:
            return out  # the shard moved on meanwhile (timed out); the verdicts come too late
        by_execution = {v.execution_id: v for v in verdicts}
        by_node = {v.node_id: v for v in by_execution.values()}
        reasons: list[str] = []
        for execution in self.proposals:
            verdict = by_execution.get(execution.execution_id) or by_node.get(execution.node_id)
            if verdict is not None and verdict.accepted:
                execution.state = ExecState.RESULT_ACCEPTED
                event = self._event(
                    E.JOB_EVENT_TYPE_RESULTS_ACCEPTED,
                    now,
                    source=self.requester_node_id,
                    target=execution.node_id,
                )
                event.verification_result.complete = True
                event.verification_result.result = True
                if verdict.reason:
                    event.status = verdict.reason
                out.actions.append(RecordEvent(event))
                out.actions.append(NotifyResultAccepted(execution.node_id, execution.execution_id))
            else:
                reason = (verdict.reason if verdict is not None else "") or (
                    "the verifier gave no verdict" if verdict is None else "the verifier rejected the results"
                )
                execution.state = ExecState.RESULT_REJECTED
                execution.reason = reason
                if reason not in reasons:
                    reasons.append(reason)
                event = self._event(
                    E.JOB_EVENT_TYPE_RESULTS_REJECTED,
                    now,
                    source=self.requester_node_id,
                    target=execution.node_id,
                    status=reason,
                )
                event.verification_result.complete = True
                event.verification_result.result = False
                out.actions.append(RecordEvent(event))
                out.actions.append(NotifyResultRejected(execution.node_id, execution.execution_id, reason))
        self.verified = True
        out.actions.append(self._local(L.JOB_LOCAL_EVENT_TYPE_VERIFIED))
        if self._in(ExecState.RESULT_ACCEPTED):
            self.phase = Phase.WAITING_TO_PUBLISH
        else:
            why = "; ".join(reasons) if reasons else "no execution proposed results"
            self._fail(f"verification failed: no result was accepted ({why})", now, out)
        return out

    def on_verify_failed(self, error: str, now: float) -> Transition:
        out = Transition()
        if self.phase == Phase.VERIFYING_RESULTS:
            self._fail(f"failed to verify job: {error}", now, out)
        return out

    def on_result_accept_failed(self, node_id: str, execution_id: str, error: str, now: float) -> Transition:
        """The node could not be told its results were accepted: it will not publish them."""
        execution = self.executions.get(node_id)
        if (
            execution is None
            or execution.execution_id != execution_id
            or execution.state != ExecState.RESULT_ACCEPTED
        ):
            return Transition()
        execution.state = ExecState.FAILED
        execution.reason = f"could not tell the node its results were accepted: {error}"
        out = Transition(
            [
                RecordEvent(
                    self._event(
                        E.JOB_EVENT_TYPE_ERROR,
                        now,
                        source=self.requester_node_id,
                        target=node_id,
                        status=execution.reason,
                    )
                )
            ]
        )
        self._lost_execution(execution, now, out)
        return out

    def on_published(
        self,
        node_id: str,
        execution_id: str,
        published_result: pb.StorageSpec | None,
        now: float,
        *,
        status: str = "",
    ) -> Transition:
        checked = self._check_execution(node_id, execution_id, "published results received", now)
        if isinstance(checked, Transition):
            return checked
        execution = checked
        if execution.state in (ExecState.PUBLISHED, ExecState.CANCELLED):
            return Transition()  # a repeated report, or one for a released execution whose row has ended
        if execution.state != ExecState.RESULT_ACCEPTED:
            return self._invalid(
                node_id,
                f"published results received from node {node_id} whose results for shard {self.shard_id} "
                f"were not accepted (its execution is {execution.state})",
                now,
            )
        execution.state = ExecState.PUBLISHED
        event = self._event(E.JOB_EVENT_TYPE_RESULTS_PUBLISHED, now, source=node_id, status=status)
        if published_result is not None:
            event.published_result.CopyFrom(published_result)
        out = Transition([RecordEvent(event)])
        self._maybe_complete(now, out)
        return out

    def _maybe_complete(self, now: float, out: Transition) -> None:
        if self.phase != Phase.WAITING_TO_PUBLISH or self._in(ExecState.RESULT_ACCEPTED):
            return
        if self.published:
            self.phase = Phase.COMPLETED
        else:
            failures = "; ".join(e.reason for e in self._in(ExecState.FAILED) if e.reason)
            self._fail(f"no accepted result could be published ({failures})", now, out)

    # -- failures --------------------------------------------------------------------------------

    def on_compute_failure(self, node_id: str, execution_id: str, error: str, now: float) -> Transition:
        checked = self._check_execution(node_id, execution_id, "a compute error received", now)
        if isinstance(checked, Transition):
            return checked
        execution = checked
        if execution.state in (
            ExecState.CANCELLED,
            ExecState.FAILED,
            ExecState.REJECTED,
            ExecState.RESULT_REJECTED,
        ):
            return Transition()  # the requester released it already (or knows it failed): nothing new
        if execution.state not in (ExecState.BID, *ACTIVE):
            return self._invalid(
                node_id,
                f"a compute error received from node {node_id} whose execution of shard {self.shard_id} is "
                f"{execution.state}",
                now,
            )
        execution.state = ExecState.FAILED
        execution.reason = error
        event = self._event(E.JOB_EVENT_TYPE_COMPUTE_ERROR, now, source=node_id, status=error)
        out = Transition([RecordEvent(event)])
        if not self.is_terminal:
            self._lost_execution(execution, now, out)
        return out

    def _lost_execution(self, execution: Execution, now: float, out: Transition) -> None:
        """An execution dropped out (failed, its node went silent, or could not be told what to do).

        While bids are taken, its slot just reopens (v0.3's AcceptingBids). While the shard runs, its
        slot reopens too: the shard goes back to AcceptingBids (keeping its execution deadline) and the
        lifecycle's `refill` asks another node, or ends the shard when none is left. Once results are
        being verified or published, the others carry on without it.
        """
        if self.phase == Phase.WAITING_FOR_RESULTS:
            if len(self.accepted) < self.concurrency:
                self.replaced.append(execution.node_id)
                self.phase = Phase.ACCEPTING_BIDS
        elif self.phase == Phase.ACCEPTING_BIDS and self.execution_deadline is not None:
            self.replaced.append(execution.node_id)
        elif self.phase == Phase.WAITING_TO_PUBLISH:
            self._maybe_complete(now, out)
        # VerifyingResults: the verdicts skip it when they come.

    def on_node_lost(self, node_id: str, reason: str, now: float) -> Transition:
        """The node stopped heartbeating: its execution, if still active, is lost (ComputeError on its
        row, a best-effort CancelExecution in case it comes back) and replaced."""
        execution = self.executions.get(node_id)
        if self.is_terminal or execution is None or execution.state not in ACTIVE:
            return Transition()
        execution.state = ExecState.FAILED
        execution.reason = reason
        out = Transition(
            [
                RecordEvent(self._event(E.JOB_EVENT_TYPE_COMPUTE_ERROR, now, source=node_id, status=reason)),
                CancelExecution(node_id, execution.execution_id, reason),
            ]
        )
        self._lost_execution(execution, now, out)
        return out

    def on_cancel_complete(self, node_id: str, execution_id: str, now: float) -> Transition:
        checked = self._check_execution(node_id, execution_id, "a cancellation report received", now)
        if isinstance(checked, Transition):
            return checked
        execution = checked
        if execution.state in ACTIVE or execution.state == ExecState.BID:
            execution.state = ExecState.CANCELLED
            if not self.is_terminal:
                out = Transition()
                self._lost_execution(execution, now, out)
                return out
        return Transition()

    def on_timeout(self, now: float) -> Transition:
        out = Transition()
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return out
        if self.phase in BIDDING_PHASES and not self.is_replacing:
            self._fail(
                f"negotiation timed out: {len(self.accepted)} of {self.concurrency} bids accepted", now, out
            )
        else:
            self._fail(f"shard timed out while in state {self.phase}, see --timeout", now, out)
        return out

    def _fail(self, reason: str, now: float, out: Transition) -> None:
        """Error: release every execution still held, then record the reason on the requester's row (the
        Error event is the shard's last)."""
        self.phase = Phase.ERROR
        self.status = reason
        self._release(f"shard failed: {reason}", now, out)
        out.actions.append(
            RecordEvent(
                self._event(E.JOB_EVENT_TYPE_ERROR, now, source=self.requester_node_id, status=reason)
            )
        )

    def _release(self, reason: str, now: float, out: Transition) -> None:
        """End every execution the failing shard still holds: a pending bid is rejected; a running,
        proposed or publishing one gets an Error event on its node's row (so no row is left Waiting,
        Running or Verifying under an ended shard) and a CancelExecution call that stops the node."""
        for execution in list(self.executions.values()):
            if execution.state == ExecState.BID:
                self._reject(execution, reason, now, out)
            elif execution.state in ACTIVE:
                execution.state = ExecState.CANCELLED
                execution.reason = reason
                out.actions.append(
                    RecordEvent(
                        self._event(
                            E.JOB_EVENT_TYPE_ERROR,
                            now,
                            source=self.requester_node_id,
                            target=execution.node_id,
                            status=reason,
                        )
                    )
                )
                out.actions.append(CancelExecution(execution.node_id, execution.execution_id, reason))

    def cancel(self, reason: str, now: float) -> Transition:
        """The client cancelled the job: every execution still held (bid, running, proposed, publishing)
        gets a BidCancelled event on its row and a CancelExecution call; the shard ends Cancelled. A
        shard that had no such execution records the cancellation on the requester's row."""
        out = Transition()
        if self.is_terminal:
            return out
        self.phase = Phase.CANCELLED
        self.status = reason
        for execution in self.executions.values():
            if execution.state != ExecState.BID and execution.state not in ACTIVE:
                continue
            execution.state = ExecState.CANCELLED
            execution.reason = reason
            out.actions.append(
                RecordEvent(
                    self._event(
                        E.JOB_EVENT_TYPE_BID_CANCELLED,
                        now,
                        source=self.requester_node_id,
                        target=execution.node_id,
                        status=reason,
                    )
                )
            )
            out.actions.append(CancelExecution(execution.node_id, execution.execution_id, reason))
        if not out.actions:
            out.actions.append(
                RecordEvent(
                    self._event(
                        E.JOB_EVENT_TYPE_BID_CANCELLED, now, source=self.requester_node_id, status=reason
                    )
                )
            )
        return out

    # -- persistence -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "job_id": self.job_id,
            "shard_index": self.shard_index,
            "requester_node_id": self.requester_node_id,
            "client_id": self.client_id,
            "concurrency": self.concurrency,
            "min_bids": self.min_bids,
            "timeout": self.timeout,
            "created_at": self.created_at,
            "negotiation_deadline": self.negotiation_deadline,
            "phase": str(self.phase),
            "status": self.status,
            "execution_deadline": self.execution_deadline,
            "asked": list(self.asked),
            "declined": list(self.declined),
            "busy": list(self.busy),
            "verified": self.verified,
            "replaced": list(self.replaced),
            "executions": [
                {
                    "node_id": e.node_id,
                    "execution_id": e.execution_id,
                    "state": str(e.state),
                    "bid_at": e.bid_at,
                    "proposal": base64.b64encode(e.proposal).decode("ascii"),
                    "run_output": (
                        None
                        if e.run_output is None
                        else base64.b64encode(e.run_output.SerializeToString()).decode("ascii")
                    ),
                    "reason": e.reason,
                }
                for e in self.executions.values()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ShardFSM":
        if data.get("v") != FORMAT_VERSION:
            raise ValueError(f"unknown shard state format {data.get('v')!r}")
        executions: dict[str, Execution] = {}
        for item in data["executions"]:
            run_output = None
            if item["run_output"] is not None:
                run_output = pb.RunCommandResult.FromString(base64.b64decode(item["run_output"]))
            executions[item["node_id"]] = Execution(
                node_id=item["node_id"],
                execution_id=item["execution_id"],
                state=ExecState(item["state"]),
                bid_at=item["bid_at"],
                proposal=base64.b64decode(item["proposal"]),
                run_output=run_output,
                reason=item["reason"],
            )
        return cls(
            job_id=data["job_id"],
            shard_index=data["shard_index"],
            requester_node_id=data["requester_node_id"],
            client_id=data["client_id"],
            concurrency=data["concurrency"],
            min_bids=data["min_bids"],
            timeout=data["timeout"],
            created_at=data["created_at"],
            negotiation_deadline=data["negotiation_deadline"],
            phase=Phase(data["phase"]),
            status=data["status"],
            execution_deadline=data["execution_deadline"],
            asked=list(data["asked"]),
            declined=list(data.get("declined", [])),
            busy=list(data.get("busy", [])),
            executions=executions,
            verified=data["verified"],
            replaced=list(data.get("replaced", [])),
        )
