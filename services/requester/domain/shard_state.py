"""The shard machine's data and the steps its inputs share (the inputs themselves are in `shard_fsm`).

`ShardState` holds one shard's phase, deadlines, the nodes asked and one `Execution` per node that bid. It
changes the phase only through `_move` and an execution's state only through `_set`, which check the move
against `PHASE_MOVES` / `EXEC_MOVES` (`shard_table`), and answers a report about one execution through
`_report`, which looks the report up in `REPORTS`. The shared steps are accepting and rejecting bids,
starting the verification, losing an execution, completing, failing and releasing.
"""

import random
from dataclasses import dataclass, field
from typing import Self

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain import events as ev
from bacalhau_grpc.requester.domain.shard_actions import (
    CancelExecution,
    NotifyBidAccepted,
    NotifyBidRejected,
    ProposalData,
    RecordEvent,
    RecordLocalEvent,
    Transition,
    Verify,
)
from bacalhau_grpc.requester.domain.shard_table import (
    ACTIVE,
    BIDDING_PHASES,
    EXECUTION_PHASES,
    REPORTS,
    RUNNING,
    TERMINAL_PHASES,
    ExecState,
    Ignored,
    Phase,
    Refused,
    Report,
    check_exec_move,
    check_phase_move,
    judge,
)

E = pb.JobEventType
L = pb.JobLocalEventType
FULL = "the shard has all the nodes it needs"


@dataclass
class Execution:
    """One node's execution of the shard, from its bid on; `state` changes only through `ShardState._set`."""

    node_id: str
    execution_id: str
    state: ExecState
    bid_at: float
    proposal: bytes = b""
    run_output: pb.RunCommandResult | None = None
    reason: str = ""


@dataclass
class ShardState:
    """One shard's data, views and shared steps; `ShardFSM` adds the inputs."""

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
    ) -> Self:
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

    # -- moves: the only writers of `phase` and `Execution.state` --------------------------------

    def _move(self, phase: Phase) -> None:
        """Move the shard to `phase`; a move `PHASE_MOVES` does not have raises `IllegalMoveError`."""
        check_phase_move(self.phase, phase)
        self.phase = phase

    def _set(self, execution: Execution, state: ExecState) -> None:
        """Move `execution` to `state`; a move `EXEC_MOVES` does not have raises `IllegalMoveError`."""
        check_exec_move(execution.state, state)
        execution.state = state

    def _report(
        self,
        report: Report,
        node_id: str,
        execution_id: str | None,
        now: float,
        *,
        proposal: bytes | None = None,
    ) -> Execution | Transition:
        """Decide `report` about the node's execution (`execution_id` None: whichever it holds) with
        `REPORTS`. When it applies, moves the execution to the rule's state and returns it; otherwise
        returns the answer: denied (a node reporting about an execution it does not hold), ignored (empty),
        or refused (InvalidRequest). `proposal`: what a results report carries, a repeat if recorded."""
        rule = REPORTS[report]
        execution = self.executions.get(node_id)
        if execution is None or (execution_id is not None and execution.execution_id != execution_id):
            if not rule.from_node:
                return Transition()
            if execution is None:
                why = f"{rule.what} from node {node_id}, which holds no execution of shard {self.shard_id}"
            else:
                why = (
                    f"{rule.what} for execution {execution_id or '(none)'}, which node {node_id} does not "
                    f"hold for shard {self.shard_id}"
                )
            return Transition(denied=why)
        judgement = judge(
            report,
            execution.state,
            phase=self.phase,
            node_id=node_id,
            shard_id=self.shard_id,
            repeated=proposal is not None and execution.proposal == proposal,
        )
        if isinstance(judgement, Ignored):
            return Transition()
        if isinstance(judgement, Refused):
            return self._refuse(node_id, judgement, now)
        self._set(execution, judgement.to)
        return execution

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

    def _record(
        self, name: int, now: float, *, source: str = "", target: str = "", status: str = ""
    ) -> RecordEvent:
        return RecordEvent(self._event(name, now, source=source, target=target, status=status))

    def _local(self, name: int, target: str = "") -> RecordLocalEvent:
        return RecordLocalEvent(
            ev.new_local_event(name, job_id=self.job_id, shard_index=self.shard_index, target_node_id=target)
        )

    def _refuse(self, node_id: str, refused: Refused, now: float) -> Transition:
        """A refused request: an InvalidRequest event from the requester to the node, and `invalid`."""
        record = self._record(
            E.JOB_EVENT_TYPE_INVALID_REQUEST,
            now,
            source=self.requester_node_id,
            target=node_id,
            status=refused.reason,
        )
        return Transition([record], invalid=refused.reason)

    # -- bids ------------------------------------------------------------------------------------

    def _select(self, now: float, rng: random.Random, out: Transition) -> None:
        """SelectingBids: shuffle the bidders, accept as many as there are open slots, reject the rest."""
        pending = self.bids
        rng.shuffle(pending)
        open_slots = max(self.concurrency - len(self.accepted), 0)
        for execution in pending[:open_slots]:
            self._accept(execution, now, out)
        for execution in pending[open_slots:]:
            self._reject(execution, FULL, now, out)
        self._after_accepting(now, out)

    def _accept(self, execution: Execution, now: float, out: Transition) -> None:
        self._set(execution, ExecState.ACCEPTED)
        out.actions.append(
            self._record(
                E.JOB_EVENT_TYPE_BID_ACCEPTED, now, source=self.requester_node_id, target=execution.node_id
            )
        )
        out.actions.append(self._local(L.JOB_LOCAL_EVENT_TYPE_BID_ACCEPTED, execution.node_id))
        out.actions.append(NotifyBidAccepted(execution.node_id, execution.execution_id))

    def _reject(self, execution: Execution, reason: str, now: float, out: Transition) -> None:
        self._set(execution, ExecState.REJECTED)
        execution.reason = reason
        out.actions.append(
            self._record(
                E.JOB_EVENT_TYPE_BID_REJECTED,
                now,
                source=self.requester_node_id,
                target=execution.node_id,
                status=reason,
            )
        )
        out.actions.append(self._local(L.JOB_LOCAL_EVENT_TYPE_BID_REJECTED, execution.node_id))
        out.actions.append(NotifyBidRejected(execution.node_id, execution.execution_id, reason))

    def _after_accepting(self, now: float, out: Transition) -> None:
        """Every slot filled: WaitingForResults (the execution deadline starts on the first entry);
        otherwise AcceptingBids."""
        if len(self.accepted) >= self.concurrency:
            self._move(Phase.WAITING_FOR_RESULTS)
            if self.execution_deadline is None:  # a replacement keeps the first deadline
                self.execution_deadline = now + self.timeout
            self._maybe_verify(out)
        elif self.phase != Phase.ACCEPTING_BIDS:
            self._move(Phase.ACCEPTING_BIDS)

    # -- results ---------------------------------------------------------------------------------

    def _maybe_verify(self, out: Transition) -> None:
        if self.phase == Phase.WAITING_FOR_RESULTS and len(self.proposals) >= self.concurrency:
            self._move(Phase.VERIFYING_RESULTS)
            out.actions.append(self._verify_action())

    def _verify_action(self) -> Verify:
        return Verify(
            tuple(ProposalData(e.node_id, e.execution_id, e.proposal, e.run_output) for e in self.proposals)
        )

    def _maybe_complete(self, now: float, out: Transition) -> None:
        if self.phase != Phase.WAITING_TO_PUBLISH or self._in(ExecState.RESULT_ACCEPTED):
            return
        if self.published:
            self._move(Phase.COMPLETED)
        else:
            failures = "; ".join(e.reason for e in self._in(ExecState.FAILED) if e.reason)
            self._fail(f"no accepted result could be published ({failures})", now, out)

    # -- losses and failures ---------------------------------------------------------------------

    def _lost_execution(self, execution: Execution, now: float, out: Transition) -> None:
        """An execution dropped out (failed, its node went silent, or could not be told what to do).

        While bids are taken, its slot just reopens (v0.3's AcceptingBids). While the shard runs, its
        slot reopens too: the shard goes back to AcceptingBids (keeping its execution deadline) and the
        lifecycle's `refill` asks another node, or ends the shard when none is left. Once results are
        being verified or published, the others carry on without it. An ended shard changes nothing.
        """
        if self.phase == Phase.WAITING_FOR_RESULTS:
            if len(self.accepted) < self.concurrency:
                self.replaced.append(execution.node_id)
                self._move(Phase.ACCEPTING_BIDS)
        elif self.phase == Phase.ACCEPTING_BIDS and self.execution_deadline is not None:
            self.replaced.append(execution.node_id)
        elif self.phase == Phase.WAITING_TO_PUBLISH:
            self._maybe_complete(now, out)
        # VerifyingResults: the verdicts skip it when they come.

    def _fail(self, reason: str, now: float, out: Transition) -> None:
        """Error: release every execution still held, then record the reason on the requester's row (the
        Error event is the shard's last)."""
        self._move(Phase.ERROR)
        self.status = reason
        self._release(f"shard failed: {reason}", now, out)
        out.actions.append(
            self._record(E.JOB_EVENT_TYPE_ERROR, now, source=self.requester_node_id, status=reason)
        )

    def _release(self, reason: str, now: float, out: Transition) -> None:
        """End every execution the failing shard still holds: a pending bid is rejected; a running,
        proposed or publishing one gets an Error event on its node's row (so no row is left Waiting,
        Running or Verifying under an ended shard) and a CancelExecution call that stops the node."""
        for execution in list(self.executions.values()):
            if execution.state == ExecState.BID:
                self._reject(execution, reason, now, out)
            elif execution.state in ACTIVE:
                self._set(execution, ExecState.CANCELLED)
                execution.reason = reason
                out.actions.append(
                    self._record(
                        E.JOB_EVENT_TYPE_ERROR,
                        now,
                        source=self.requester_node_id,
                        target=execution.node_id,
                        status=reason,
                    )
                )
                out.actions.append(CancelExecution(execution.node_id, execution.execution_id, reason))
