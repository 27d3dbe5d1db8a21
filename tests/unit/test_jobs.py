"""Go's small job helpers: shard IDs, short IDs, API version, new jobs and run results."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bacalhau_grpc.common.model import enums, jobs, pb


def test_constants_are_gos():
    assert jobs.TRACER_ATTRIBUTE_NAME_NODE_ID == "nodeid"
    assert jobs.TRACER_ATTRIBUTE_NAME_JOB_ID == "jobid"
    assert jobs.SHORT_ID_LENGTH == 8


@pytest.mark.parametrize(
    ("job_id", "index", "shard_id"),
    [
        ("92d5d4ee-3765-4f78-8353-623f5f26df08", 0, "92d5d4ee-3765-4f78-8353-623f5f26df08:0"),
        ("job", 12, "job:12"),
        ("", 3, ":3"),
    ],
)
def test_shard_id_is_job_id_colon_index(job_id, index, shard_id):
    assert jobs.get_shard_id(job_id, index) == shard_id


def test_shard_index_must_be_an_integer():
    with pytest.raises(ValueError):
        jobs.get_shard_id("job", "1")  # type: ignore[arg-type]


@given(st.text(alphabet="0123456789abcdef-", max_size=40), st.integers(min_value=0, max_value=10**6))
def test_shard_id_splits_back_into_job_and_index(job_id, index):
    head, _, tail = jobs.get_shard_id(job_id, index).rpartition(":")
    assert (head, int(tail)) == (job_id, index)


@pytest.mark.parametrize(
    ("full", "short"),
    [
        ("92d5d4ee-3765-4f78-8353-623f5f26df08", "92d5d4ee"),
        ("QmXaXu9N5GNetatsvwnTfQqNtSeKAD6uCmarbh3LMRYAcF", "QmXaXu9N"),
        ("12345678", "12345678"),
        ("1234", "1234"),
        ("", ""),
    ],
)
def test_short_id_is_the_first_eight_characters(full, short):
    assert jobs.short_id(full) == short


def test_latest_api_version_is_v1beta1():
    assert jobs.api_version_latest() == "V1beta1"
    assert jobs.API_VERSION_LATEST == pb.APIVersion.API_VERSION_V1BETA1
    # Go: APIVersionLatest() is the last value of the iota list.
    assert enums.API_VERSION.types()[-1] == jobs.API_VERSION_LATEST


def test_new_job_carries_only_the_latest_api_version():
    job = jobs.new_job()
    assert job.api_version == "V1beta1"
    # Go's NewJob sets nothing else: the Deal is Go's zero value (Concurrency 0).
    assert job.deal.concurrency == 0
    assert job.id == "" and job.client_id == "" and len(job.events) == 0
    assert job.spec == pb.Spec()
    assert pb.Job(api_version="V1beta1") == job


def test_new_jobs_are_independent():
    first, second = jobs.new_job(), jobs.new_job()
    first.spec.docker.image = "ubuntu"
    assert second.spec.docker.image == ""


def test_default_job_selection_policy_is_local_and_empty():
    policy = jobs.new_default_job_selection_policy()
    assert policy.locality == pb.JobSelectionDataLocality.JOB_SELECTION_DATA_LOCALITY_LOCAL
    assert enums.JOB_SELECTION_DATA_LOCALITY.name(policy.locality) == "local"
    assert not policy.reject_stateless_jobs
    assert policy.probe_http == "" and policy.probe_exec == ""


def test_new_run_command_result_has_exit_code_minus_one_on_the_wire():
    result = jobs.new_run_command_result()
    assert result.HasField("exit_code")
    assert result.exit_code == -1
    assert result.stdout == "" and result.stderr == ""
    assert not result.stdout_truncated and not result.stderr_truncated
    decoded = pb.RunCommandResult.FromString(result.SerializeToString())
    assert jobs.run_exit_code(decoded) == -1


def test_run_exit_code_reads_an_unset_code_as_minus_one():
    assert jobs.run_exit_code(pb.RunCommandResult()) == -1


@pytest.mark.parametrize("code", [0, 1, 2, 137, 255, -1])
def test_run_exit_code_reads_a_set_code(code):
    # 0 is a real exit code, told apart from "unset" by the optional field's presence.
    result = pb.RunCommandResult.FromString(pb.RunCommandResult(exit_code=code).SerializeToString())
    assert jobs.run_exit_code(result) == code
