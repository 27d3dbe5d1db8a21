"""Failed compute nodes are replaced, and clients cancel their jobs, across real
requester, compute and verifier servers in one process."""

import argparse

import grpc
import pytest

from bacalhau_grpc.cli import query
from bacalhau_grpc.common import channels
from bacalhau_grpc.common.errors import FailedPreconditionError, NotFoundError, PermissionDeniedError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from tests.integration.network import E, Network, final_row_states, names, noop_job, of_type

S = pb.JobStateType


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    yield net
    await net.stop()


def _after(events: list[pb.JobEvent], index: int) -> list[str]:
    return names(events[index:])


async def test_a_node_that_fails_after_acceptance_is_replaced_and_not_asked_again(network):
    await network.start(compute=[{"noop_error": "disk on fire", "noop_delay": 1.0}])
    bad = network.computes[0].node_id
    job = await network.submit(noop_job(timeout=30))
    accepted = await network.wait_for_event(job.id, E.JOB_EVENT_TYPE_BID_ACCEPTED)
    assert accepted.target_node_id == bad
    good = (await network.add_compute()).node_id  # joins while the bad node is still running
    await network.wait_for_nodes(2)
    events = await network.wait_for_end(job.id)
    failure = next(i for i, e in enumerate(events) if e.event_name == E.JOB_EVENT_TYPE_COMPUTE_ERROR)
    assert events[failure].source_node_id == bad and events[failure].status == "disk on fire"
    assert _after(events, failure) == [
        "COMPUTE_ERROR",
        "BID",
        "BID_ACCEPTED",
        "RESULTS_PROPOSED",
        "RESULTS_ACCEPTED",
        "RESULTS_PUBLISHED",
    ]
    assert {e.source_node_id or e.target_node_id for e in events[failure + 1 :]} - {""} <= {
        good,
        network.requester.node_id,
    }
    assert events[failure + 2].target_node_id == good
    assert events[-1].source_node_id == good
    # The failed node bid once and was never asked again.
    assert [e.source_node_id for e in of_type(events, E.JOB_EVENT_TYPE_BID)] == [bad, good]
    info = await network.get_job(job.id)
    assert final_row_states(info) == {bad: S.JOB_STATE_TYPE_ERROR, good: S.JOB_STATE_TYPE_COMPLETED}


async def test_when_every_node_fails_the_shard_ends_in_error_saying_why(network):
    await network.start(compute=[{"noop_error": "no GPU here"}, {"noop_error": "no GPU here"}])
    job = await network.submit(noop_job(timeout=30))
    events = await network.wait_for_end(job.id)
    errors = of_type(events, E.JOB_EVENT_TYPE_COMPUTE_ERROR)
    assert sorted(e.source_node_id for e in errors) == sorted(n.node_id for n in network.computes)
    assert names(events)[-1] == "ERROR"
    last = errors[-1].source_node_id
    assert events[-1].status == f"no node left to replace node {last} (failed: no GPU here)"
    info = await network.get_job(job.id)
    assert info.job_state.nodes[network.requester.node_id].shards[0].state == S.JOB_STATE_TYPE_ERROR


async def test_a_node_that_stops_heartbeating_is_replaced(network):
    await network.start(compute=[{"noop_delay": 60.0}], heartbeat_interval=0.2, node_timeout=1.0)
    silent = network.computes[0]
    job = await network.submit(noop_job(timeout=60))
    await network.wait_for_event(job.id, E.JOB_EVENT_TYPE_BID_ACCEPTED)
    good = (await network.add_compute()).node_id
    await network.wait_for_nodes(2)
    await silent.stop(grace=0.1)  # the server is gone: no heartbeat, no report
    events = await network.wait_for_end(job.id, timeout=30)
    (error,) = of_type(events, E.JOB_EVENT_TYPE_COMPUTE_ERROR)
    assert error.source_node_id == silent.node_id
    assert "stopped sending heartbeats" in error.status
    assert names(events)[-1] == "RESULTS_PUBLISHED" and events[-1].source_node_id == good
    info = await network.get_job(job.id)
    assert final_row_states(info) == {
        silent.node_id: S.JOB_STATE_TYPE_ERROR,
        good: S.JOB_STATE_TYPE_COMPLETED,
    }


async def test_cancel_by_the_owner_stops_the_execution_on_its_node(network):
    await network.start(compute=[{"noop_delay": 60.0}])
    node = network.computes[0]
    job = await network.submit(noop_job(timeout=120), client="alice")
    await network.wait_for_event(job.id, E.JOB_EVENT_TYPE_BID_ACCEPTED)
    await network.wait_until(lambda: node.node.active_executions() == 1, what="the run started")
    cancelled = await network.cancel(job.id, client="alice", reason="wrong input")
    row = cancelled.state.nodes[node.node_id].shards[0]
    assert row.state == S.JOB_STATE_TYPE_CANCELLED
    assert row.status == "cancelled by the client: wrong input"
    events = await network.wait_for_end(job.id, timeout=10)  # the job is terminal: the watch ends
    assert names(events)[-1] == "BID_CANCELLED" and events[-1].target_node_id == node.node_id
    await network.wait_until(
        lambda: (
            node.node.debug_info()["executions"].get("Cancelled") == 1 and node.node.active_executions() == 0
        ),
        what="the node's execution cancelled",
    )
    # Cancelling again succeeds and changes nothing.
    await network.cancel(job.id, client="alice")
    assert len((await network.get_job(job.id)).job_events) == len(events)


async def test_cancel_by_another_client_is_permission_denied(network):
    await network.start(compute=[{"noop_delay": 60.0}])
    job = await network.submit(noop_job(timeout=120), client="alice")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        # the client_id field is not who is asking: an unsigned call is anonymous
        alice = network.client("alice").client_id
        await network.stub.CancelJob(rpb.CancelJobRequest(job_id=job.id, client_id=alice), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(PermissionDeniedError):
        await network.cancel(job.id, client="mallory")
    await network.cancel(job.id, client="alice")


async def test_cancel_of_a_completed_job_is_a_failed_precondition(network):
    await network.start(nodes=1)
    job = await network.submit(noop_job(), client="alice")
    await network.wait_for_end(job.id)
    with pytest.raises(FailedPreconditionError, match=r"already ended \(Completed\)"):
        await network.cancel(job.id, client="alice")
    response = await channels.call(network.stub.GetJob, rpb.GetJobRequest(job_id=job.id))
    assert S.JOB_STATE_TYPE_COMPLETED in final_row_states(response.job).values()


def _cancel_args(network: Network, *argv: str):
    parser = argparse.ArgumentParser()
    query.add_parsers(parser.add_subparsers())
    host, port = network.requester.address.rsplit(":", 1)
    return parser.parse_args(["cancel", *argv, "--api-host", host, "--api-port", port])


async def test_cli_cancel_prints_the_job_or_one_error_line(network, capsys, monkeypatch):
    await network.start(compute=[{"noop_delay": 60.0}])
    job = await network.submit(noop_job(timeout=120), client="alice")
    # the CLI cancels as the user of its key directory ($BACALHAU_DIR): first alice, then mallory
    monkeypatch.setenv("BACALHAU_DIR", str(network.client("alice").path.parent))
    args = _cancel_args(network, job.id, "--reason", "oops")
    assert await query.cmd_cancel(args) == 0
    assert capsys.readouterr().out == f"Job {job.id} cancelled\n"
    info = await network.get_job(job.id)
    assert all(s == S.JOB_STATE_TYPE_CANCELLED for s in final_row_states(info).values())
    with pytest.raises(NotFoundError, match="job no-such-job not found"):
        await query.cmd_cancel(_cancel_args(network, "no-such-job"))
    monkeypatch.setenv("BACALHAU_DIR", str(network.client("mallory").path.parent))
    with pytest.raises(PermissionDeniedError, match=r"another client"):
        await query.cmd_cancel(_cancel_args(network, job.id))
