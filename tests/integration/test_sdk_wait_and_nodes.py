"""The SDK's `wait` and node calls against a real network (requester, verifier and compute nodes as gRPC
servers on 127.0.0.1:0): waiting on a job another client submitted until it completes, ends in error or the
wait times out; ListNodes / GetNode with heartbeat figures (capacity, running executions) and a node that
stops heartbeating shown lost; who may list nodes."""

import asyncio
import time

import grpc
import pytest

from bacalhau_grpc.common.errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
)
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.sdk import Client, SyncClient, WaitTimeoutError
from bacalhau_grpc.sdk import sdk_types as m
from bacalhau_grpc.sdk.types.bacalhau.requester import v1 as sdk_requester
from tests.integration.network import Network

FAST = {"heartbeat_interval": 0.3, "node_timeout": 1.5}


def noop() -> m.Job:
    return m.Job(
        spec=m.Spec(engine=m.Engine.NOOP, verifier=m.Verifier.NOOP, publisher=m.Publisher.LOCAL, timeout=60),
        deal=m.Deal(concurrency=1),
    )


async def start(tmp_path, compute: list[dict], **requester) -> Network:
    net = Network(tmp_path)
    await net.start(compute=compute, **requester)
    return net


def clients(net: Network, tmp_path) -> tuple[Client, Client]:
    """The submitter and another client (another key) that waits."""
    submitter = Client(net.requester.address, key=ClientKey.load_or_create(tmp_path / "submitter"))
    waiter = Client(net.requester.address, key=ClientKey.load_or_create(tmp_path / "waiter"))
    return submitter, waiter


async def poll(read, check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {value!r}")
        await asyncio.sleep(0.05)


async def test_wait_returns_the_completed_job_to_another_client(tmp_path):
    net = await start(tmp_path, [{"noop_stdout": "waited for\n"}])
    submitter, waiter = clients(net, tmp_path)
    try:
        job = await submitter.submit(noop())
        seen: list[m.JobEventType] = []
        ended = await waiter.wait(job.id[:8], on_event=lambda event: seen.append(event.event_name))
        assert ended.job.id == job.id
        rows = [row for node in ended.job_state.nodes.values() for row in node.shards.values()]
        assert [row.state for row in rows] == [m.JobStateType.COMPLETED]
        assert rows[0].run_output.stdout == "waited for\n"
        assert seen[0] == m.JobEventType.CREATED and m.JobEventType.RESULTS_PUBLISHED in seen
        # A finished job: wait answers at once, the same job.
        again = await waiter.wait(job.id, timeout=5)
        assert again.job.id == job.id
    finally:
        await submitter.close()
        await waiter.close()
        await net.stop()


async def test_wait_returns_a_job_that_ended_in_error(tmp_path):
    net = await start(tmp_path, [{"noop_error": "the disk is on fire"}])
    submitter, waiter = clients(net, tmp_path)
    try:
        job = await submitter.submit(noop())
        ended = await waiter.wait(job.id, timeout=30)
        states = {row.state for node in ended.job_state.nodes.values() for row in node.shards.values()}
        assert m.JobStateType.ERROR in states and m.JobStateType.COMPLETED not in states
        assert any(
            "the disk is on fire" in row.status
            for node in ended.job_state.nodes.values()
            for row in node.shards.values()
        )
    finally:
        await submitter.close()
        await waiter.close()
        await net.stop()


async def test_wait_times_out_and_the_job_goes_on_and_nodes_show_it_running(tmp_path):
    net = await start(tmp_path, [{"noop_delay": 30.0}], **FAST)
    submitter, waiter = clients(net, tmp_path)
    try:
        job = await submitter.submit(noop())
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError) as caught:
            await waiter.wait(job.id, timeout=0.5)
        assert time.monotonic() - started < 5
        assert isinstance(caught.value, DeadlineExceededError)
        assert str(caught.value) == f"job {job.id} did not end within 0.5 s; it is still running"
        with pytest.raises(InvalidArgumentError, match="timeout must be more than 0 seconds"):
            await waiter.wait(job.id, timeout=0)
        # The node's heartbeats carry its running execution.
        (node,) = await poll(
            lambda: _nodes(waiter),
            lambda nodes: len(nodes) == 1 and nodes[0].running_executions == 1,
            10,
            "the heartbeat to report the running execution",
        )
        assert node.state == sdk_requester.NodeState.LIVE
        assert node.queued_executions == 0
        # Its capacity: free is total minus what the running job holds.
        assert node.info.total_capacity.cpu > 0
        assert node.available_capacity.cpu < node.info.total_capacity.cpu
        await submitter.cancel(job.id)
        await waiter.wait(job.id, timeout=30)
    finally:
        await submitter.close()
        await waiter.close()
        await net.stop()


async def _nodes(client: Client) -> list[sdk_requester.Node]:
    return [node async for node in client.nodes()]


async def test_nodes_live_and_lost_get_node_and_pages(tmp_path):
    net = await start(tmp_path, [{}, {}, {}], **FAST)
    submitter, _ = clients(net, tmp_path)
    try:
        nodes = await _nodes(submitter)
        ids = sorted(compute.node_id for compute in net.computes)
        assert [node.info.node_id for node in nodes] == ids
        assert {node.state for node in nodes} == {sdk_requester.NodeState.LIVE}
        assert {node.role for node in nodes} == {sdk_requester.NodeRole.COMPUTE}
        assert all(node.info.address and m.Engine.NOOP in node.info.engines for node in nodes)
        # One page at a time.
        paged = [node.info.node_id async for node in submitter.nodes(page_size=1)]
        assert paged == ids
        # A node that stops heartbeating (its process stopped) is shown lost; the others stay live.
        victim = net.computes[1]
        await victim.stop(grace=0)
        states = await poll(
            lambda: _nodes(submitter),
            lambda found: any(n.state == sdk_requester.NodeState.LOST for n in found),
            15,
            "the stopped node to be lost",
        )
        assert {n.info.node_id: n.state for n in states} == {
            node_id: sdk_requester.NodeState.LOST
            if node_id == victim.node_id
            else sdk_requester.NodeState.LIVE
            for node_id in ids
        }
        lost = await submitter.node(victim.node_id[:12])
        assert lost.info.node_id == victim.node_id and lost.state == sdk_requester.NodeState.LOST
        assert lost.last_heartbeat is not None
        with pytest.raises(NotFoundError, match="node nope not found"):
            await submitter.node("nope")

        def sync_nodes() -> tuple[list[str], str]:
            # On a thread of its own: the servers run on this test's event loop.
            with SyncClient(net.requester.address, key=ClientKey.load_or_create(tmp_path / "sync")) as sync:
                return [node.info.node_id for node in sync.nodes()], sync.node(ids[0]).info.node_id

        assert await asyncio.to_thread(sync_nodes) == (ids, ids[0])
    finally:
        await submitter.close()
        await net.stop()


async def test_sync_client_waits(tmp_path):
    net = await start(tmp_path, [{}])
    key = ClientKey.load_or_create(tmp_path / "sync")
    try:

        def run() -> m.JobWithInfo:
            with SyncClient(net.requester.address, key=key) as sync:
                job = sync.submit(noop())
                return sync.wait(job.id, timeout=30)

        ended = await asyncio.to_thread(run)
        states = {row.state for node in ended.job_state.nodes.values() for row in node.shards.values()}
        assert states == {m.JobStateType.COMPLETED}
    finally:
        await net.stop()


async def test_nodes_under_owner_visibility_need_an_identity(tmp_path):
    net = await start(tmp_path, [{}], job_visibility="owner")
    try:
        signed = Client(net.requester.address, key=ClientKey.load_or_create(tmp_path / "me"))
        try:
            assert len(await _nodes(signed)) == 1
        finally:
            await signed.close()
        # An anonymous (unsigned) call: refused.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await net.stub.ListNodes(rpb.ListNodesRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "identified clients only" in (caught.value.details() or "")
    finally:
        await net.stop()
