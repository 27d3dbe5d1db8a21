"""The verifier's rules: noop accepts everything; deterministic accepts the largest group of equal
proposals unless the outcome is void (worked cases of Bacalhau v0.3's deterministic verifier, plus
properties)."""

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2 as vpb
from bacalhau_grpc.verifier.domain import verification

HONEST = b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def job(verifier=pb.Verifier.VERIFIER_DETERMINISTIC, concurrency=1, confidence=0, shards=1) -> pb.Job:
    return pb.Job(
        id="job-1",
        spec=pb.Spec(verifier=verifier),
        deal=pb.Deal(concurrency=concurrency, confidence=confidence),
        execution_plan=pb.JobExecutionPlan(total_shards=shards),
    )


def executions(*proposals: bytes) -> list[vpb.ExecutionProposal]:
    return [
        vpb.ExecutionProposal(execution_id=f"e-{i}", node_id=f"node-{i}", verification_proposal=p)
        for i, p in enumerate(proposals)
    ]


def honest_and_bad(nodes: int, bad: int) -> list[vpb.ExecutionProposal]:
    """The last `bad` nodes are bad actors: each proposes its own hash (as compute's bad_actor does)."""
    return executions(*[HONEST] * (nodes - bad), *[f"bad-{i}".encode() for i in range(bad)])


def tally(verdicts) -> tuple[int, int]:
    accepted = sum(v.accepted for v in verdicts)
    return accepted, len(verdicts) - accepted


@pytest.mark.parametrize(
    ("nodes", "bad", "confidence", "expected", "reason"),
    [
        (1, 0, 0, (0, 1), "only one result"),
        (3, 0, 0, (3, 0), "in the largest group (3 of 3 agree)"),
        (3, 1, 0, (2, 1), "in the largest group (2 of 3 agree)"),
        (2, 1, 0, (0, 2), "tie between groups of 1"),
        (5, 2, 4, (0, 5), "largest group 3 below confidence 4"),
        (5, 2, 3, (3, 2), "in the largest group (3 of 5 agree)"),
        (4, 2, 0, (2, 2), "in the largest group (2 of 4 agree)"),
    ],
)
def test_worked_cases(nodes, bad, confidence, expected, reason):
    verdicts = verification.verify(
        job(concurrency=nodes, confidence=confidence), 0, honest_and_bad(nodes, bad)
    )
    assert tally(verdicts) == expected
    assert any(v.reason.startswith(reason) for v in verdicts), [v.reason for v in verdicts]


def test_honest_nodes_are_the_accepted_ones_and_bad_actors_learn_why():
    verdicts = verification.verify(job(concurrency=3), 0, honest_and_bad(3, 1))
    assert [(v.execution_id, v.node_id, v.accepted) for v in verdicts] == [
        ("e-0", "node-0", True),
        ("e-1", "node-1", True),
        ("e-2", "node-2", False),
    ]
    assert (
        verdicts[2].reason
        == "not in the largest group: its result is shared by 1 of 3, 2 of 3 agree on another"
    )


def test_void_outcomes_give_every_execution_the_same_reason():
    verdicts = verification.verify(job(concurrency=2), 0, honest_and_bad(2, 1))
    assert {v.reason for v in verdicts} == {"tie between groups of 1 (2 groups of 1 out of 2 results)"}
    single = verification.verify(job(), 0, executions(HONEST))
    assert single == [
        verification.Verdict("e-0", "node-0", False, "only one result: nothing to compare it with")
    ]


def test_two_colluding_bad_actors_tie_with_two_honest_nodes():
    verdicts = verification.verify(job(concurrency=4), 0, executions(HONEST, b"x", HONEST, b"x"))
    assert tally(verdicts) == (0, 4)
    assert {v.reason for v in verdicts} == {"tie between groups of 2 (2 groups of 2 out of 4 results)"}


def test_an_empty_winning_hash_is_void():
    verdicts = verification.verify(job(concurrency=3), 0, executions(b"", b"", HONEST))
    assert tally(verdicts) == (0, 3)
    assert verdicts[0].reason.startswith("empty result hash")


def test_noop_accepts_every_result_whatever_it_proposed():
    verdicts = verification.verify(
        job(pb.Verifier.VERIFIER_NOOP, concurrency=3), 0, executions(b"", b"x", HONEST)
    )
    assert tally(verdicts) == (3, 0)
    assert {v.reason for v in verdicts} == {"the noop verifier accepts every result"}
    assert tally(verification.verify(job(pb.Verifier.VERIFIER_NOOP), 0, executions(b""))) == (1, 0)


@pytest.mark.parametrize("verifier", [pb.Verifier.VERIFIER_NOOP, pb.Verifier.VERIFIER_DETERMINISTIC])
def test_an_incomplete_execution_is_not_verified(verifier):
    with pytest.raises(InvalidArgumentError) as err:
        verification.verify(job(verifier, concurrency=3), 0, executions(HONEST, HONEST))
    assert err.value.field == "executions"
    assert err.value.reason == "verifying shard job-1:0 but execution is not complete: 2 of 3 results"
    with pytest.raises(InvalidArgumentError, match="0 of 1 results"):
        verification.verify(job(verifier, concurrency=0), 0, [])


@pytest.mark.parametrize("verifier", [0, 3, 99])
def test_an_unknown_verifier_is_named(verifier):
    with pytest.raises(InvalidArgumentError) as err:
        verification.verify(job(verifier), 0, executions(HONEST))
    assert err.value.field == "Spec.Verifier"
    assert f"Verifier({verifier})" in err.value.reason
    assert "Noop, Deterministic" in err.value.reason


def test_bad_requests_name_the_field():
    with pytest.raises(InvalidArgumentError) as err:
        verification.verify(job(concurrency=2), 0, executions(HONEST, HONEST)[:1] * 2)
    assert err.value.field == "executions[1].execution_id"
    with pytest.raises(InvalidArgumentError) as err:
        verification.verify(job(), -1, executions(HONEST))
    assert err.value.field == "shard_index"
    with pytest.raises(InvalidArgumentError) as err:
        verification.verify(job(shards=2), 2, executions(HONEST))
    assert err.value.field == "shard_index"
    with pytest.raises(InvalidArgumentError) as err:
        verification.verify(job(confidence=-1), 0, executions(HONEST))
    assert err.value.field == "Deal.Confidence"


def test_proposal_formats_cover_both_verifiers():
    assert set(verification.PROPOSAL_FORMATS) == {
        pb.Verifier.VERIFIER_NOOP,
        pb.Verifier.VERIFIER_DETERMINISTIC,
    }
    assert "sha-256" in verification.PROPOSAL_FORMATS[pb.Verifier.VERIFIER_DETERMINISTIC].lower()


# --- properties --------------------------------------------------------------------------------

# A small alphabet of proposals so that groups, ties and empty hashes are all common.
proposal_lists = st.lists(st.sampled_from([b"", b"a", b"b", b"c", HONEST]), min_size=1, max_size=9)


@given(proposals=proposal_lists, confidence=st.integers(0, 9))
def test_deterministic_properties(proposals, confidence):
    confidence = min(confidence, len(proposals))
    given_executions = executions(*proposals)
    verdicts = verification.verify(
        job(concurrency=len(proposals), confidence=confidence), 0, given_executions
    )
    # one verdict per execution, in order
    assert [v.execution_id for v in verdicts] == [e.execution_id for e in given_executions]
    assert [v.node_id for v in verdicts] == [e.node_id for e in given_executions]
    assert all(v.reason for v in verdicts)

    accepted = {proposals[i] for i, v in enumerate(verdicts) if v.accepted}
    sizes = Counter(proposals)
    largest = max(sizes.values())
    void = (
        len(proposals) == 1
        or list(sizes.values()).count(largest) > 1
        or (confidence > 0 and largest < confidence)
        or sizes.most_common(1)[0][0] == b""
    )
    if void:
        assert accepted == set()
    else:
        # exactly one whole group is accepted: the unique largest one
        assert len(accepted) == 1
        (winner,) = accepted
        assert sizes[winner] == largest
        assert all(v.accepted == (p == winner) for v, p in zip(verdicts, proposals, strict=True))


@given(proposals=proposal_lists, confidence=st.integers(0, 9), data=st.data())
def test_verdicts_do_not_depend_on_the_order_of_executions(proposals, confidence, data):
    confidence = min(confidence, len(proposals))
    deal_job = job(concurrency=len(proposals), confidence=confidence)
    given_executions = executions(*proposals)
    shuffled = data.draw(st.permutations(given_executions))
    by_id = {v.execution_id: v for v in verification.verify(deal_job, 0, given_executions)}
    by_id_shuffled = {v.execution_id: v for v in verification.verify(deal_job, 0, shuffled)}
    assert by_id == by_id_shuffled


@given(proposals=proposal_lists)
def test_noop_accepts_all(proposals):
    verdicts = verification.verify(
        job(pb.Verifier.VERIFIER_NOOP, concurrency=len(proposals)), 0, executions(*proposals)
    )
    assert len(verdicts) == len(proposals)
    assert all(v.accepted for v in verdicts)
