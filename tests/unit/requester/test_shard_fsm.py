"""The shard state machine, driven with explicit times (no sleeping, no I/O)."""

import json
import random

import pytest

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain import shard_fsm as f
from bacalhau_grpc.requester.domain.shard_fsm import ExecState, Phase, ShardFSM, Verdict

E = pb.JobEventType
L = pb.JobLocalEventType
T0 = 1_700_000_000.0
REQ = "requester-1"


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


def names(transition) -> list[str]:
    return [pb.JobEventType.Name(e.event_name).removeprefix("JOB_EVENT_TYPE_") for e in transition.events()]


def rng(seed=7) -> random.Random:
    return random.Random(seed)


def bid(m: ShardFSM, node: str, now=T0 + 1, seed=7):
    return m.on_bid(node, f"e-{node}", now, rng(seed))


def test_happy_path_concurrency_one():
    m = machine()
    offered = m.offer(["n1"])
    assert offered.actions == [f.AskForBid("n1")]
    assert m.offer(["n1"]).actions == []  # asked once only
    t = bid(m, "n1")
    assert names(t) == ["BID", "BID_ACCEPTED"]
    assert t.of(f.NotifyBidAccepted) == [f.NotifyBidAccepted("n1", "e-n1")]
    assert [a.event.event_name for a in t.of(f.RecordLocalEvent)] == [L.JOB_LOCAL_EVENT_TYPE_BID_ACCEPTED]
    assert m.phase == Phase.WAITING_FOR_RESULTS
    assert m.execution_deadline == T0 + 1 + 60.0
    output = pb.RunCommandResult(stdout="hi", exit_code=0)
    t = m.on_run_complete("n1", "e-n1", b"", output, T0 + 2)
    assert names(t) == ["RESULTS_PROPOSED"]
    assert t.events()[0].run_output.stdout == "hi"
    assert m.phase == Phase.VERIFYING_RESULTS
    (verify,) = t.of(f.Verify)
    assert verify.proposals == (f.ProposalData("n1", "e-n1", b"", output),)
    t = m.on_verified([Verdict("e-n1", "n1", True)], T0 + 3)
    assert names(t) == ["RESULTS_ACCEPTED"]
    accepted = t.events()[0]
    assert accepted.target_node_id == "n1" and accepted.source_node_id == REQ
    assert accepted.verification_result.complete and accepted.verification_result.result
    assert t.of(f.NotifyResultAccepted) == [f.NotifyResultAccepted("n1", "e-n1")]
    assert [a.event.event_name for a in t.of(f.RecordLocalEvent)] == [L.JOB_LOCAL_EVENT_TYPE_VERIFIED]
    assert m.phase == Phase.WAITING_TO_PUBLISH
    spec = pb.StorageSpec(name="noop", metadata={"publisher": "Noop"})
    t = m.on_published("n1", "e-n1", spec, T0 + 4)
    assert names(t) == ["RESULTS_PUBLISHED"]
    assert t.events()[0].published_result.name == "noop"
    assert m.phase == Phase.COMPLETED and m.is_terminal
    assert m.next_deadline() is None


def test_every_event_is_stamped():
    m = machine()
    m.offer(["n1"])
    (event, _accepted) = bid(m, "n1", now=T0 + 1.5).events()
    assert event.api_version == "V1beta1"
    assert event.job_id == "job-1" and event.client_id == "client-1"
    assert event.event_time.ToMicroseconds() == 1_700_000_001_500_000
    assert event.source_node_id == "n1"


def test_min_bids_waits_then_picks_at_random_with_the_seeded_rng():
    m = machine(concurrency=2, min_bids=3)
    m.offer(["a", "b", "c", "d"])
    assert names(bid(m, "a")) == ["BID"]
    assert names(bid(m, "b")) == ["BID"]
    assert m.phase == Phase.ENQUEUING_BIDS and len(m.bids) == 2
    t = m.on_bid("c", "e-c", T0 + 2, rng(11))
    # The same shuffle the machine did, replayed with the same seed.
    expected = ["a", "b", "c"]
    random.Random(11).shuffle(expected)
    assert [a.node_id for a in t.of(f.NotifyBidAccepted)] == expected[:2]
    assert [a.node_id for a in t.of(f.NotifyBidRejected)] == expected[2:]
    assert names(t) == ["BID", "BID_ACCEPTED", "BID_ACCEPTED", "BID_REJECTED"]
    assert t.events()[-1].status == "the shard has all the nodes it needs"
    assert m.phase == Phase.WAITING_FOR_RESULTS
    # A bid after the shard is full is rejected.
    t = bid(m, "d")
    assert names(t) == ["BID", "BID_REJECTED"]
    assert t.of(f.NotifyBidRejected) == [
        f.NotifyBidRejected("d", "e-d", "the shard has all the nodes it needs")
    ]


def test_different_seeds_can_pick_differently():
    picks = set()
    for seed in range(20):
        m = machine(concurrency=1, min_bids=3)
        bid(m, "a")
        bid(m, "b")
        t = m.on_bid("c", "e-c", T0, rng(seed))
        picks.add(t.of(f.NotifyBidAccepted)[0].node_id)
    assert picks == {"a", "b", "c"}


def test_later_bids_fill_open_slots_first_come_first_served():
    m = machine(concurrency=2, min_bids=1)
    t = bid(m, "a")
    assert names(t) == ["BID", "BID_ACCEPTED"]
    assert m.phase == Phase.ACCEPTING_BIDS
    t = bid(m, "b")
    assert names(t) == ["BID", "BID_ACCEPTED"]
    assert m.phase == Phase.WAITING_FOR_RESULTS
    assert [e.node_id for e in m.accepted] == ["a", "b"]


def test_refused_and_failed_asks_carry_their_reason():
    m = machine()
    m.offer(["n1", "n2"])
    (refused,) = m.on_bid_declined("n1", "not enough capacity available", T0).events()
    assert refused.event_name == E.JOB_EVENT_TYPE_BID_CANCELLED
    assert refused.source_node_id == refused.target_node_id == "n1"
    assert refused.status == "declined to bid: not enough capacity available"
    (failed,) = m.on_ask_failed("n2", "connection refused", T0).events()
    assert failed.status == "could not ask for a bid: connection refused"
    assert m.phase == Phase.ENQUEUING_BIDS


def test_a_duplicate_bid_is_ignored_and_a_second_execution_released():
    m = machine(concurrency=2, min_bids=2)
    bid(m, "a")
    assert bid(m, "a").actions == []
    t = m.on_bid("a", "e-other", T0, rng())
    assert t.events() == []
    assert t.of(f.NotifyBidRejected) == [
        f.NotifyBidRejected("a", "e-other", "the node has already bid on this shard")
    ]
    assert len(m.bids) == 1


def _running(concurrency=1, nodes=("n1",)) -> ShardFSM:
    m = machine(concurrency=concurrency, min_bids=len(nodes))
    for node in nodes:
        bid(m, node)
    assert m.phase == Phase.WAITING_FOR_RESULTS
    return m


def test_verification_all_accepted():
    m = _running(2, ("a", "b"))
    m.on_run_complete("a", "e-a", b"h1", None, T0)
    assert m.phase == Phase.WAITING_FOR_RESULTS  # waits for every accepted execution
    t = m.on_run_complete("b", "e-b", b"h1", None, T0)
    assert len(t.of(f.Verify)[0].proposals) == 2
    t = m.on_verified([Verdict("e-a", "a", True), Verdict("e-b", "b", True)], T0)
    assert names(t) == ["RESULTS_ACCEPTED", "RESULTS_ACCEPTED"]
    assert m.phase == Phase.WAITING_TO_PUBLISH
    m.on_published("a", "e-a", None, T0)
    assert m.phase == Phase.WAITING_TO_PUBLISH  # b has not published yet
    m.on_published("b", "e-b", None, T0)
    assert m.phase == Phase.COMPLETED


def test_verification_mixed_outcome():
    m = _running(3, ("a", "b", "c"))
    for node, proposal in (("a", b"x"), ("b", b"x"), ("c", b"bad")):
        m.on_run_complete(node, f"e-{node}", proposal, None, T0)
    t = m.on_verified(
        [Verdict("e-a", "a", True), Verdict("e-b", "b", True), Verdict("e-c", "c", False, "minority result")],
        T0,
    )
    assert names(t) == ["RESULTS_ACCEPTED", "RESULTS_ACCEPTED", "RESULTS_REJECTED"]
    rejected = t.events()[2]
    assert rejected.target_node_id == "c" and rejected.status == "minority result"
    assert rejected.verification_result.complete and not rejected.verification_result.result
    assert t.of(f.NotifyResultRejected) == [f.NotifyResultRejected("c", "e-c", "minority result")]
    assert m.phase == Phase.WAITING_TO_PUBLISH
    assert m.execution("c").state == ExecState.RESULT_REJECTED
    # Only accepted executions may publish.
    t = m.on_published("c", "e-c", None, T0)
    assert t.invalid and "were not accepted" in t.invalid
    assert names(t) == ["INVALID_REQUEST"]


def test_verification_with_nothing_accepted_fails_the_shard_with_the_reason():
    m = _running(2, ("a", "b"))
    m.on_run_complete("a", "e-a", b"x", None, T0)
    m.on_run_complete("b", "e-b", b"y", None, T0)
    t = m.on_verified([Verdict("e-a", "a", False, "tie"), Verdict("e-b", "b", False, "tie")], T0 + 5)
    assert names(t) == ["RESULTS_REJECTED", "RESULTS_REJECTED", "ERROR"]
    assert m.phase == Phase.ERROR
    assert t.events()[-1].status == "verification failed: no result was accepted (tie)"
    assert t.events()[-1].source_node_id == REQ
    assert t.of(f.CancelExecution) == []  # rejected executions hold nothing


def test_a_missing_verdict_counts_as_rejected():
    m = _running()
    m.on_run_complete("n1", "e-n1", b"", None, T0)
    t = m.on_verified([], T0)
    assert t.events()[0].status == "the verifier gave no verdict"
    assert m.phase == Phase.ERROR


def test_verifier_failure_fails_the_shard():
    m = _running()
    m.on_run_complete("n1", "e-n1", b"", None, T0)
    t = m.on_verify_failed("verifier unreachable", T0)
    assert names(t) == ["ERROR", "ERROR"]  # the node's row, then the requester's (the shard's last)
    assert [e.target_node_id for e in t.events()] == ["n1", ""]
    assert m.status == "failed to verify job: verifier unreachable"
    assert t.of(f.CancelExecution) == [
        f.CancelExecution("n1", "e-n1", "shard failed: failed to verify job: verifier unreachable")
    ]
    # Verdicts arriving afterwards change nothing.
    assert m.on_verified([Verdict("e-n1", "n1", True)], T0).actions == []


@pytest.mark.parametrize(
    ("node", "execution", "words"),
    [
        ("stranger", "e-x", "from node stranger, which holds no execution of shard job-1:0"),
        ("n1", "e-wrong", "for execution e-wrong, which node n1 does not hold for shard job-1:0"),
    ],
)
def test_reports_from_a_node_that_does_not_hold_the_execution_are_denied_and_leave_nothing(
    node, execution, words
):
    m = _running()
    before = m.to_dict()
    for t in (
        m.on_run_complete(node, execution, b"", None, T0),
        m.on_published(node, execution, None, T0),
        m.on_compute_failure(node, execution, "oops", T0),
        m.on_cancel_complete(node, execution, T0),
    ):
        assert t.denied is not None and words in t.denied
        assert t.actions == [] and t.invalid is None
    assert m.to_dict() == before


def test_repeated_results_are_the_same_report_but_other_results_are_invalid():
    m = _running()
    m.on_run_complete("n1", "e-n1", b"aa", None, T0)
    repeated = m.on_run_complete("n1", "e-n1", b"aa", None, T0)  # the node retried a call it saw fail
    assert repeated.actions == [] and repeated.invalid is None
    assert "is Proposed, not running" in m.on_run_complete("n1", "e-n1", b"bb", None, T0).invalid
    m.on_verify_failed("boom", T0)
    # The shard ended and released the execution: a late report is no news (its row stays ended).
    late = m.on_run_complete("n1", "e-n1", b"bb", None, T0)
    assert late.actions == [] and late.invalid is None


def test_compute_failure_while_running_reopens_the_slot_and_keeps_the_deadline():
    m = _running(2, ("a", "b"))
    deadline = m.execution_deadline
    t = m.on_compute_failure("a", "e-a", "exec format error", T0 + 3)
    assert names(t) == ["COMPUTE_ERROR"]
    assert t.events()[0].source_node_id == "a" and t.events()[0].status == "exec format error"
    assert t.of(f.CancelExecution) == []  # b keeps running
    assert m.phase == Phase.ACCEPTING_BIDS and m.is_replacing and m.replaced == ["a"]
    assert m.next_deadline() == deadline  # the job's timeout, not the negotiation deadline
    # The failed node is never asked again; another live node is.
    assert m.refill(["a", "b", "c"], T0 + 3, rng()).actions == [f.AskForBid("c")]
    t = bid(m, "c", now=T0 + 4)
    assert names(t) == ["BID", "BID_ACCEPTED"]
    assert t.of(f.NotifyBidAccepted) == [f.NotifyBidAccepted("c", "e-c")]
    assert m.phase == Phase.WAITING_FOR_RESULTS and m.execution_deadline == deadline
    m.on_run_complete("b", "e-b", b"h", None, T0 + 5)
    t = m.on_run_complete("c", "e-c", b"h", None, T0 + 6)
    assert {p.node_id for p in t.of(f.Verify)[0].proposals} == {"b", "c"}
    # The cancelled node reporting its own failure later is no news.
    assert m.on_compute_failure("a", "e-a", "cancelled", T0 + 7).actions == []


def test_replacement_with_no_candidate_left_fails_the_shard_and_says_why():
    m = _running(2, ("a", "b"))
    m.on_compute_failure("a", "e-a", "disk full", T0 + 3)
    t = m.refill(["a", "b"], T0 + 3, rng())
    assert names(t) == ["ERROR", "ERROR"]
    assert t.events()[0].target_node_id == "b" and t.events()[0].status == f"shard failed: {m.status}"
    assert m.phase == Phase.ERROR
    assert m.status == "no node left to replace node a (failed: disk full)"
    assert t.of(f.CancelExecution) == [f.CancelExecution("b", "e-b", f"shard failed: {m.status}")]


def test_replacement_waits_for_an_answer_then_fails_when_the_candidate_declines():
    m = _running(1, ("a",))
    m.on_compute_failure("a", "e-a", "oom", T0 + 3)
    assert m.refill(["a", "b"], T0 + 3, rng()).actions == [f.AskForBid("b")]
    assert m.refill(["a", "b"], T0 + 3, rng()).actions == []  # b's answer is awaited
    m.on_bid_declined("b", "busy", T0 + 4)
    t = m.refill(["a", "b"], T0 + 4, rng())
    assert names(t) == ["ERROR"] and m.status == "no node left to replace node a (failed: oom)"


def test_a_busy_node_is_left_out_until_offered_again_and_then_asked_once_more():
    m = machine()
    assert m.offer(["n1"]).actions == [f.AskForBid("n1")]
    (refused,) = m.on_bid_declined("n1", "not enough capacity available", T0, busy=True).events()
    assert (
        refused.status
        == "declined to bid: not enough capacity available (busy: asked again once it has room)"
    )
    assert m.busy == ["n1"] and m.asked == [] and m.declined == []
    assert m.offer(["n1"]).actions == []  # not until its heartbeat says it has room
    assert m.offer_again("n1", rng()).actions == [f.AskForBid("n1")]
    assert m.busy == [] and m.asked == ["n1"]
    m.on_bid_declined("n1", "executor Docker not installed", T0 + 1)  # a lasting refusal: never again
    assert m.offer_again("n1", rng()).actions == [] and m.declined == ["n1"]


def test_replacement_waits_for_a_busy_node_instead_of_failing():
    m = _running(1, ("a",))
    m.on_compute_failure("a", "e-a", "oom", T0 + 3)
    m.refill(["a", "b"], T0 + 3, rng())
    m.on_bid_declined("b", "not enough capacity available", T0 + 4, busy=True)
    assert m.refill(["a", "b"], T0 + 4, rng()).actions == [] and m.phase == Phase.ACCEPTING_BIDS
    assert ShardFSM.from_dict(json.loads(json.dumps(m.to_dict()))).busy == ["b"]
    assert m.offer_again("b", rng()).actions == [f.AskForBid("b")]


def test_replacement_times_out_at_the_job_deadline():
    m = _running(1, ("a",))
    deadline = m.execution_deadline
    m.on_compute_failure("a", "e-a", "oom", T0 + 3)
    m.refill(["b"], T0 + 3, rng())
    assert m.on_timeout(deadline - 0.001).actions == []
    t = m.on_timeout(deadline)
    assert names(t)[-1] == "ERROR"
    assert m.status == "shard timed out while in state AcceptingBids, see --timeout"


def test_a_node_that_stops_heartbeating_is_replaced():
    m = _running(1, ("a",))
    t = m.on_node_lost("a", "node a stopped sending heartbeats", T0 + 3)
    assert names(t) == ["COMPUTE_ERROR"]
    assert t.events()[0].source_node_id == "a"
    assert t.of(f.CancelExecution) == [f.CancelExecution("a", "e-a", "node a stopped sending heartbeats")]
    assert m.phase == Phase.ACCEPTING_BIDS and m.replaced == ["a"]
    assert m.on_node_lost("a", "again", T0 + 4).actions == []  # already lost
    assert m.on_node_lost("zz", "never bid", T0 + 4).actions == []


def test_replacement_fields_survive_a_reload():
    m = _running(1, ("a",))
    m.on_compute_failure("a", "e-a", "oom", T0 + 3)
    m.refill(["b"], T0 + 3, rng())
    again = ShardFSM.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m and again.replaced == ["a"] and again.is_replacing


def test_compute_failure_while_accepting_bids_reopens_the_slot():
    m = machine(concurrency=2, min_bids=1)
    bid(m, "a")
    assert m.phase == Phase.ACCEPTING_BIDS
    t = m.on_compute_failure("a", "e-a", "disk full", T0)
    assert names(t) == ["COMPUTE_ERROR"]
    assert m.phase == Phase.ACCEPTING_BIDS and m.accepted == []
    bid(m, "b")
    bid(m, "c")
    assert m.phase == Phase.WAITING_FOR_RESULTS
    assert [e.node_id for e in m.accepted] == ["b", "c"]


def test_publish_failure_of_the_only_accepted_result_fails_the_shard():
    m = _running()
    m.on_run_complete("n1", "e-n1", b"", None, T0)
    m.on_verified([Verdict("e-n1", "n1", True)], T0)
    t = m.on_compute_failure("n1", "e-n1", "ipfs down", T0)
    assert names(t) == ["COMPUTE_ERROR", "ERROR"]
    assert m.status == "no accepted result could be published (ipfs down)"


def test_bid_accept_notification_failure_is_recorded():
    m = machine(concurrency=2, min_bids=1)
    bid(m, "a")
    t = m.on_bid_accept_failed("a", "e-a", "unavailable", T0)
    assert names(t) == ["BID_CANCELLED"]
    assert t.events()[0].status == "could not tell the node its bid was accepted: unavailable"
    assert m.phase == Phase.ACCEPTING_BIDS
    m2 = _running()
    t = m2.on_bid_accept_failed("n1", "e-n1", "unavailable", T0)
    assert names(t) == ["BID_CANCELLED"]
    assert m2.is_replacing and m2.replaced == ["n1"]
    assert names(m2.refill(["n1"], T0, rng())) == ["ERROR"]
    assert m2.status == (
        "no node left to replace node n1 (failed: could not tell the node its bid was accepted: unavailable)"
    )


def test_result_accept_notification_failure():
    m = _running()
    m.on_run_complete("n1", "e-n1", b"", None, T0)
    m.on_verified([Verdict("e-n1", "n1", True)], T0)
    t = m.on_result_accept_failed("n1", "e-n1", "deadline exceeded", T0)
    assert names(t) == ["ERROR", "ERROR"]
    assert t.events()[0].target_node_id == "n1"
    assert m.phase == Phase.ERROR


def test_negotiation_timeout_is_exact():
    m = machine(concurrency=2, min_bids=3, negotiation=120.0)
    bid(m, "a")
    assert m.next_deadline() == T0 + 120.0
    assert m.on_timeout(T0 + 119.999).actions == []
    assert m.phase == Phase.ENQUEUING_BIDS
    t = m.on_timeout(T0 + 120.0)
    assert names(t) == ["BID_REJECTED", "ERROR"]  # the Error event is the last
    error = next(e for e in t.events() if e.event_name == E.JOB_EVENT_TYPE_ERROR)
    assert error.status == "negotiation timed out: 0 of 2 bids accepted"
    assert error.source_node_id == REQ
    # The pending bidder is released.
    assert t.of(f.NotifyBidRejected)[0].node_id == "a"
    assert m.phase == Phase.ERROR and m.next_deadline() is None
    assert m.on_timeout(T0 + 500).actions == []


def test_negotiation_timeout_counts_accepted_bids():
    m = machine(concurrency=3, min_bids=1)
    bid(m, "a")
    t = m.on_timeout(T0 + 120)
    assert m.status == "negotiation timed out: 1 of 3 bids accepted"
    assert t.of(f.CancelExecution) == [f.CancelExecution("a", "e-a", f"shard failed: {m.status}")]


def test_execution_timeout_counts_from_waiting_for_results():
    m = machine(timeout=30.0)
    t_accept = T0 + 100.0  # well after creation, before the negotiation deadline
    bid(m, "n1", now=t_accept)
    assert m.next_deadline() == t_accept + 30.0
    assert m.on_timeout(t_accept + 29.0).actions == []
    t = m.on_timeout(t_accept + 30.0)
    assert names(t) == ["ERROR", "ERROR"]
    assert m.status == "shard timed out while in state WaitingForResults, see --timeout"
    # The node's row ends in Error with the reason; the requester's Error is the shard's last event.
    row, last = t.events()
    assert (row.target_node_id, row.status) == ("n1", f"shard failed: {m.status}")
    assert (last.source_node_id, last.target_node_id, last.status) == (REQ, "", m.status)
    # Reports arriving after the deadline reopen nothing.
    for late in (
        m.on_run_complete("n1", "e-n1", b"h", None, t_accept + 31),
        m.on_compute_failure("n1", "e-n1", "killed", t_accept + 31),
        m.on_published("n1", "e-n1", None, t_accept + 31),
        m.on_cancel_complete("n1", "e-n1", t_accept + 31),
    ):
        assert late.actions == [] and late.invalid is None
    assert m.phase == Phase.ERROR
    assert t.of(f.CancelExecution) == [f.CancelExecution("n1", "e-n1", f"shard failed: {m.status}")]


def test_timeout_while_publishing_names_the_state():
    m = _running()
    m.on_run_complete("n1", "e-n1", b"", None, T0)
    m.on_verified([Verdict("e-n1", "n1", True)], T0)
    m.on_timeout(m.next_deadline())
    assert m.status == "shard timed out while in state WaitingToPublish, see --timeout"


def test_state_round_trips_through_json():
    m = _running(2, ("a", "b"))
    m.offer(["z"])
    m.on_run_complete("a", "e-a", b"\x00\xffhash", pb.RunCommandResult(stdout="out", exit_code=2), T0 + 1)
    data = json.loads(json.dumps(m.to_dict()))
    again = ShardFSM.from_dict(data)
    assert again == m
    assert again.execution("a").run_output.exit_code == 2
    # The reloaded machine carries on where the first one was.
    t = again.on_run_complete("b", "e-b", b"h", None, T0 + 2)
    assert again.phase == Phase.VERIFYING_RESULTS and t.of(f.Verify)


def test_resume_redoes_an_interrupted_verification():
    m = _running()
    m.on_run_complete("n1", "e-n1", b"", None, T0)
    reloaded = ShardFSM.from_dict(m.to_dict())
    (verify,) = reloaded.resume().actions
    assert isinstance(verify, f.Verify) and verify.proposals[0].execution_id == "e-n1"
    assert machine().resume().actions == []


def test_cancel_cancels_every_held_execution_with_an_event_on_its_row():
    m = machine(concurrency=2, min_bids=3)
    bid(m, "a")
    bid(m, "b")
    bid(m, "c")  # selection: two accepted, one rejected
    m.on_run_complete(m.accepted[0].node_id, m.accepted[0].execution_id, b"", None, T0 + 2)
    held = sorted(e.node_id for e in m.accepted)
    t = m.cancel("cancelled by the client: enough", T0 + 3)
    assert m.phase == Phase.CANCELLED and m.is_terminal and m.next_deadline() is None
    assert m.status == "cancelled by the client: enough"
    assert names(t) == ["BID_CANCELLED", "BID_CANCELLED"]
    assert sorted(e.target_node_id for e in t.events()) == held
    assert {e.status for e in t.events()} == {"cancelled by the client: enough"}
    assert sorted(a.node_id for a in t.of(f.CancelExecution)) == held
    assert all(m.execution(n).state == ExecState.CANCELLED for n in held)
    assert m.cancel("again", T0 + 4).actions == []  # terminal: nothing new
    # The node's cancellation report is no news.
    node = held[0]
    assert m.on_cancel_complete(node, f"e-{node}", T0 + 5).actions == []


def test_cancel_while_bidding_cancels_the_bids_and_without_executions_marks_the_requester_row():
    m = machine(concurrency=1, min_bids=2)
    bid(m, "a")
    t = m.cancel("cancelled by the client", T0)
    assert names(t) == ["BID_CANCELLED"] and t.events()[0].target_node_id == "a"
    assert t.of(f.CancelExecution) == [f.CancelExecution("a", "e-a", "cancelled by the client")]
    empty = machine()
    t = empty.cancel("cancelled by the client", T0)
    assert names(t) == ["BID_CANCELLED"]
    assert t.events()[0].source_node_id == REQ and t.events()[0].target_node_id == ""
    assert empty.phase == Phase.CANCELLED


def test_cancel_of_an_ended_shard_does_nothing():
    m = _running()
    m.on_compute_failure("n1", "e-n1", "oom", T0)
    m.refill([], T0, rng())
    assert m.phase == Phase.ERROR
    assert m.cancel("late", T0).actions == [] and m.phase == Phase.ERROR


def test_failure_reports_for_released_executions_are_no_news():
    m = machine(concurrency=1, min_bids=2)
    bid(m, "a")
    t = bid(m, "b")
    loser = t.of(f.NotifyBidRejected)[0]
    assert m.on_compute_failure(loser.node_id, loser.execution_id, "bid rejected", T0).actions == []
    winner = m.accepted[0]
    m.on_run_complete(winner.node_id, winner.execution_id, b"", None, T0)
    m.on_verified([Verdict(winner.execution_id, winner.node_id, False, "no")], T0)
    assert m.on_compute_failure(winner.node_id, winner.execution_id, "rejected", T0).actions == []
