"""The job lifecycle across real requester, compute and verifier servers (Bacalhau v0.3's lifecycle, with our
fixes: see "Job lifecycle and state machines" in docs/architecture.md)."""

import grpc
import pytest

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from tests.integration.network import E, Network, final_row_states, names, noop_job, of_type

DETERMINISTIC = pb.Verifier.VERIFIER_DETERMINISTIC


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    yield net
    await net.stop()


async def test_happy_path_is_the_six_events_of_bacalhau(network):
    await network.start(nodes=1)
    job = await network.submit(noop_job())
    events = await network.wait_for_end(job.id)
    assert names(events) == [
        "CREATED",
        "BID",
        "BID_ACCEPTED",
        "RESULTS_PROPOSED",
        "RESULTS_ACCEPTED",
        "RESULTS_PUBLISHED",
    ]
    node_id = network.computes[0].node_id
    assert [e.target_node_id or e.source_node_id for e in events[1:]] == [node_id] * 5
    info = await network.get_job(job.id)
    assert final_row_states(info) == {node_id: pb.JobStateType.JOB_STATE_TYPE_COMPLETED}


async def test_concurrency_three_runs_three_executions_on_three_nodes(network):
    await network.start(nodes=3)
    job = await network.submit(noop_job(concurrency=3))
    events = await network.wait_for_end(job.id)
    published = of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)
    assert sorted(e.source_node_id for e in published) == sorted(n.node_id for n in network.computes)
    results = await channels.call(network.stub.GetJobResults, rpb.GetJobResultsRequest(job_id=job.id))
    assert len(results.results) == 3


async def test_min_bids_above_the_node_count_fails_at_the_negotiation_timeout(network):
    await network.start(nodes=2, negotiation_timeout=1.0)
    job = await network.submit(noop_job(concurrency=1, min_bids=3))
    events = await network.wait_for_end(job.id)
    assert names(events).count("BID") == 2
    assert "BID_ACCEPTED" not in names(events)
    assert names(events)[-1] == "ERROR"
    assert "negotiation" in events[-1].status


@pytest.mark.parametrize(
    ("nodes", "bad", "confidence", "accepted", "rejected"),
    [
        (3, 0, 0, 3, 0),  # all agree
        (3, 1, 0, 2, 1),  # the liar is outvoted
        (2, 1, 0, 0, 2),  # a tie: nobody wins
        (5, 2, 4, 0, 5),  # the largest group (3) is below confidence 4
        (1, 0, 0, 0, 1),  # a single result proves nothing
    ],
)
async def test_deterministic_verification_matrix(network, nodes, bad, confidence, accepted, rejected):
    await network.start(nodes=nodes, bad_actors=bad)
    job = await network.submit(noop_job(concurrency=nodes, verifier=DETERMINISTIC, confidence=confidence))
    events = await network.wait_for_end(job.id)
    assert len(of_type(events, E.JOB_EVENT_TYPE_RESULTS_ACCEPTED)) == accepted
    assert len(of_type(events, E.JOB_EVENT_TYPE_RESULTS_REJECTED)) == rejected
    liars = {n.node_id for n in network.computes[nodes - bad :]}
    assert not liars & {e.target_node_id for e in of_type(events, E.JOB_EVENT_TYPE_RESULTS_ACCEPTED)}
    assert len(of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)) == accepted
    if accepted == 0:
        assert names(events)[-1] == "ERROR"


async def test_a_non_zero_exit_code_is_a_result_that_is_published(network):
    await network.start(compute=[{"noop_exit_code": 3, "noop_stdout": "partial output\n"}])
    job = await network.submit(noop_job())
    events = await network.wait_for_end(job.id)
    assert "COMPUTE_ERROR" not in names(events)
    proposed = of_type(events, E.JOB_EVENT_TYPE_RESULTS_PROPOSED)[0]
    assert proposed.run_output.exit_code == 3
    assert proposed.run_output.stdout == "partial output\n"
    assert names(events)[-1] == "RESULTS_PUBLISHED"


async def test_a_job_that_runs_past_its_timeout_ends_in_error(network):
    await network.start(compute=[{"noop_delay": 30.0}])
    job = await network.submit(noop_job(timeout=1.0))
    events = await network.wait_for_end(job.id, timeout=20.0)
    assert names(events)[-1] == "ERROR"
    assert "timed out" in events[-1].status
    assert "RESULTS_PUBLISHED" not in names(events)


async def test_a_refused_bid_carries_its_reason_and_another_node_is_asked(network):
    await network.start(compute=[{"max_job_timeout": 10.0}])
    job = await network.submit(noop_job(timeout=100.0))
    refusal = await network.wait_for_event(job.id, E.JOB_EVENT_TYPE_BID_CANCELLED)
    assert refusal.source_node_id == network.computes[0].node_id
    assert refusal.status == "declined to bid: job timeout 100s exceeds maximum allowed 10s"
    helper = await network.add_compute()
    events = await network.wait_for_end(job.id)
    assert names(events)[-1] == "RESULTS_PUBLISHED"
    assert of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)[0].source_node_id == helper.node_id


async def test_a_graceful_restart_of_the_requester_keeps_its_jobs(network):
    await network.start(nodes=1)
    job = await network.submit(noop_job())
    before = await network.wait_for_end(job.id)
    await network.requester.stop(grace=1.0)
    await network.start_requester()
    info = await network.get_job(job.id)
    assert info.job.id == job.id
    assert names(info.job_events) == names(before)
    listed = await channels.call(network.stub.ListJobs, rpb.ListJobsRequest())
    assert [j.id for j in listed.jobs] == [job.id]


async def test_unknown_job_is_not_found(network):
    await network.start(nodes=1)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await network.stub.GetJob(rpb.GetJobRequest(job_id="no-such-job"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_submissions_beyond_max_active_jobs_wait_for_a_job_to_end(network):
    await network.start(compute=[{"noop_delay": 0.5}], max_active_jobs=1)
    first = await network.submit(noop_job())
    second = await network.submit(noop_job())  # returns only once the first job has ended
    first_events = await network.wait_for_end(first.id)
    second_events = await network.wait_for_end(second.id)
    assert second_events[0].event_time.ToNanoseconds() >= first_events[-1].event_time.ToNanoseconds()
    assert names(second_events)[-1] == "RESULTS_PUBLISHED"
