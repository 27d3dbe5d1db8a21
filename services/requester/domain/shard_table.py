"""The shard machine's tables: its phases, the states of one node's execution, and every move and every
node report the machine accepts, refuses or ignores.

- `PHASE_MOVES`: from each phase, the phases the shard may move to. Every non-terminal phase may end in
  Error or Cancelled; the terminal phases have no move.
- `EXEC_MOVES`: from each execution state, the states the execution may move to.
- `NEW_BIDS`: what a bid from a node that has not bid yet does in each phase.
- `TAKEN_IN`: the phases in which the shard-wide inputs (verdicts, a failed verification, the deadline,
  the client's cancellation) are taken; in every other phase they change nothing.
- `REPORTS`: for each kind of report about one execution, what it does in each execution state: applied
  (the execution moves to the rule's `to`), a harmless repeat (ignored: no event, no call), or refused as
  an invalid request (an InvalidRequest event, `Transition.invalid`).

The machine moves phases and execution states only through `check_phase_move` / `check_exec_move`, which
raise `IllegalMoveError` for a move that is not in the tables (a bug in the machine, never a bad input),
and decides reports only through `judge`, whose refusal is a typed `Refused`.
"""

from dataclasses import dataclass
from enum import StrEnum


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
LIVE_PHASES = frozenset(set(Phase) - TERMINAL_PHASES)


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
# Executions the shard still holds when it ends early (a pending bid, or one the node works on).
HELD = frozenset({ExecState.BID, *ACTIVE})
# Executions that have ended: no move leaves them.
ENDED_EXECUTIONS = frozenset(
    {
        ExecState.REJECTED,
        ExecState.RESULT_REJECTED,
        ExecState.PUBLISHED,
        ExecState.FAILED,
        ExecState.CANCELLED,
    }
)

P = Phase
X = ExecState
_ENDINGS = frozenset({P.ERROR, P.CANCELLED})

# ---------------------------------------------------------------------------------------------
# Moves
# ---------------------------------------------------------------------------------------------

PHASE_MOVES: dict[Phase, frozenset[Phase]] = {
    # Enough bids (max(MinBids, 1)) to choose from.
    P.ENQUEUING_BIDS: frozenset({P.SELECTING_BIDS}) | _ENDINGS,
    # The bids are chosen at once: every slot filled, or some left open.
    P.SELECTING_BIDS: frozenset({P.WAITING_FOR_RESULTS, P.ACCEPTING_BIDS}) | _ENDINGS,
    # Concurrency bids accepted.
    P.ACCEPTING_BIDS: frozenset({P.WAITING_FOR_RESULTS}) | _ENDINGS,
    # Concurrency proposals; or a node lost: its slot reopens (the execution deadline is kept).
    P.WAITING_FOR_RESULTS: frozenset({P.VERIFYING_RESULTS, P.ACCEPTING_BIDS}) | _ENDINGS,
    # The verdicts accepted at least one result (none accepted ends the shard in Error).
    P.VERIFYING_RESULTS: frozenset({P.WAITING_TO_PUBLISH}) | _ENDINGS,
    # Every accepted result published, or given up.
    P.WAITING_TO_PUBLISH: frozenset({P.COMPLETED}) | _ENDINGS,
    P.COMPLETED: frozenset(),
    P.ERROR: frozenset(),
    P.CANCELLED: frozenset(),
}

EXEC_MOVES: dict[ExecState, frozenset[ExecState]] = {
    # Accepted or rejected by the shard; failed or cancelled by its node; cancelled by the client.
    X.BID: frozenset({X.ACCEPTED, X.REJECTED, X.FAILED, X.CANCELLED}),
    # Results proposed; failed (by the node, its silence, or the failed BidAccepted call); cancelled.
    X.ACCEPTED: frozenset({X.PROPOSED, X.FAILED, X.CANCELLED}),
    # The verifier's verdict; failed; cancelled.
    X.PROPOSED: frozenset({X.RESULT_ACCEPTED, X.RESULT_REJECTED, X.FAILED, X.CANCELLED}),
    # Published; failed (by the node, its silence, or the failed ResultAccepted call); cancelled.
    X.RESULT_ACCEPTED: frozenset({X.PUBLISHED, X.FAILED, X.CANCELLED}),
    X.REJECTED: frozenset(),
    X.RESULT_REJECTED: frozenset(),
    X.PUBLISHED: frozenset(),
    X.FAILED: frozenset(),
    X.CANCELLED: frozenset(),
}


class IllegalMoveError(RuntimeError):
    """The machine tried a move its tables do not have: a bug in the machine, not a bad request."""


def check_phase_move(src: Phase, dst: Phase) -> None:
    if dst not in PHASE_MOVES[src]:
        raise IllegalMoveError(f"the shard machine cannot move from phase {src} to {dst}")


def check_exec_move(src: ExecState, dst: ExecState) -> None:
    if dst not in EXEC_MOVES[src]:
        raise IllegalMoveError(f"the shard machine cannot move an execution from {src} to {dst}")


# ---------------------------------------------------------------------------------------------
# Shard-wide inputs
# ---------------------------------------------------------------------------------------------


class NewBid(StrEnum):
    """What a bid from a node that has not bid on the shard yet does."""

    QUEUE = "queue"  # kept; once there are max(MinBids, 1) bids the shard selects among them
    ACCEPT = "accept"  # accepted at once (a slot is open)
    REJECT_FULL = "reject: the shard has all the nodes it needs"
    REJECT_ENDED = "reject: the shard has ended"


NEW_BIDS: dict[Phase, NewBid] = {
    P.ENQUEUING_BIDS: NewBid.QUEUE,
    P.SELECTING_BIDS: NewBid.REJECT_FULL,
    P.ACCEPTING_BIDS: NewBid.ACCEPT,
    P.WAITING_FOR_RESULTS: NewBid.REJECT_FULL,
    P.VERIFYING_RESULTS: NewBid.REJECT_FULL,
    P.WAITING_TO_PUBLISH: NewBid.REJECT_FULL,
    P.COMPLETED: NewBid.REJECT_ENDED,
    P.ERROR: NewBid.REJECT_ENDED,
    P.CANCELLED: NewBid.REJECT_ENDED,
}


class Input(StrEnum):
    """The shard-wide inputs that only some phases take."""

    VERDICTS = "verdicts"  # on_verified
    VERIFY_FAILED = "verify failed"  # on_verify_failed
    TIMEOUT = "timeout"  # on_timeout (once the deadline has passed)
    CANCEL = "cancel"  # cancel


TAKEN_IN: dict[Input, frozenset[Phase]] = {
    Input.VERDICTS: frozenset({P.VERIFYING_RESULTS}),
    Input.VERIFY_FAILED: frozenset({P.VERIFYING_RESULTS}),
    Input.TIMEOUT: BIDDING_PHASES | EXECUTION_PHASES,
    Input.CANCEL: LIVE_PHASES,
}

# ---------------------------------------------------------------------------------------------
# Reports about one execution
# ---------------------------------------------------------------------------------------------


class Report(StrEnum):
    RESULTS_PROPOSED = "results proposed"  # on_run_complete
    PUBLISHED = "published"  # on_published
    COMPUTE_FAILURE = "compute failure"  # on_compute_failure
    CANCEL_COMPLETE = "cancel complete"  # on_cancel_complete
    BID_ACCEPT_FAILED = "bid-accept failed"  # on_bid_accept_failed (the BidAccepted call failed)
    RESULT_ACCEPT_FAILED = "result-accept failed"  # on_result_accept_failed (the ResultAccepted call failed)
    NODE_LOST = "node lost"  # on_node_lost (the node stopped heartbeating)


class Outcome(StrEnum):
    APPLY = "apply"  # the execution moves to the rule's `to`
    IGNORE = "ignore"  # a harmless repeat, or about an execution already released: nothing happens
    REPEAT_OR_REFUSE = "repeat or refuse"  # ignored when it repeats what was recorded, refused otherwise
    REFUSE = "refuse"  # an invalid request: InvalidRequest event, `Transition.invalid`


@dataclass(frozen=True)
class ReportRule:
    # Where an applied report moves the execution.
    to: ExecState
    # The outcome in each execution state.
    outcomes: dict[ExecState, Outcome]
    # A report from a node (rather than about a call the requester made, or its silence): a caller that
    # holds no such execution is denied (`Transition.denied`) with `what` in the message; otherwise
    # such a report is ignored.
    from_node: bool = False
    what: str = ""
    # The refusal, formatted with node, shard, state and phase.
    refusal: str = ""
    # Once the shard has ended, a report that is not ignored gets this outcome instead (None: the same as
    # before), refused with `ended_refusal`.
    when_ended: Outcome | None = None
    ended_refusal: str = ""


def _outcomes(
    apply: frozenset[ExecState],
    ignore: frozenset[ExecState],
    otherwise: dict[ExecState, Outcome] | None = None,
) -> dict[ExecState, Outcome]:
    """Every state: APPLY in `apply`, IGNORE in `ignore`, then `otherwise` by state, REFUSE elsewhere."""
    rest = otherwise or {}
    table: dict[ExecState, Outcome] = {}
    for state in ExecState:
        if state in apply:
            table[state] = Outcome.APPLY
        elif state in ignore:
            table[state] = Outcome.IGNORE
        else:
            table[state] = rest.get(state, Outcome.REFUSE)
    return table


REPORTS: dict[Report, ReportRule] = {
    Report.RESULTS_PROPOSED: ReportRule(
        to=X.PROPOSED,
        outcomes=_outcomes(
            frozenset({X.ACCEPTED}),
            frozenset({X.CANCELLED}),
            # A repeat carries the proposal already recorded (the node retried a call it saw fail).
            dict.fromkeys(PROPOSED_OR_LATER, Outcome.REPEAT_OR_REFUSE),
        ),
        from_node=True,
        what="results received",
        refusal="results received from node {node} whose execution of shard {shard} is {state}, not running",
        when_ended=Outcome.REFUSE,
        ended_refusal="results received for shard {shard}, which has ended ({phase})",
    ),
    Report.PUBLISHED: ReportRule(
        to=X.PUBLISHED,
        outcomes=_outcomes(frozenset({X.RESULT_ACCEPTED}), frozenset({X.PUBLISHED, X.CANCELLED})),
        from_node=True,
        what="published results received",
        refusal="published results received from node {node} whose results for shard {shard} were not "
        "accepted (its execution is {state})",
    ),
    Report.COMPUTE_FAILURE: ReportRule(
        to=X.FAILED,
        outcomes=_outcomes(HELD, frozenset({X.CANCELLED, X.FAILED, X.REJECTED, X.RESULT_REJECTED})),
        from_node=True,
        what="a compute error received",
        refusal="a compute error received from node {node} whose execution of shard {shard} is {state}",
    ),
    Report.CANCEL_COMPLETE: ReportRule(
        to=X.CANCELLED,
        outcomes=_outcomes(HELD, ENDED_EXECUTIONS),
        from_node=True,
        what="a cancellation report received",
    ),
    Report.BID_ACCEPT_FAILED: ReportRule(
        to=X.FAILED,
        outcomes=_outcomes(frozenset({X.ACCEPTED}), frozenset(set(X) - {X.ACCEPTED})),
    ),
    Report.RESULT_ACCEPT_FAILED: ReportRule(
        to=X.FAILED,
        outcomes=_outcomes(frozenset({X.RESULT_ACCEPTED}), frozenset(set(X) - {X.RESULT_ACCEPTED})),
    ),
    Report.NODE_LOST: ReportRule(
        to=X.FAILED,
        outcomes=_outcomes(ACTIVE, frozenset(set(X) - ACTIVE)),
        when_ended=Outcome.IGNORE,
    ),
}


@dataclass(frozen=True)
class Apply:
    """The report is applied: the execution moves to `to`."""

    to: ExecState


@dataclass(frozen=True)
class Ignored:
    """The report changes nothing (a repeat, or about an execution the shard has released)."""


@dataclass(frozen=True)
class Refused:
    """The report is not valid in the execution's state: recorded as an InvalidRequest with `reason`."""

    reason: str


Judgement = Apply | Ignored | Refused


def judge(
    report: Report,
    state: ExecState,
    *,
    phase: Phase,
    node_id: str,
    shard_id: str,
    repeated: bool = False,
) -> Judgement:
    """What `report` does to an execution in `state` of a shard in `phase` (`repeated`: the report carries
    what was recorded already)."""
    rule = REPORTS[report]
    outcome = rule.outcomes[state]
    if outcome is Outcome.REPEAT_OR_REFUSE:
        outcome = Outcome.IGNORE if repeated else Outcome.REFUSE
    ended = phase in TERMINAL_PHASES and rule.when_ended is not None and outcome is not Outcome.IGNORE
    if ended:
        outcome = rule.when_ended or outcome
    if outcome is Outcome.IGNORE:
        return Ignored()
    if outcome is Outcome.APPLY:
        return Apply(rule.to)
    template = rule.ended_refusal if ended else rule.refusal
    return Refused(template.format(node=node_id, shard=shard_id, state=state, phase=phase))
