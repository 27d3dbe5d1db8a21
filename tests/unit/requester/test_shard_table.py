"""The shard machine's tables, checked against a real machine driven with explicit times (no sleeping, no
I/O): every allowed phase and execution move happens, every other one raises, every report does in every
execution state what `REPORTS` says, and the shard-wide inputs are taken exactly in `TAKEN_IN` / `NEW_BIDS`.

The tests are parametrized over the tables, so a new row is tested as soon as it is added (a new move
needs a scenario in `PHASE_SCENARIOS` / `EXEC_SCENARIOS`, which a test checks).
"""

import functools
import inspect
import random
from collections.abc import Callable

import pytest

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain import shard_fsm as f
from bacalhau_grpc.requester.domain.shard_fsm import ExecState, Phase, ShardFSM, Transition, Verdict
from bacalhau_grpc.requester.domain.shard_state import FULL, ShardState
from bacalhau_grpc.requester.domain.shard_table import (
    ENDED_EXECUTIONS,
    EXEC_MOVES,
    HELD,
    NEW_BIDS,
    PHASE_MOVES,
    REPORTS,
    TAKEN_IN,
    TERMINAL_PHASES,
    Apply,
    Ignored,
    IllegalMoveError,
    Input,
    NewBid,
    Outcome,
    Refused,
    Report,
    check_exec_move,
    check_phase_move,
    judge,
)
from tests.unit.requester import test_shard_fsm as scenarios

E = pb.JobEventType
T0 = 1_700_000_000.0
REQ = "requester-1"
LATER = T0 + 10_000  # past every deadline
P = Phase
X = ExecState


def machine(concurrency=1, min_bids=0, timeout=60.0, negotiation=120.0) -> ShardFSM:
    return ShardFSM.create(
        job_id="job-1",
        shard_index=0,
        requester_node_id=REQ,
        client_id="client-1",
        deal=pb.Deal(concurrency=concurrency, min_bids=min_bids),
        timeout=timeout,
        negotiation_timeout=negotiation,
        now=T0,
    )


def names(transition: Transition) -> list[str]:
    return [pb.JobEventType.Name(e.event_name).removeprefix("JOB_EVENT_TYPE_") for e in transition.events()]


def rng(seed=7) -> random.Random:
    return random.Random(seed)


def bid(m: ShardFSM, node: str, now=T0 + 1) -> Transition:
    return m.on_bid(node, f"e-{node}", now, rng())


def accept_all(m: ShardFSM, now=T0 + 4) -> Transition:
    return m.on_verified([Verdict(e.execution_id, e.node_id, True) for e in m.executions.values()], now)


# ---------------------------------------------------------------------------------------------
# Reaching a phase, and an execution state of node n1
# ---------------------------------------------------------------------------------------------


def reach(phase: Phase) -> ShardFSM:
    """A machine in `phase`, reached by real inputs. SelectingBids is entered and left within the bid
    that completes the selection, so that machine is the EnqueuingBids one reloaded in SelectingBids."""
    if phase == Phase.ENQUEUING_BIDS:
        m = machine(concurrency=1, min_bids=3)
        bid(m, "n1")
    elif phase == Phase.SELECTING_BIDS:
        data = reach(Phase.ENQUEUING_BIDS).to_dict()
        data["phase"] = str(Phase.SELECTING_BIDS)
        m = ShardFSM.from_dict(data)
    elif phase == Phase.ACCEPTING_BIDS:
        m = machine(concurrency=2)
        bid(m, "n1")
    elif phase == Phase.WAITING_FOR_RESULTS:
        m = machine()
        bid(m, "n1")
    elif phase == Phase.VERIFYING_RESULTS:
        m = reach(Phase.WAITING_FOR_RESULTS)
        m.on_run_complete("n1", "e-n1", b"p1", None, T0 + 2)
    elif phase == Phase.WAITING_TO_PUBLISH:
        m = reach(Phase.VERIFYING_RESULTS)
        accept_all(m, T0 + 3)
    elif phase == Phase.COMPLETED:
        m = reach(Phase.WAITING_TO_PUBLISH)
        m.on_published("n1", "e-n1", None, T0 + 4)
    elif phase == Phase.ERROR:
        m = reach(Phase.ENQUEUING_BIDS)
        m.on_timeout(LATER)
    else:
        m = reach(Phase.ENQUEUING_BIDS)
        m.cancel("the client cancelled", T0 + 2)
    assert m.phase == phase
    return m


def in_state(state: ExecState) -> ShardFSM:
    """A machine, still running, whose node n1 holds execution e-n1 in `state` (its proposal, if any,
    is b"p1")."""
    if state == ExecState.BID:
        m = machine(concurrency=1, min_bids=2)
        bid(m, "n1")
    elif state == ExecState.REJECTED:
        m = machine()
        bid(m, "n0")
        bid(m, "n1")
    elif state == ExecState.ACCEPTED:
        m = machine(concurrency=2)
        bid(m, "n1")
        bid(m, "n2")
    elif state == ExecState.PROPOSED:
        m = in_state(ExecState.ACCEPTED)
        m.on_run_complete("n1", "e-n1", b"p1", None, T0 + 2)
    elif state in (ExecState.RESULT_ACCEPTED, ExecState.RESULT_REJECTED):
        m = in_state(ExecState.PROPOSED)
        m.on_run_complete("n2", "e-n2", b"p2", None, T0 + 2)
        n1_accepted = state == ExecState.RESULT_ACCEPTED
        m.on_verified([Verdict("e-n1", "n1", n1_accepted), Verdict("e-n2", "n2", True)], T0 + 3)
    elif state == ExecState.PUBLISHED:
        m = in_state(ExecState.RESULT_ACCEPTED)
        m.on_published("n1", "e-n1", None, T0 + 4)
    elif state == ExecState.FAILED:
        m = in_state(ExecState.ACCEPTED)
        m.on_compute_failure("n1", "e-n1", "boom", T0 + 2)
    else:
        m = in_state(ExecState.ACCEPTED)
        m.on_cancel_complete("n1", "e-n1", T0 + 2)
    execution = m.execution("n1")
    assert execution is not None and execution.state == state and not m.is_terminal
    return m


def send(m: ShardFSM, report: Report, node="n1", execution_id="e-n1", proposal=b"p1") -> Transition:
    now = T0 + 5
    if report == Report.RESULTS_PROPOSED:
        return m.on_run_complete(node, execution_id, proposal, None, now)
    if report == Report.PUBLISHED:
        return m.on_published(node, execution_id, None, now)
    if report == Report.COMPUTE_FAILURE:
        return m.on_compute_failure(node, execution_id, "boom", now)
    if report == Report.CANCEL_COMPLETE:
        return m.on_cancel_complete(node, execution_id, now)
    if report == Report.BID_ACCEPT_FAILED:
        return m.on_bid_accept_failed(node, execution_id, "unreachable", now)
    if report == Report.RESULT_ACCEPT_FAILED:
        return m.on_result_accept_failed(node, execution_id, "unreachable", now)
    assert report == Report.NODE_LOST
    return m.on_node_lost(node, "stopped heartbeating", now)


# The event an applied report records first (None: an applied cancellation report records nothing).
FIRST_EVENT = {
    Report.RESULTS_PROPOSED: "RESULTS_PROPOSED",
    Report.PUBLISHED: "RESULTS_PUBLISHED",
    Report.COMPUTE_FAILURE: "COMPUTE_ERROR",
    Report.CANCEL_COMPLETE: None,
    Report.BID_ACCEPT_FAILED: "BID_CANCELLED",
    Report.RESULT_ACCEPT_FAILED: "ERROR",
    Report.NODE_LOST: "COMPUTE_ERROR",
}


def observe_moves(m: ShardFSM) -> tuple[list[tuple[Phase, Phase]], list[tuple[ExecState, ExecState]]]:
    """Record the phase and execution moves `m` makes from now on."""
    phases: list[tuple[Phase, Phase]] = []
    states: list[tuple[ExecState, ExecState]] = []
    move, set_state = m._move, m._set

    def _move(phase):
        phases.append((m.phase, phase))
        move(phase)

    def _set(execution, state):
        states.append((execution.state, state))
        set_state(execution, state)

    m._move = _move
    m._set = _set
    return phases, states


# ---------------------------------------------------------------------------------------------
# The tables are complete and consistent
# ---------------------------------------------------------------------------------------------


def test_every_phase_and_execution_state_is_a_key_of_every_table():
    assert set(PHASE_MOVES) == set(Phase)
    assert set(NEW_BIDS) == set(Phase)
    assert set(EXEC_MOVES) == set(ExecState)
    assert set(REPORTS) == set(Report)
    assert set(TAKEN_IN) == set(Input)
    for rule in REPORTS.values():
        assert set(rule.outcomes) == set(ExecState)


def test_the_tables_have_no_way_out_of_an_end_and_a_way_from_the_start_to_every_phase():
    for phase in TERMINAL_PHASES:
        assert PHASE_MOVES[phase] == frozenset()
    for state in ENDED_EXECUTIONS:
        assert EXEC_MOVES[state] == frozenset()
    reached, todo = {Phase.ENQUEUING_BIDS}, [Phase.ENQUEUING_BIDS]
    while todo:
        for dst in PHASE_MOVES[todo.pop()] - reached:
            reached.add(dst)
            todo.append(dst)
    assert reached == set(Phase)
    for phase in set(Phase) - TERMINAL_PHASES:
        assert {Phase.ERROR, Phase.CANCELLED} <= PHASE_MOVES[phase]


# What each report does in each execution state, as the machine has always done it (A applied, I ignored,
# R refused, ? ignored as a repeat when it carries the proposal recorded, refused otherwise). A change
# here is a change of behaviour.
GOLDEN_REPORTS = """
                      Bid Accepted Rejected Proposed ResultAccepted ResultRejected Published Failed Cancelled
results proposed      R   A        R        ?        ?              ?              ?         R      I
published             R   R        R        R        A              R              I         R      I
compute failure       A   A        I        A        A              I              R         I      I
cancel complete       A   A        I        A        A              I              I         I      I
bid-accept failed     I   A        I        I        I              I              I         I      I
result-accept failed  I   I        I        I        A              I              I         I      I
node lost             I   A        I        A        A              I              I         I      I
"""
CODES = {"A": Outcome.APPLY, "I": Outcome.IGNORE, "R": Outcome.REFUSE, "?": Outcome.REPEAT_OR_REFUSE}


def test_the_report_table_is_todays_behaviour():
    header, *rows = GOLDEN_REPORTS.strip().splitlines()
    states = [ExecState(name) for name in header.split()]
    assert set(states) == set(ExecState)
    golden = {}
    for row in rows:
        words = row.split()
        report, codes = Report(" ".join(words[: -len(states)])), words[-len(states) :]
        golden[report] = {state: CODES[code] for state, code in zip(states, codes, strict=True)}
    assert golden == {report: rule.outcomes for report, rule in REPORTS.items()}
    assert {r: (rule.to, rule.from_node, rule.when_ended) for r, rule in REPORTS.items()} == {
        Report.RESULTS_PROPOSED: (X.PROPOSED, True, Outcome.REFUSE),
        Report.PUBLISHED: (X.PUBLISHED, True, None),
        Report.COMPUTE_FAILURE: (X.FAILED, True, None),
        Report.CANCEL_COMPLETE: (X.CANCELLED, True, None),
        Report.BID_ACCEPT_FAILED: (X.FAILED, False, None),
        Report.RESULT_ACCEPT_FAILED: (X.FAILED, False, None),
        Report.NODE_LOST: (X.FAILED, False, Outcome.IGNORE),
    }


def test_the_shard_wide_tables_are_todays_behaviour():
    assert NEW_BIDS == {
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
    live = set(Phase) - TERMINAL_PHASES
    assert {
        Input.VERDICTS: {P.VERIFYING_RESULTS},
        Input.VERIFY_FAILED: {P.VERIFYING_RESULTS},
        Input.TIMEOUT: live,
        Input.CANCEL: live,
    } == TAKEN_IN


def test_report_rules_are_consistent():
    for report, rule in REPORTS.items():
        applied = {s for s, o in rule.outcomes.items() if o is Outcome.APPLY}
        assert applied, report
        for state in applied:
            assert rule.to in EXEC_MOVES[state], (report, state)
        refusing = any(o in (Outcome.REFUSE, Outcome.REPEAT_OR_REFUSE) for o in rule.outcomes.values())
        assert bool(rule.refusal) == refusing, report
        assert bool(rule.ended_refusal) == (rule.when_ended is Outcome.REFUSE), report
        assert bool(rule.what) == rule.from_node, report


# ---------------------------------------------------------------------------------------------
# Phase moves
# ---------------------------------------------------------------------------------------------


def _first_bid(concurrency: int) -> Callable[[], tuple[ShardFSM, Callable[[ShardFSM], object]]]:
    return lambda: (machine(concurrency=concurrency), lambda m: bid(m, "n1"))


# For each move that is not an ending: a machine, and the input that makes the move.
PHASE_SCENARIOS = {
    (P.ENQUEUING_BIDS, P.SELECTING_BIDS): _first_bid(1),
    (P.SELECTING_BIDS, P.WAITING_FOR_RESULTS): _first_bid(1),
    (P.SELECTING_BIDS, P.ACCEPTING_BIDS): _first_bid(2),
    (P.ACCEPTING_BIDS, P.WAITING_FOR_RESULTS): lambda: (reach(P.ACCEPTING_BIDS), lambda m: bid(m, "n2")),
    (P.WAITING_FOR_RESULTS, P.VERIFYING_RESULTS): lambda: (
        reach(P.WAITING_FOR_RESULTS),
        lambda m: m.on_run_complete("n1", "e-n1", b"p1", None, T0 + 2),
    ),
    (P.WAITING_FOR_RESULTS, P.ACCEPTING_BIDS): lambda: (
        reach(P.WAITING_FOR_RESULTS),
        lambda m: m.on_compute_failure("n1", "e-n1", "boom", T0 + 2),
    ),
    (P.VERIFYING_RESULTS, P.WAITING_TO_PUBLISH): lambda: (reach(P.VERIFYING_RESULTS), accept_all),
    (P.WAITING_TO_PUBLISH, P.COMPLETED): lambda: (
        reach(P.WAITING_TO_PUBLISH),
        lambda m: m.on_published("n1", "e-n1", None, T0 + 4),
    ),
}
ALLOWED_PHASE_MOVES = sorted((src, dst) for src, dsts in PHASE_MOVES.items() for dst in dsts)
REFUSED_PHASE_MOVES = sorted((src, dst) for src in Phase for dst in Phase if dst not in PHASE_MOVES[src])


def test_every_phase_move_but_the_endings_has_a_scenario():
    endings = {(src, dst) for src, dst in ALLOWED_PHASE_MOVES if dst in (P.ERROR, P.CANCELLED)}
    assert set(PHASE_SCENARIOS) == set(ALLOWED_PHASE_MOVES) - endings


@pytest.mark.parametrize(("src", "dst"), ALLOWED_PHASE_MOVES)
def test_an_allowed_phase_move_happens(src, dst):
    if dst == P.ERROR:
        m = reach(src)
        phases, _ = observe_moves(m)
        t = m.on_timeout(LATER)
        assert names(t)[-1] == "ERROR" and t.events()[-1].source_node_id == REQ
    elif dst == P.CANCELLED:
        m = reach(src)
        phases, _ = observe_moves(m)
        t = m.cancel("the client cancelled", T0 + 5)
        assert set(names(t)) == {"BID_CANCELLED"}
    else:
        m, step = PHASE_SCENARIOS[(src, dst)]()
        phases, _ = observe_moves(m)
        step(m)
    assert (src, dst) in phases
    assert m.phase == phases[-1][1]


@pytest.mark.parametrize(("src", "dst"), REFUSED_PHASE_MOVES)
def test_a_phase_move_not_in_the_table_raises(src, dst):
    with pytest.raises(IllegalMoveError, match=f"from phase {src} to {dst}"):
        check_phase_move(src, dst)
    m = reach(src)
    before = m.to_dict()
    with pytest.raises(IllegalMoveError):
        m._move(dst)
    assert m.to_dict() == before


# ---------------------------------------------------------------------------------------------
# Execution moves
# ---------------------------------------------------------------------------------------------


def _from(state: ExecState, step: Callable[[ShardFSM], object]):
    return lambda: (in_state(state), step)


# For each move other than to Failed (a compute failure) or Cancelled (the client cancels): a machine
# (n1's execution in the move's source state), and the input that makes the move.
EXEC_SCENARIOS = {
    (X.BID, X.ACCEPTED): lambda: (machine(), lambda m: bid(m, "n1")),
    (X.BID, X.REJECTED): _from(X.BID, lambda m: m.on_timeout(LATER)),
    (X.ACCEPTED, X.PROPOSED): _from(
        X.ACCEPTED, lambda m: m.on_run_complete("n1", "e-n1", b"p", None, T0 + 3)
    ),
    (X.PROPOSED, X.RESULT_ACCEPTED): _from(
        X.PROPOSED,
        lambda m: (m.on_run_complete("n2", "e-n2", b"p2", None, T0 + 3), accept_all(m)),
    ),
    (X.PROPOSED, X.RESULT_REJECTED): _from(
        X.PROPOSED,
        lambda m: (m.on_run_complete("n2", "e-n2", b"p2", None, T0 + 3), m.on_verified([], T0 + 4)),
    ),
    (X.RESULT_ACCEPTED, X.PUBLISHED): _from(
        X.RESULT_ACCEPTED, lambda m: m.on_published("n1", "e-n1", None, T0 + 4)
    ),
}
ALLOWED_EXEC_MOVES = sorted((src, dst) for src, dsts in EXEC_MOVES.items() for dst in dsts)
REFUSED_EXEC_MOVES = sorted(
    (src, dst) for src in ExecState for dst in ExecState if dst not in EXEC_MOVES[src]
)


def test_every_execution_move_but_failing_and_cancelling_has_a_scenario():
    others = {(src, dst) for src, dst in ALLOWED_EXEC_MOVES if dst not in (X.FAILED, X.CANCELLED)}
    assert set(EXEC_SCENARIOS) == others


@pytest.mark.parametrize(("src", "dst"), ALLOWED_EXEC_MOVES)
def test_an_allowed_execution_move_happens(src, dst):
    if dst == X.FAILED:
        m, step = in_state(src), lambda m: m.on_compute_failure("n1", "e-n1", "boom", T0 + 5)
    elif dst == X.CANCELLED:
        m, step = in_state(src), lambda m: m.cancel("the client cancelled", T0 + 5)
    else:
        m, step = EXEC_SCENARIOS[(src, dst)]()
    _, states = observe_moves(m)
    step(m)
    assert (src, dst) in states
    assert m.execution("n1").state == dst


@pytest.mark.parametrize(("src", "dst"), REFUSED_EXEC_MOVES)
def test_an_execution_move_not_in_the_table_raises(src, dst):
    with pytest.raises(IllegalMoveError, match=f"from {src} to {dst}"):
        check_exec_move(src, dst)
    m = in_state(src)
    before = m.to_dict()
    with pytest.raises(IllegalMoveError):
        m._set(m.execution("n1"), dst)
    assert m.to_dict() == before


# ---------------------------------------------------------------------------------------------
# Reports about one execution
# ---------------------------------------------------------------------------------------------

REPORT_CASES = [(report, state) for report in Report for state in ExecState]


def expected(report: Report, state: ExecState, *, ended: bool, repeated: bool) -> Outcome:
    """The table read directly: what `report` does to an execution in `state`."""
    rule = REPORTS[report]
    outcome = rule.outcomes[state]
    if outcome is Outcome.REPEAT_OR_REFUSE:
        outcome = Outcome.IGNORE if repeated else Outcome.REFUSE
    if ended and rule.when_ended is not None and outcome is not Outcome.IGNORE:
        outcome = rule.when_ended
    return outcome


def check_report(m: ShardFSM, report: Report, state: ExecState, outcome: Outcome, proposal: bytes) -> None:
    before = m.to_dict()
    phase = m.phase
    t = send(m, report, proposal=proposal)
    assert t.denied is None
    if outcome is Outcome.IGNORE:
        assert t.actions == [] and t.invalid is None
        assert m.to_dict() == before
    elif outcome is Outcome.REFUSE:
        assert names(t) == ["INVALID_REQUEST"] and len(t.actions) == 1
        (event,) = t.events()
        assert event.status == t.invalid and event.source_node_id == REQ and event.target_node_id == "n1"
        if phase in TERMINAL_PHASES and REPORTS[report].when_ended is Outcome.REFUSE:
            assert f"which has ended ({phase})" in t.invalid
        else:
            assert f" {state}" in t.invalid  # names the execution's state
        assert m.to_dict() == before
    else:
        assert t.invalid is None
        assert m.execution("n1").state == REPORTS[report].to
        first = FIRST_EVENT[report]
        if first is not None:
            assert names(t)[0] == first
        if report == Report.NODE_LOST:
            assert t.of(f.CancelExecution) == [f.CancelExecution("n1", "e-n1", "stopped heartbeating")]


@pytest.mark.parametrize(("report", "state"), REPORT_CASES)
def test_a_report_in_a_running_shard_does_what_the_table_says(report, state):
    m = in_state(state)
    check_report(m, report, state, expected(report, state, ended=False, repeated=False), b"other")


@pytest.mark.parametrize(
    ("report", "state"),
    [(r, s) for r, s in REPORT_CASES if REPORTS[r].outcomes[s] is Outcome.REPEAT_OR_REFUSE],
)
def test_a_report_repeating_what_was_recorded_is_ignored(report, state):
    m = in_state(state)
    check_report(m, report, state, expected(report, state, ended=False, repeated=True), b"p1")


@pytest.mark.parametrize(("report", "state"), [(r, s) for r, s in REPORT_CASES if s not in HELD])
@pytest.mark.parametrize("end", ["cancel", "timeout"])
def test_a_report_in_an_ended_shard_does_what_the_table_says(report, state, end):
    # An ended shard holds no execution in HELD (ending releases them all); the others keep their state.
    m = in_state(state)
    if end == "cancel":
        m.cancel("the client cancelled", T0 + 4)
    else:
        m.on_timeout(LATER)
    assert m.is_terminal and m.execution("n1").state == state
    check_report(m, report, state, expected(report, state, ended=True, repeated=False), b"other")


@pytest.mark.parametrize(("report", "state"), [(r, s) for r, s in REPORT_CASES if s in HELD])
@pytest.mark.parametrize("phase", sorted(TERMINAL_PHASES))
def test_judge_in_an_ended_shard_for_the_executions_ending_releases(report, state, phase):
    judgement = judge(report, state, phase=phase, node_id="n1", shard_id="job-1:0")
    outcome = expected(report, state, ended=True, repeated=False)
    if outcome is Outcome.IGNORE:
        assert judgement == Ignored()
    elif outcome is Outcome.APPLY:
        assert judgement == Apply(REPORTS[report].to)
    elif report == Report.RESULTS_PROPOSED:
        assert judgement == Refused(f"results received for shard job-1:0, which has ended ({phase})")
    else:
        assert isinstance(judgement, Refused) and f" {state}" in judgement.reason


@pytest.mark.parametrize(
    ("report", "node", "execution_id"),
    [
        (report, node, execution_id)
        for report in Report
        for node, execution_id in [("stranger", "e-x"), ("n1", "e-wrong")]
        # A lost node loses whichever execution it holds: there is no execution ID to mismatch.
        if not (report == Report.NODE_LOST and node == "n1")
    ],
)
def test_a_report_about_an_execution_the_node_does_not_hold(report, node, execution_id):
    m = in_state(X.ACCEPTED)
    before = m.to_dict()
    t = send(m, report, node=node, execution_id=execution_id)
    rule = REPORTS[report]
    assert t.actions == [] and t.invalid is None
    if rule.from_node:
        assert t.denied is not None and t.denied.startswith(rule.what)
    else:
        assert t.denied is None
    assert m.to_dict() == before


# ---------------------------------------------------------------------------------------------
# Shard-wide inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", list(Phase))
def test_a_first_bid_does_what_new_bids_says(phase):
    m = reach(phase)
    t = m.on_bid("zz", "e-zz", T0 + 5, rng())
    rule = NEW_BIDS[phase]
    if rule is NewBid.QUEUE:
        assert names(t) == ["BID"] and m.execution("zz").state == X.BID and m.phase == phase
    elif rule is NewBid.ACCEPT:
        assert names(t) == ["BID", "BID_ACCEPTED"] and m.execution("zz").state == X.ACCEPTED
        assert t.of(f.NotifyBidAccepted) == [f.NotifyBidAccepted("zz", "e-zz")]
    else:
        why = FULL if rule is NewBid.REJECT_FULL else f"the shard has ended ({phase})"
        assert names(t) == ["BID", "BID_REJECTED"] and t.events()[-1].status == why
        assert t.of(f.NotifyBidRejected) == [f.NotifyBidRejected("zz", "e-zz", why)]
        assert m.execution("zz").state == X.REJECTED and m.phase == phase


INPUT_STEPS: dict[Input, Callable[[ShardFSM], Transition]] = {
    Input.VERDICTS: accept_all,
    Input.VERIFY_FAILED: lambda m: m.on_verify_failed("verifier unreachable", T0 + 5),
    Input.TIMEOUT: lambda m: m.on_timeout(LATER),
    Input.CANCEL: lambda m: m.cancel("the client cancelled", T0 + 5),
}
INPUT_RESULT = {
    Input.VERDICTS: P.WAITING_TO_PUBLISH,
    Input.VERIFY_FAILED: P.ERROR,
    Input.TIMEOUT: P.ERROR,
    Input.CANCEL: P.CANCELLED,
}


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("kind", list(Input))
def test_a_shard_wide_input_is_taken_only_in_its_phases(kind, phase):
    m = reach(phase)
    before = m.to_dict()
    if kind is Input.TIMEOUT and phase in TAKEN_IN[kind]:
        # Not before the deadline.
        deadline = m.next_deadline()
        assert m.on_timeout(deadline - 0.001).actions == [] and m.to_dict() == before
    t = INPUT_STEPS[kind](m)
    if phase in TAKEN_IN[kind]:
        assert t.actions and m.phase == INPUT_RESULT[kind]
    else:
        assert t.actions == [] and t.invalid is None and m.to_dict() == before


# ---------------------------------------------------------------------------------------------
# The machine's own scenarios stay within the tables
# ---------------------------------------------------------------------------------------------


def _scenario_calls():
    """(name, call) for every test of test_shard_fsm.py, one per parameter set."""
    for name, fn in inspect.getmembers(scenarios, inspect.isfunction):
        if not name.startswith("test_") or fn.__module__ != scenarios.__name__:
            continue
        marks = [mark for mark in getattr(fn, "pytestmark", []) if mark.name == "parametrize"]
        if not marks:
            yield name, fn
            continue
        (mark,) = marks
        argnames = mark.args[0]
        argnames = [a.strip() for a in argnames.split(",")] if isinstance(argnames, str) else list(argnames)
        for values in mark.args[1]:
            values = values if len(argnames) > 1 else (values,)
            yield name, functools.partial(fn, **dict(zip(argnames, values, strict=True)))


def test_every_move_the_machine_makes_in_its_scenarios_is_in_the_tables(monkeypatch):
    phases: set[tuple[Phase, Phase]] = set()
    states: set[tuple[ExecState, ExecState]] = set()
    move, set_state = ShardState._move, ShardState._set

    def _move(self, phase):
        phases.add((self.phase, phase))
        move(self, phase)

    def _set(self, execution, state):
        states.add((execution.state, state))
        set_state(self, execution, state)

    monkeypatch.setattr(ShardState, "_move", _move)
    monkeypatch.setattr(ShardState, "_set", _set)
    ran = 0
    for _name, call in _scenario_calls():
        call()
        ran += 1
    assert ran > 20
    assert phases <= set(ALLOWED_PHASE_MOVES)
    assert states <= set(ALLOWED_EXEC_MOVES)
    # The scenarios walk the main path.
    assert (P.WAITING_TO_PUBLISH, P.COMPLETED) in phases and (X.RESULT_ACCEPTED, X.PUBLISHED) in states
