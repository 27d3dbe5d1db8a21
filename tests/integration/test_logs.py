"""Live logs: StreamExecutionLogs on a compute node alone (real server, driven as the requester drives it)
and StreamJobLogs through a whole network (requester, verifier, compute nodes over gRPC), with noop runs
that write their output when they start and then wait, and one Docker container that writes, sleeps and
writes again. What a user sees: the output while the run goes on, the stream ending once it is over, the
heads kept with the results afterwards, the filters, and the errors."""

import asyncio
import contextlib
import time

import grpc
import pytest

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.content.archive import make_tar_gz
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2 as cpb
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2_grpc as cgrpc
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.requester.domain import logs as requester_logs
from tests.batch_fakes import BatchedCompute
from tests.integration import test_compute_service as compute_service
from tests.integration.network import E, Network, names, noop_job

# The compute node's fixtures (a recording requester, nodes, clients) and its noop job.
requester = compute_service.requester
computes = compute_service.computes
connect = compute_service.connect
compute_noop_job = compute_service.noop_job
for_execution = compute_service.for_execution

# How long a noop run waits after writing its output: long enough that output seen before the run is
# over is plainly seen WHILE it runs, short enough for a test.
DELAY = 3.0
# The most any one test waits for a stream.
TIMEOUT = 60.0
CHUNK_BYTES = 64 * 1024
SUMMARY_BYTES = 2048


def joined(chunks, *, stderr: bool = False) -> bytes:
    return b"".join(c.data for c in chunks if c.stderr == stderr)


async def collect(responses) -> list:
    async with asyncio.timeout(TIMEOUT):
        return [response async for response in responses]


def status_of(caught: pytest.ExceptionInfo) -> grpc.StatusCode:
    return caught.value.code()


# ---------------------------------------------------------------------------------------------------
# A compute node alone
# ---------------------------------------------------------------------------------------------------


async def test_following_an_execution_shows_its_output_while_it_runs_and_ends_with_the_run(
    requester, computes, connect
):
    stdout = "x" * 100_000 + "\nend of stdout\n"  # more than a chunk, and far more than the 2 KiB head
    node = await computes(noop_stdout=stdout, noop_stderr="a warning\n", noop_delay=DELAY)
    client = connect(node)
    bid = await client.ask(compute_noop_job())
    await client.accept(bid.execution_id)
    request = cpb.StreamExecutionLogsRequest(execution_id=bid.execution_id, follow=True)
    received = []
    async with asyncio.timeout(TIMEOUT):
        async for response in client.stub.StreamExecutionLogs(request):
            if not received:  # the first piece arrives while the run still goes on
                assert requester.servicer.named("OnRunComplete") == []
                assert (await client.executions_by_state())["Running"] == 1
            received.append(response)
    # The stream ended because the run is over: its results were proposed.
    assert (await client.executions_by_state())["WaitingVerification"] == 1
    assert joined(received) == stdout.encode()
    assert joined(received, stderr=True) == b"a warning\n"
    assert max(len(r.data) for r in received) == CHUNK_BYTES


async def test_without_follow_a_running_execution_shows_what_it_wrote_so_far_and_the_stream_ends(
    requester, computes, connect
):
    node = await computes(noop_stdout="started\n", noop_delay=30.0)
    client = connect(node)
    bid = await client.ask(compute_noop_job())
    await client.accept(bid.execution_id)
    await client.wait_for_state("Running")
    request = cpb.StreamExecutionLogsRequest(execution_id=bid.execution_id)
    received = await collect(client.stub.StreamExecutionLogs(request))
    assert joined(received) == b"started\n" and joined(received, stderr=True) == b""
    assert (await client.executions_by_state())["Running"] == 1


async def test_an_execution_whose_run_is_over_shows_the_head_the_node_kept(requester, computes, connect):
    node = await computes(noop_stdout="y" * 5000, noop_stderr="warn\n")
    client = connect(node)
    bid = await client.ask(compute_noop_job())
    await client.accept(bid.execution_id)
    await requester.servicer.wait_for("OnRunComplete", for_execution(bid.execution_id))
    request = cpb.StreamExecutionLogsRequest(execution_id=bid.execution_id)
    # The noop run's files went with it: what is left is the head sent with the results.
    received = await collect(client.stub.StreamExecutionLogs(request))
    assert joined(received) == b"y" * SUMMARY_BYTES and joined(received, stderr=True) == b"warn\n"
    # Published (the execution ended): the same, with or without follow.
    await client.accept_results(bid.execution_id)
    await client.wait_for_state("Completed")
    request = cpb.StreamExecutionLogsRequest(execution_id=bid.execution_id, follow=True)
    followed = await collect(client.stub.StreamExecutionLogs(request))
    assert joined(followed) == b"y" * SUMMARY_BYTES and joined(followed, stderr=True) == b"warn\n"


async def test_an_unknown_execution_is_not_found(requester, computes, connect):
    client = connect(await computes())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(client.stub.StreamExecutionLogs(cpb.StreamExecutionLogsRequest(execution_id="e-nope")))
    assert status_of(caught) == grpc.StatusCode.NOT_FOUND and "e-nope" in caught.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(client.stub.StreamExecutionLogs(cpb.StreamExecutionLogsRequest()))
    assert status_of(caught) == grpc.StatusCode.INVALID_ARGUMENT


# ---------------------------------------------------------------------------------------------------
# A whole network
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    yield net
    await net.stop()


def logs_request(job_id: str, *, follow: bool = False, **filters) -> rpb.StreamJobLogsRequest:
    return rpb.StreamJobLogsRequest(job_id=job_id, follow=follow, **filters)


async def job_logs(network: Network, job_id: str, **options) -> list[rpb.StreamJobLogsResponse]:
    return await collect(network.stub.StreamJobLogs(logs_request(job_id, **options)))


async def event_names(network: Network, job_id: str) -> list[str]:
    return names((await network.get_job(job_id)).job_events)


async def test_following_a_job_shows_its_output_before_it_completes_and_ends_after_it_ends(network):
    await network.start(compute=[{"noop_stdout": "working\n", "noop_stderr": "note\n", "noop_delay": DELAY}])
    job = await network.submit(noop_job())
    node_id = network.computes[0].node_id
    received = []
    async with asyncio.timeout(TIMEOUT):
        async for response in network.stub.StreamJobLogs(logs_request(job.id, follow=True)):
            if not received:
                assert "RESULTS_PROPOSED" not in await event_names(network, job.id)
            received.append(response)
    # The stream ended with the job.
    assert (await event_names(network, job.id))[-1] == "RESULTS_PUBLISHED"
    assert joined(received) == b"working\n" and joined(received, stderr=True) == b"note\n"
    assert {(r.node_id, r.shard_index) for r in received} == {(node_id, 0)}
    (execution_id,) = {r.execution_id for r in received}
    assert execution_id.startswith("e-")


async def test_after_the_job_ended_its_logs_come_from_its_results(network):
    await network.start(compute=[{"noop_stdout": "z" * 3000, "noop_stderr": "warn\n"}])
    job = await network.submit(noop_job())
    events = await network.wait_for_end(job.id)
    (proposed,) = [e for e in events if e.event_name == E.JOB_EVENT_TYPE_RESULTS_PROPOSED]
    for follow in (False, True):
        received = await job_logs(network, job.id, follow=follow)
        assert joined(received) == proposed.run_output.stdout.encode() == b"z" * SUMMARY_BYTES
        assert joined(received, stderr=True) == b"warn\n"
    # A unique prefix of the job ID names it too.
    assert joined(await job_logs(network, job.id[:12]), stderr=True) == b"warn\n"


async def test_logs_are_filtered_by_node(network):
    await network.start(compute=[{"noop_stdout": "from node A\n"}, {"noop_stdout": "from node B\n"}])
    node_a, node_b = (node.node_id for node in network.computes)
    job = await network.submit(noop_job(concurrency=2))
    await network.wait_for_end(job.id)
    every = await job_logs(network, job.id)
    assert {(r.node_id, r.data) for r in every} == {(node_a, b"from node A\n"), (node_b, b"from node B\n")}
    only_b = await job_logs(network, job.id, node_id=node_b[:9])
    assert {(r.node_id, r.data) for r in only_b} == {(node_b, b"from node B\n")}
    assert await job_logs(network, job.id, node_id="node-unknown") == []


async def test_logs_are_filtered_by_shard(network):
    await network.start(compute=[{"noop_stdout": "a shard ran\n"}])
    cid = network.requester.requester.content.add_archive(make_tar_gz({"1.txt": b"1", "2.txt": b"2"}))
    job = noop_job()
    job.spec.inputs.append(
        pb.StorageSpec(storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS, cid=cid, path="/inputs")
    )
    job.spec.sharding.glob_pattern = "/inputs/*.txt"
    job.spec.sharding.batch_size = 1
    submitted = await network.submit(job)
    assert submitted.execution_plan.total_shards == 2
    await network.wait_for_end(submitted.id)
    every = await job_logs(network, submitted.id)
    assert [(r.shard_index, r.data) for r in every] == [(0, b"a shard ran\n"), (1, b"a shard ran\n")]
    second = await job_logs(network, submitted.id, shard_index=1)
    assert [(r.shard_index, r.data) for r in second] == [(1, b"a shard ran\n")]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await job_logs(network, submitted.id, shard_index=2)
    assert status_of(caught) == grpc.StatusCode.INVALID_ARGUMENT and "no shard 2" in caught.value.details()


async def test_following_picks_up_an_execution_that_starts_later(network):
    await network.start(compute=[{"max_job_timeout": 10.0}])  # declines the job below
    job = await network.submit(noop_job(timeout=100.0))
    await network.wait_for_event(job.id, E.JOB_EVENT_TYPE_BID_CANCELLED)
    following = asyncio.ensure_future(job_logs(network, job.id, follow=True))
    try:
        await network.add_compute(noop_stdout="the late node ran it\n")
        received = await following
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await following
    assert joined(received) == b"the late node ran it\n"
    assert {r.node_id for r in received} == {network.computes[1].node_id}
    assert (await event_names(network, job.id))[-1] == "RESULTS_PUBLISHED"


async def test_a_node_that_cannot_be_reached_is_named(network):
    await network.start(compute=[{"noop_stdout": "before the node went\n", "noop_delay": 60.0}])
    node = network.computes[0]
    job = await network.submit(noop_job())
    first = network.stub.StreamJobLogs(logs_request(job.id, follow=True))
    async with asyncio.timeout(TIMEOUT):
        piece = await first.read()
    assert piece.data == b"before the node went\n"
    first.cancel()
    await node.stop(grace=0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await job_logs(network, job.id)
    assert status_of(caught) == grpc.StatusCode.UNAVAILABLE
    assert f"on node {node.node_id} (shard 0)" in caught.value.details()


async def test_a_requester_shutting_down_ends_a_following_stream_at_once(network):
    await network.start(compute=[{"noop_stdout": "still running\n", "noop_delay": 60.0}])
    job = await network.submit(noop_job())
    following = network.stub.StreamJobLogs(logs_request(job.id, follow=True))
    async with asyncio.timeout(TIMEOUT):
        assert (await following.read()).data == b"still running\n"
    requester, network.requester = network.requester, None
    started = time.monotonic()
    stopping = asyncio.ensure_future(requester.stop(grace=10.0))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async with asyncio.timeout(TIMEOUT):
            while await following.read() is not grpc.aio.EOF:
                pass
    await stopping
    assert time.monotonic() - started < 5.0  # not held until the grace period ran out
    assert status_of(caught) == grpc.StatusCode.UNAVAILABLE and "shutting down" in caught.value.details()


class StubbornNode(BatchedCompute, cgrpc.ComputeServiceServicer):
    """A compute node that disagrees with the requester: it bids, takes every update, and streams its
    execution's logs without ever ending them (as a node that never heard its bid was accepted would)."""

    def __init__(self) -> None:
        self.forever = asyncio.Event()  # never set

    async def AskForBid(self, request, context):
        return cpb.AskForBidResponse(accepted=True, execution_id="e-stubborn", node_id=STUBBORN)

    async def BidAccepted(self, request, context):
        return cpb.BidAcceptedResponse()

    async def BidRejected(self, request, context):
        return cpb.BidRejectedResponse()

    async def CancelExecution(self, request, context):
        return cpb.CancelExecutionResponse()

    async def StreamExecutionLogs(self, request, context):
        yield cpb.StreamExecutionLogsResponse(data=b"stubborn output\n")
        await self.forever.wait()


STUBBORN = "node-stubborn0000"


async def test_a_node_still_streaming_after_the_job_ended_is_cut_short(network, monkeypatch):
    monkeypatch.setattr(requester_logs, "AFTER_END_GRACE", 0.5)
    await network.start(0)
    server = grpc.aio.server()
    cgrpc.add_ComputeServiceServicer_to_server(StubbornNode(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        info = pb.NodeInfo(node_id=STUBBORN, address=f"127.0.0.1:{port}")
        info.engines.append(pb.Engine.ENGINE_NOOP)
        await channels.call(network.node_stub.RegisterNode, rpb.RegisterNodeRequest(node=info))
        job = await network.submit(noop_job(timeout=1.0))  # it never reports results: the job times out
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async with asyncio.timeout(TIMEOUT):
                async for response in network.stub.StreamJobLogs(logs_request(job.id, follow=True)):
                    received.append(response)
        assert joined(received) == b"stubborn output\n"
        assert (await event_names(network, job.id))[-1] == "ERROR"  # ended before the stream did
        assert status_of(caught) == grpc.StatusCode.UNAVAILABLE
        assert f"execution e-stubborn on node {STUBBORN} (shard 0)" in caught.value.details()
        assert "still streamed it 0.5s after the job ended" in caught.value.details()
    finally:
        await server.stop(0)


async def test_an_unknown_job_is_not_found(network):
    await network.start()
    for follow in (False, True):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await job_logs(network, "no-such-job", follow=follow)
        assert status_of(caught) == grpc.StatusCode.NOT_FOUND


# ---------------------------------------------------------------------------------------------------
# Docker
# ---------------------------------------------------------------------------------------------------


async def test_a_docker_jobs_output_arrives_while_the_container_runs(network, docker_engine):
    await network.start(1)
    job = noop_job(timeout=120)
    job.spec.engine = pb.Engine.ENGINE_DOCKER
    job.spec.docker.image = docker_engine
    job.spec.docker.entrypoint.extend(["sh", "-c", "echo one; sleep 3; echo two"])
    submitted = await network.submit(job)
    received = []
    seen_one = False
    async with asyncio.timeout(TIMEOUT * 2):  # the first Docker run of a session may be slow to start
        async for response in network.stub.StreamJobLogs(logs_request(submitted.id, follow=True)):
            received.append(response)
            if not seen_one and b"one" in joined(received):
                seen_one = True
                # "one" came before "two" was written and before the execution ended.
                assert b"two" not in joined(received)
                assert "RESULTS_PROPOSED" not in await event_names(network, submitted.id)
    assert seen_one
    assert joined(received) == b"one\ntwo\n" and joined(received, stderr=True) == b""
    events = await event_names(network, submitted.id)
    assert events[-1] == "RESULTS_PUBLISHED", events
