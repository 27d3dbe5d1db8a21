"""Fair share against real gRPC servers: per-client limits on jobs in progress and on
followers (RESOURCE_EXHAUSTED at once, with a RetryInfo hint), and the server-wide cap on concurrent RPCs
(gRPC itself answers RESOURCE_EXHAUSTED)."""

import asyncio

import grpc
import pytest

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.errors import ResourceExhaustedError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.requester.domain.fair_share import RETRY_AFTER
from tests.integration.network import REQUESTER_SERVICE, Network, noop_job, of_type

E = pb.JobEventType


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    yield net
    await net.stop()


def unbiddable():
    """A job the network's node declines (it needs more CPU than the node allows a job): it waits for bids."""
    job = noop_job()
    job.spec.resources.cpu = "2"
    return job


async def first_message(stream):
    """Reads the stream's first message (the call is then surely being served) and keeps it open."""
    return await asyncio.wait_for(anext(aiter(stream)), 10)


async def test_a_flooding_client_is_refused_at_once_and_cannot_keep_others_out(network):
    await network.start(
        compute=[{"limit_total_cpu": "2", "limit_job_cpu": "1"}],
        max_active_jobs=3,
        max_active_jobs_per_client=2,
    )
    flood = [await network.submit(unbiddable(), "flooder") for _ in range(2)]
    with pytest.raises(ResourceExhaustedError, match=r"client .* has 2 jobs in progress") as raised:
        await asyncio.wait_for(network.submit(unbiddable(), "flooder"), 5)
    assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert raised.value.retry_after == RETRY_AFTER
    # Another client's job is accepted and completes.
    job = await network.submit(noop_job(), "other")
    events = await network.wait_for_end(job.id)
    assert of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)
    # A flooder's job ending frees its place.
    await network.cancel(flood[0].id, "flooder")
    await network.wait_for_end(flood[0].id)
    again = await asyncio.wait_for(network.submit(unbiddable(), "flooder"), 5)
    assert again.client_id == flood[0].client_id
    with pytest.raises(ResourceExhaustedError):
        await asyncio.wait_for(network.submit(unbiddable(), "flooder"), 5)


async def test_followers_per_client(network):
    await network.start(nodes=0, max_followers_per_client=1)
    job = await network.submit(noop_job())  # no node: it waits for bids
    held = network.stub.WatchJobEvents(rpb.WatchJobEventsRequest(job_id=job.id))
    await first_message(held)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await first_message(network.stub.WatchJobEvents(rpb.WatchJobEventsRequest(job_id=job.id)))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "anonymous has 1 streams following jobs" in raised.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await first_message(network.stub.StreamJobLogs(rpb.StreamJobLogsRequest(job_id=job.id, follow=True)))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # A signed caller has a bucket of its own.
    request = rpb.WatchJobEventsRequest(job_id=job.id)
    metadata = network.client("watcher").call_metadata(f"/{REQUESTER_SERVICE}/WatchJobEvents", request)
    signed = network.stub.WatchJobEvents(request, metadata=metadata)
    await first_message(signed)
    signed.cancel()
    # The anonymous follower leaving frees its place.
    held.cancel()
    domain = network.requester.requester
    await network.wait_until(lambda: domain.client_followers(None) == 0, what="the follower left")
    again = network.stub.WatchJobEvents(rpb.WatchJobEventsRequest(job_id=job.id))
    await first_message(again)
    again.cancel()


async def test_the_server_wide_rpc_cap(network):
    await network.start(nodes=0, max_concurrent_rpcs=2)
    job = await network.submit(noop_job())  # no node: it waits for bids, its watchers stay open
    held = [network.stub.WatchJobEvents(rpb.WatchJobEventsRequest(job_id=job.id)) for _ in range(2)]
    for stream in held:
        await first_message(stream)
    with pytest.raises(ResourceExhaustedError):
        await channels.call(network.stub.GetJob, rpb.GetJobRequest(job_id=job.id))
    for stream in held:
        stream.cancel()

    async def served():
        try:
            await channels.call(network.stub.GetJob, rpb.GetJobRequest(job_id=job.id))
        except ResourceExhaustedError:
            return False
        return True

    await network.wait_until(served, what="the cap freed")
