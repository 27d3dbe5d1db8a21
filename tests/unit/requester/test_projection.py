"""The event -> state projection (Bacalhau v0.3's job state rules): row keys, monotonic updates, partial
merge."""

import pytest

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.projection import ProjectionRejected, apply_event

E = pb.JobEventType
S = pb.JobStateType


def event(name, source="", target="", shard=0, **fields) -> pb.JobEvent:
    e = pb.JobEvent(
        job_id="j", event_name=name, source_node_id=source, target_node_id=target, shard_index=shard
    )
    for key, value in fields.items():
        if isinstance(value, pb.RunCommandResult | pb.VerificationResult | pb.StorageSpec):
            getattr(e, key).CopyFrom(value)
        else:
            setattr(e, key, value)
    return e


def row(state: pb.JobState, node: str, shard: int = 0) -> pb.JobShardState:
    return state.nodes[node].shards[shard]


def test_created_moves_no_row():
    state = pb.JobState()
    assert apply_event(state, event(E.JOB_EVENT_TYPE_CREATED, source="req")) is None
    assert len(state.nodes) == 0


def test_rows_are_keyed_by_target_else_source():
    state = pb.JobState()
    apply_event(state, event(E.JOB_EVENT_TYPE_BID, source="n1"))
    apply_event(state, event(E.JOB_EVENT_TYPE_BID_ACCEPTED, source="req", target="n1"))
    assert set(state.nodes) == {"n1"}
    assert row(state, "n1").state == S.JOB_STATE_TYPE_WAITING
    # Error from the requester has no target: it lands on the requester's own row.
    apply_event(state, event(E.JOB_EVENT_TYPE_ERROR, source="req", status="timed out"))
    assert row(state, "req").state == S.JOB_STATE_TYPE_ERROR
    assert row(state, "req").status == "timed out"
    assert row(state, "n1").state == S.JOB_STATE_TYPE_WAITING


def test_happy_path_states():
    state = pb.JobState()
    seen = []
    for name, source, target in [
        (E.JOB_EVENT_TYPE_BID, "n1", ""),
        (E.JOB_EVENT_TYPE_BID_ACCEPTED, "req", "n1"),
        (E.JOB_EVENT_TYPE_RESULTS_PROPOSED, "n1", ""),
        (E.JOB_EVENT_TYPE_RESULTS_ACCEPTED, "req", "n1"),
        (E.JOB_EVENT_TYPE_RESULTS_PUBLISHED, "n1", ""),
    ]:
        update = apply_event(state, event(name, source, target))
        assert update is not None and update.node_id == "n1"
        seen.append(row(state, "n1").state)
    assert seen == [
        S.JOB_STATE_TYPE_BIDDING,
        S.JOB_STATE_TYPE_WAITING,
        S.JOB_STATE_TYPE_VERIFYING,
        S.JOB_STATE_TYPE_VERIFYING,
        S.JOB_STATE_TYPE_COMPLETED,
    ]
    assert row(state, "n1").node_id == "n1" and row(state, "n1").shard_index == 0


def test_monotonic_rejects_going_back_with_a_clear_message():
    state = pb.JobState()
    apply_event(state, event(E.JOB_EVENT_TYPE_BID, source="n1"))
    apply_event(state, event(E.JOB_EVENT_TYPE_RESULTS_PUBLISHED, source="n1"))
    with pytest.raises(ProjectionRejected) as caught:
        apply_event(state, event(E.JOB_EVENT_TYPE_BID_ACCEPTED, source="req", target="n1", status="late"))
    assert "cannot update shard state to Waiting as current state is Completed" in str(caught.value)
    assert caught.value.node_id == "n1"
    assert row(state, "n1").state == S.JOB_STATE_TYPE_COMPLETED
    assert row(state, "n1").status == ""  # the rejected event changed nothing


def test_equal_state_is_allowed():
    state = pb.JobState()
    apply_event(state, event(E.JOB_EVENT_TYPE_RESULTS_PROPOSED, source="n1", status="first"))
    apply_event(state, event(E.JOB_EVENT_TYPE_RESULTS_ACCEPTED, target="n1"))
    assert row(state, "n1").state == S.JOB_STATE_TYPE_VERIFYING
    assert row(state, "n1").status == "first"


def test_shards_are_separate_rows():
    state = pb.JobState()
    apply_event(state, event(E.JOB_EVENT_TYPE_RESULTS_PUBLISHED, source="n1", shard=0))
    apply_event(state, event(E.JOB_EVENT_TYPE_BID, source="n1", shard=1))
    assert row(state, "n1", 0).state == S.JOB_STATE_TYPE_COMPLETED
    assert row(state, "n1", 1).state == S.JOB_STATE_TYPE_BIDDING


def test_partial_merge_keeps_values_the_update_lacks():
    state = pb.JobState()
    output = pb.RunCommandResult(stdout="hello", exit_code=3)
    apply_event(
        state,
        event(
            E.JOB_EVENT_TYPE_RESULTS_PROPOSED,
            source="n1",
            status="ran",
            verification_proposal=b"abc",
            run_output=output,
        ),
    )
    # No status, no output, no proposal, an incomplete verification result: all kept.
    apply_event(
        state,
        event(
            E.JOB_EVENT_TYPE_RESULTS_ACCEPTED,
            target="n1",
            verification_result=pb.VerificationResult(result=True),
        ),
    )
    r = row(state, "n1")
    assert r.status == "ran"
    assert r.verification_proposal == b"abc"
    assert r.run_output.stdout == "hello" and r.run_output.exit_code == 3
    assert not r.HasField("verification_result")
    # A complete verification result is taken.
    apply_event(
        state,
        event(
            E.JOB_EVENT_TYPE_RESULTS_ACCEPTED,
            target="n1",
            status="verified",
            verification_result=pb.VerificationResult(complete=True, result=True),
        ),
    )
    assert r.verification_result.complete and r.verification_result.result
    assert r.status == "verified"


def test_published_result_needs_a_valid_storage_source():
    state = pb.JobState()
    noop = pb.StorageSpec(name="noop", metadata={"publisher": "Noop"})
    apply_event(state, event(E.JOB_EVENT_TYPE_RESULTS_PUBLISHED, source="n1", published_result=noop))
    assert not row(state, "n1").HasField("published_result")
    ipfs = pb.StorageSpec(storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS, cid="Qm1")
    apply_event(state, event(E.JOB_EVENT_TYPE_RESULTS_PUBLISHED, source="n1", published_result=ipfs))
    assert row(state, "n1").published_result.cid == "Qm1"
