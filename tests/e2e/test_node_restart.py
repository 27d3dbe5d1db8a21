"""A restarting compute node is not a failed node, with real processes: the node dies the moment it hears its
results were accepted (the test-only failpoint "compute-result-accepted", in that node's environment only),
before it records or publishes anything. Back on its address within a second, it is told again what it is
owed and publishes once: the job completes. Never back, it is lost after its node timeout and the shard ends
in Error naming it."""

import asyncio

from bacalhau_grpc.common import channels, failpoints
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.devstack import Devstack, Node
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc

E = pb.JobEventType
EXIT_TIMEOUT = 30.0  # for the node to hit the failpoint
JOB_TIMEOUT = 60.0
# Heartbeats every half second; a node silent for 3 s is lost.
LIVENESS = ["--heartbeat-interval=0.5", "--node-timeout=3"]


def noop_job() -> pb.Job:
    job = pb.Job(api_version="V1beta1")
    job.spec.engine = pb.Engine.ENGINE_NOOP
    job.spec.verifier = pb.Verifier.VERIFIER_NOOP
    job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
    job.deal.concurrency = 1
    return job


async def armed(stack: Devstack) -> Node:
    """The devstack's one compute node, restarted with the failpoint armed."""
    (node,) = stack.computes
    assert node.process is not None
    node.process.kill()
    await node.process.wait()
    node.env = {failpoints.ENV: "compute-result-accepted"}
    await stack.restart(node)
    return node


def ended(event: pb.JobEvent) -> bool:
    """The shard's last event: its publication, or the Error on the requester's row (no target)."""
    if event.event_name == E.JOB_EVENT_TYPE_RESULTS_PUBLISHED:
        return True
    return event.event_name == E.JOB_EVENT_TYPE_ERROR and not event.target_node_id


async def submit_and_watch(stack: Devstack) -> tuple[str, asyncio.Task[list[pb.JobEvent]]]:
    """Submit a noop job; its events, followed until the job ends, in a task."""
    channel = channels.open_channel(stack.requester_address, credentials=stack.channel_credentials())
    stub = rgrpc.RequesterServiceStub(channel)
    request = ClientKey.generate().signed_submit_request(noop_job())
    job_id = (await channels.call(stub.SubmitJob, request, timeout=20)).job.id

    async def follow() -> list[pb.JobEvent]:
        try:
            events = []
            watch = stub.WatchJobEvents(rpb.WatchJobEventsRequest(job_id=job_id), timeout=JOB_TIMEOUT)
            async for item in watch:
                events.append(item.event)
                if ended(item.event):
                    break
            return events
        finally:
            await channel.close()

    return job_id, asyncio.create_task(follow())


async def test_a_node_killed_as_its_results_were_accepted_publishes_them_once_it_is_back(tmp_path):
    async with Devstack(nodes=1, data_dir=tmp_path, requester_flags=LIVENESS) as stack:
        node = await armed(stack)
        _, watching = await submit_and_watch(stack)
        assert node.process is not None
        assert await asyncio.wait_for(node.process.wait(), EXIT_TIMEOUT) == failpoints.EXIT_CODE
        assert "failpoint compute-result-accepted" in node.current_log()
        node.env = {}
        await stack.restart(node)  # on its address, with its node ID and data dir, well within 3 s
        events = await asyncio.wait_for(watching, JOB_TIMEOUT)
    names = [e.event_name for e in events]
    assert E.JOB_EVENT_TYPE_ERROR not in names, [(E.Name(e.event_name), e.status) for e in events]
    published = [e for e in events if e.event_name == E.JOB_EVENT_TYPE_RESULTS_PUBLISHED]
    assert [e.source_node_id for e in published] == [node.node_id]  # once


async def test_a_node_that_never_comes_back_fails_the_shard_naming_it_after_its_node_timeout(tmp_path):
    async with Devstack(nodes=1, data_dir=tmp_path, requester_flags=LIVENESS) as stack:
        node = await armed(stack)
        _, watching = await submit_and_watch(stack)
        assert node.process is not None
        assert await asyncio.wait_for(node.process.wait(), EXIT_TIMEOUT) == failpoints.EXIT_CODE
        events = await asyncio.wait_for(watching, JOB_TIMEOUT)
    assert E.JOB_EVENT_TYPE_RESULTS_PUBLISHED not in [e.event_name for e in events]
    final = events[-1]
    assert final.event_name == E.JOB_EVENT_TYPE_ERROR and not final.target_node_id, final
    assert "no accepted result could be published" in final.status, final.status
    assert node.node_id in final.status, final.status
    # It waited for the node's timeout (3 s from its last heartbeat, at most 0.5 s before the results
    # were accepted) rather than give up at the first failed call.
    accepted = next(e for e in events if e.event_name == E.JOB_EVENT_TYPE_RESULTS_ACCEPTED)
    waited = final.event_time.ToNanoseconds() - accepted.event_time.ToNanoseconds()
    assert waited >= 2.5e9, waited
