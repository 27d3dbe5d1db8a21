"""The requester's state machine for one shard of a job: Bacalhau v0.3's shard lifecycle, from bidding to
publication, with our fixes (drawn in "Job lifecycle and state machines" in docs/architecture.md).

Pure: every input is a method taking the current time (`time.time()` seconds) and returning a
`Transition`, the list of actions the lifecycle must perform (events to record, calls to make) and,
for a request that is not valid in the shard's state, the reason to refuse it. Nothing here does I/O,
sleeps or reads a clock, so it is tested by driving it with explicit times.

The machine is a set of tables plus small handlers. The tables (`shard_table`) say which phase moves
(`PHASE_MOVES`) and execution-state moves (`EXEC_MOVES`) exist, what a new bid does in each phase
(`NEW_BIDS`), in which phases the shard-wide inputs are taken (`TAKEN_IN`), and, for each report about
one execution, in which execution states it is applied, ignored as a harmless repeat, or refused
(`REPORTS`, decided by `judge`, whose refusal is a typed `Refused`). The handlers below change the phase
and the executions' states only through `_move` / `_set` (`shard_state`), which raise `IllegalMoveError`
for a move the tables do not have. Their effects are the typed `Action` union (`shard_actions`).

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

The whole machine is plain data: `to_dict()` / `from_dict()` persist and reload it (`shard_codec`).
"""

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain import shard_codec
from bacalhau_grpc.requester.domain.shard_actions import (
    Action,
    AskForBid,
    CancelExecution,
    NotifyBidAccepted,
    NotifyBidRejected,
    NotifyResultAccepted,
    NotifyResultRejected,
    ProposalData,
    RecordEvent,
    RecordLocalEvent,
    Transition,
    Verdict,
    Verify,
)
from bacalhau_grpc.requester.domain.shard_codec import FORMAT_VERSION
from bacalhau_grpc.requester.domain.shard_state import FULL, Execution, ShardState
from bacalhau_grpc.requester.domain.shard_table import (
    ACTIVE,
    BIDDING_PHASES,
    EXECUTION_PHASES,
    HELD,
    NEW_BIDS,
    PROPOSED_OR_LATER,
    RUNNING,
    TAKEN_IN,
    TERMINAL_PHASES,
    ExecState,
    Input,
    NewBid,
    Phase,
    Report,
)

__all__ = [
    "ACTIVE",
    "BIDDING_PHASES",
    "EXECUTION_PHASES",
    "FORMAT_VERSION",
    "PROPOSED_OR_LATER",
    "RUNNING",
    "TERMINAL_PHASES",
    "Action",
    "AskForBid",
    "CancelExecution",
    "ExecState",
    "Execution",
    "NotifyBidAccepted",
    "NotifyBidRejected",
    "NotifyResultAccepted",
    "NotifyResultRejected",
    "Phase",
    "ProposalData",
    "RecordEvent",
    "RecordLocalEvent",
    "ShardFSM",
    "Transition",
    "Verdict",
    "Verify",
]

E = pb.JobEventType
L = pb.JobLocalEventType


@dataclass
class ShardFSM(ShardState):
    # -- bidding ---------------------------------------------------------------------------------

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
        status = f"could not ask for a bid: {error}"
        return Transition(
            [self._record(E.JOB_EVENT_TYPE_BID_CANCELLED, now, source=node_id, target=node_id, status=status)]
        )

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
        return Transition(
            [self._record(E.JOB_EVENT_TYPE_BID_CANCELLED, now, source=node_id, target=node_id, status=status)]
        )

    def offer_again(self, node_id: str, rng: random.Random | None = None) -> Transition:
        """The node, busy when asked before, heartbeated: `offer` the shard to it again."""
        if node_id in self.busy:
            self.busy.remove(node_id)
        return self.offer([node_id], rng)

    def on_bid(self, node_id: str, execution_id: str, now: float, rng: random.Random) -> Transition:
        """A node bid on the shard with `execution_id`; what a first bid does in each phase is `NEW_BIDS`."""
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
        out.actions.append(self._record(E.JOB_EVENT_TYPE_BID, now, source=node_id))
        rule = NEW_BIDS[self.phase]
        if rule is NewBid.QUEUE:
            if len(self.bids) >= max(self.min_bids, 1):
                self._move(Phase.SELECTING_BIDS)
                self._select(now, rng, out)
        elif rule is NewBid.ACCEPT:
            self._accept(execution, now, out)
            self._after_accepting(now, out)
        elif rule is NewBid.REJECT_ENDED:
            self._reject(execution, f"the shard has ended ({self.phase})", now, out)
        else:
            self._reject(execution, FULL, now, out)
        return out

    def on_bid_accept_failed(self, node_id: str, execution_id: str, error: str, now: float) -> Transition:
        """The node could not be told its bid was accepted: it will not run the shard."""
        execution = self._report(Report.BID_ACCEPT_FAILED, node_id, execution_id, now)
        if isinstance(execution, Transition):
            return execution
        execution.reason = f"could not tell the node its bid was accepted: {error}"
        status = execution.reason
        out = Transition(
            [
                self._record(
                    E.JOB_EVENT_TYPE_BID_CANCELLED,
                    now,
                    source=self.requester_node_id,
                    target=node_id,
                    status=status,
                )
            ]
        )
        self._lost_execution(execution, now, out)
        return out

    # -- results ---------------------------------------------------------------------------------

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
        execution = self._report(
            Report.RESULTS_PROPOSED, node_id, execution_id, now, proposal=bytes(proposal)
        )
        if isinstance(execution, Transition):
            return execution
        execution.proposal = bytes(proposal)
        execution.run_output = run_output
        event = self._event(E.JOB_EVENT_TYPE_RESULTS_PROPOSED, now, source=node_id, status=status)
        event.verification_proposal = execution.proposal
        if run_output is not None:
            event.run_output.CopyFrom(run_output)
        out = Transition([RecordEvent(event)])
        self._maybe_verify(out)
        return out

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
        if self.phase not in TAKEN_IN[Input.VERDICTS]:
            return out  # the shard moved on meanwhile (timed out); the verdicts come too late
        by_execution = {v.execution_id: v for v in verdicts}
        by_node = {v.node_id: v for v in by_execution.values()}
        reasons: list[str] = []
        for execution in self.proposals:
            verdict = by_execution.get(execution.execution_id) or by_node.get(execution.node_id)
            if verdict is not None and verdict.accepted:
                self._set(execution, ExecState.RESULT_ACCEPTED)
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
                self._set(execution, ExecState.RESULT_REJECTED)
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
            self._move(Phase.WAITING_TO_PUBLISH)
        else:
            why = "; ".join(reasons) if reasons else "no execution proposed results"
            self._fail(f"verification failed: no result was accepted ({why})", now, out)
        return out

    def on_verify_failed(self, error: str, now: float) -> Transition:
        out = Transition()
        if self.phase in TAKEN_IN[Input.VERIFY_FAILED]:
            self._fail(f"failed to verify job: {error}", now, out)
        return out

    def on_result_accept_failed(self, node_id: str, execution_id: str, error: str, now: float) -> Transition:
        """The node could not be told its results were accepted: it will not publish them."""
        execution = self._report(Report.RESULT_ACCEPT_FAILED, node_id, execution_id, now)
        if isinstance(execution, Transition):
            return execution
        execution.reason = f"could not tell the node its results were accepted: {error}"
        status = execution.reason
        out = Transition(
            [
                self._record(
                    E.JOB_EVENT_TYPE_ERROR, now, source=self.requester_node_id, target=node_id, status=status
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
        execution = self._report(Report.PUBLISHED, node_id, execution_id, now)
        if isinstance(execution, Transition):
            return execution
        event = self._event(E.JOB_EVENT_TYPE_RESULTS_PUBLISHED, now, source=node_id, status=status)
        if published_result is not None:
            event.published_result.CopyFrom(published_result)
        out = Transition([RecordEvent(event)])
        self._maybe_complete(now, out)
        return out

    # -- failures --------------------------------------------------------------------------------

    def on_compute_failure(self, node_id: str, execution_id: str, error: str, now: float) -> Transition:
        execution = self._report(Report.COMPUTE_FAILURE, node_id, execution_id, now)
        if isinstance(execution, Transition):
            return execution
        execution.reason = error
        out = Transition([self._record(E.JOB_EVENT_TYPE_COMPUTE_ERROR, now, source=node_id, status=error)])
        self._lost_execution(execution, now, out)
        return out

    def on_node_lost(self, node_id: str, reason: str, now: float) -> Transition:
        """The node stopped heartbeating: its execution, if still active, is lost (ComputeError on its
        row, a best-effort CancelExecution in case it comes back) and replaced."""
        execution = self._report(Report.NODE_LOST, node_id, None, now)
        if isinstance(execution, Transition):
            return execution
        execution.reason = reason
        out = Transition(
            [
                self._record(E.JOB_EVENT_TYPE_COMPUTE_ERROR, now, source=node_id, status=reason),
                CancelExecution(node_id, execution.execution_id, reason),
            ]
        )
        self._lost_execution(execution, now, out)
        return out

    def on_cancel_complete(self, node_id: str, execution_id: str, now: float) -> Transition:
        execution = self._report(Report.CANCEL_COMPLETE, node_id, execution_id, now)
        if isinstance(execution, Transition):
            return execution
        out = Transition()
        self._lost_execution(execution, now, out)
        return out

    def on_timeout(self, now: float) -> Transition:
        out = Transition()
        deadline = self.next_deadline()
        if self.phase not in TAKEN_IN[Input.TIMEOUT] or deadline is None or now < deadline:
            return out
        if self.phase in BIDDING_PHASES and not self.is_replacing:
            self._fail(
                f"negotiation timed out: {len(self.accepted)} of {self.concurrency} bids accepted", now, out
            )
        else:
            self._fail(f"shard timed out while in state {self.phase}, see --timeout", now, out)
        return out

    def cancel(self, reason: str, now: float) -> Transition:
        """The client cancelled the job: every execution still held (bid, running, proposed, publishing)
        gets a BidCancelled event on its row and a CancelExecution call; the shard ends Cancelled. A
        shard that had no such execution records the cancellation on the requester's row."""
        out = Transition()
        if self.phase not in TAKEN_IN[Input.CANCEL]:
            return out
        self._move(Phase.CANCELLED)
        self.status = reason
        for execution in self.executions.values():
            if execution.state not in HELD:
                continue
            self._set(execution, ExecState.CANCELLED)
            execution.reason = reason
            out.actions.append(
                self._record(
                    E.JOB_EVENT_TYPE_BID_CANCELLED,
                    now,
                    source=self.requester_node_id,
                    target=execution.node_id,
                    status=reason,
                )
            )
            out.actions.append(CancelExecution(execution.node_id, execution.execution_id, reason))
        if not out.actions:
            out.actions.append(
                self._record(
                    E.JOB_EVENT_TYPE_BID_CANCELLED, now, source=self.requester_node_id, status=reason
                )
            )
        return out

    # -- persistence -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return shard_codec.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ShardFSM":
        return cls(**shard_codec.fields_from_dict(data))
