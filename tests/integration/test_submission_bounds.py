"""Every submission is bounded, through a real requester and compute node: a huge
submission is refused at once, naming the field and the limit, while a small job goes on; a job whose
inputs would make too many shards is refused before any shard exists."""

import asyncio

import pytest

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from tests.integration.network import Network

E = pb.JobEventType


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    yield net
    await net.stop()


def noop_job() -> pb.Job:
    job = pb.Job()
    job.spec.engine = pb.Engine.ENGINE_NOOP
    job.spec.verifier = pb.Verifier.VERIFIER_NOOP
    job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
    job.deal.concurrency = 1
    return job


def url_inputs(job: pb.Job, count: int) -> pb.Job:
    job.spec.inputs.extend(
        pb.StorageSpec(
            storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD,
            url=f"http://h.example/{i}.txt",
            path="/inputs",
        )
        for i in range(count)
    )
    return job


async def test_a_huge_submission_is_refused_at_once_while_a_small_job_goes_on(network):
    await network.start(nodes=1)
    huge = url_inputs(noop_job(), 20_000)
    huge.spec.sharding.glob_pattern = "*.txt"
    small = network.submit(noop_job(), client="someone-else")
    refused = network.submit(huge, client="flooder")
    outcomes = await asyncio.gather(small, refused, return_exceptions=True)
    job, error = outcomes
    assert isinstance(error, InvalidArgumentError), error
    assert [(p.field, p.reason) for p in error.problems] == [
        (
            "Spec.inputs",
            "20000 inputs (with contexts and import modules), more than the 10000 a job may have",
        )
    ]
    events = await network.wait_for_end(job.id)
    assert events[-1].event_name == E.JOB_EVENT_TYPE_RESULTS_PUBLISHED
    assert network.requester.requester.active_jobs == 0  # the refused job left nothing behind


async def test_too_many_shards_are_refused_before_any_shard_exists(network):
    await network.start(nodes=1, max_shards_per_job=3)
    job = url_inputs(noop_job(), 4)
    job.spec.sharding.glob_pattern = "*.txt"
    job.spec.sharding.base_path = "/inputs"
    with pytest.raises(InvalidArgumentError, match="make 4 shards, more than the 3 a job may have") as raised:
        await network.submit(job)
    assert raised.value.field == "Spec.Sharding"
    jobs = await network.requester.requester.list_jobs(caller=None)
    assert jobs[0] == []
