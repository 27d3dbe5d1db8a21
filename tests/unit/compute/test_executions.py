"""The execution state machine: allowed moves, compare-and-set, history."""

import pytest

from bacalhau_grpc.common.errors import FailedPreconditionError, InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.executions import (
    ACTIVE_STATES,
    ALLOWED_TRANSITIONS,
    TERMINAL_STATES,
    ExecutionState,
    new_execution,
    transition,
)
from tests.unit.compute.support import make_job

S = ExecutionState
HAPPY_PATH = [
    S.BID_ACCEPTED,
    S.RUNNING,
    S.WAITING_VERIFICATION,
    S.RESULT_ACCEPTED,
    S.PUBLISHING,
    S.COMPLETED,
]


def fresh():
    return new_execution(make_job(), 0, pb.ResourceUsageData(cpu=0.1))


def test_states_are_numbered_as_v03_with_go_labels():
    assert [int(s) for s in S] == list(range(1, 10))
    assert [s.label for s in S] == [
        "Created",
        "BidAccepted",
        "Running",
        "WaitingVerification",
        "ResultAccepted",
        "Publishing",
        "Completed",
        "Failed",
        "Cancelled",
    ]
    assert {S.COMPLETED, S.FAILED, S.CANCELLED} == TERMINAL_STATES
    assert set(S) - TERMINAL_STATES == ACTIVE_STATES


def test_new_execution_is_created_with_an_e_uuid_id_and_a_history():
    execution = fresh()
    assert execution.id.startswith("e-") and len(execution.id) == 38
    assert execution.state == S.CREATED and execution.version == 1
    assert execution.is_active and not execution.is_terminal
    assert execution.shard_id == f"{execution.job_id}:0"
    assert execution.requester_node_id == "requester-0123456789ab"
    assert [(t.from_state, t.to_state) for t in execution.history] == [(None, S.CREATED)]
    assert fresh().id != execution.id


def test_new_execution_needs_a_job_id_and_a_shard_index_of_zero_or_more():
    with pytest.raises(InvalidArgumentError) as error:
        new_execution(pb.Job(), 0, pb.ResourceUsageData())
    assert error.value.field == "job.id"
    with pytest.raises(InvalidArgumentError) as error:
        new_execution(make_job(), -1, pb.ResourceUsageData())
    assert error.value.field == "shard_index"


def test_the_happy_path_bumps_the_version_and_records_every_step():
    execution = fresh()
    for step in HAPPY_PATH:
        transition(execution, step, expected=execution.state)
    assert execution.state == S.COMPLETED and execution.is_terminal
    assert execution.version == 1 + len(HAPPY_PATH)
    assert [t.to_state for t in execution.history] == [S.CREATED, *HAPPY_PATH]
    assert [t.version for t in execution.history] == list(range(1, len(HAPPY_PATH) + 2))
    assert all(a.at <= b.at for a, b in zip(execution.history, execution.history[1:], strict=False))


@pytest.mark.parametrize("state", sorted(ACTIVE_STATES))
@pytest.mark.parametrize("end", [S.FAILED, S.CANCELLED])
def test_every_active_state_can_fail_or_be_cancelled(state, end):
    assert end in ALLOWED_TRANSITIONS[state]


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_terminal_states_never_move(state):
    assert ALLOWED_TRANSITIONS[state] == frozenset()


def test_a_skipped_step_is_refused_and_changes_nothing():
    execution = fresh()
    with pytest.raises(FailedPreconditionError, match="cannot move from Created to Running"):
        transition(execution, S.RUNNING, expected=S.CREATED)
    assert execution.state == S.CREATED and execution.version == 1 and len(execution.history) == 1


def test_compare_and_set_on_the_state():
    execution = fresh()
    with pytest.raises(FailedPreconditionError, match="is Created, expected BidAccepted"):
        transition(execution, S.RUNNING, expected=S.BID_ACCEPTED)
    transition(execution, S.BID_ACCEPTED, expected=[S.CREATED, S.BID_ACCEPTED])
    assert execution.state == S.BID_ACCEPTED


def test_compare_and_set_on_the_version():
    execution = fresh()
    with pytest.raises(FailedPreconditionError, match="at version 1, expected 7"):
        transition(execution, S.BID_ACCEPTED, expected=S.CREATED, expected_version=7)
    transition(execution, S.BID_ACCEPTED, expected=S.CREATED, expected_version=1)
    assert execution.version == 2


def test_changes_and_reasons_are_applied():
    execution = fresh()
    transition(execution, S.BID_ACCEPTED, expected=S.CREATED)
    transition(execution, S.RUNNING, expected=S.BID_ACCEPTED)
    output = pb.RunCommandResult(stdout="hi", exit_code=0)
    transition(execution, S.WAITING_VERIFICATION, expected=S.RUNNING, run_output=output, proposal=b"abc")
    assert execution.run_output.stdout == "hi" and execution.proposal == b"abc"
    transition(execution, S.FAILED, expected=S.WAITING_VERIFICATION, reason="results rejected: tie")
    assert execution.status == "results rejected: tie"
    assert execution.history[-1].reason == "results rejected: tie"


def test_identity_fields_cannot_be_changed():
    execution = fresh()
    with pytest.raises(TypeError, match="shard_index"):
        transition(execution, S.BID_ACCEPTED, expected=S.CREATED, shard_index=3)
