"""The requester as a real gRPC server (app.start on 127.0.0.1:0) with a real verifier, called over gRPC.

A test-only compute peer (a real ComputeService server in this process) bids and reports results, so the
happy path's exact event sequence is checked without the compute service.
"""

import asyncio
import time
import uuid

import grpc
import pytest

from bacalhau_grpc.common import channels, grpc_errors
from bacalhau_grpc.common.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.server import ServiceBinding, start_server
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2 as cpb
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2_grpc as cgrpc
from bacalhau_grpc.pb.requester.v1 import requester_node_service_pb2_grpc as rngrpc
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from bacalhau_grpc.requester import app as requester_app
from bacalhau_grpc.requester.settings import RequesterSettings
from bacalhau_grpc.verifier import app as verifier_app
from bacalhau_grpc.verifier.settings import VerifierSettings
from tests.batch_fakes import BatchedCompute

E = pb.JobEventType
COMPUTE_SERVICE = "bacalhau.compute.v1.ComputeService"


async def eventually(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


class PeerCompute(BatchedCompute, cgrpc.ComputeServiceServicer):
    """A minimal compute node for tests: bids (or declines), then reports results and publishes."""

    def __init__(self, node_id: str, requester_address: str, *, decline: str = "") -> None:
        self.node_id = node_id
        self.decline = decline
        self.channel = channels.open_channel(requester_address)
        self.requester = rngrpc.RequesterNodeServiceStub(self.channel)
        self.executions: dict[str, tuple[str, int]] = {}
        self.calls: list[tuple[str, str]] = []
        self.tasks: set[asyncio.Task] = set()
        self.server = None

    async def start(self) -> "PeerCompute":
        self.server = await start_server(
            component="test-compute",
            node_id=self.node_id,
            services=[ServiceBinding(cgrpc.add_ComputeServiceServicer_to_server, self, COMPUTE_SERVICE)],
        )
        info = pb.NodeInfo(
            node_id=self.node_id,
            address=self.server.address,
            engines=[pb.Engine.ENGINE_NOOP],
            verifiers=[pb.Verifier.VERIFIER_NOOP, pb.Verifier.VERIFIER_DETERMINISTIC],
            publishers=[pb.Publisher.PUBLISHER_NOOP],
        )
        response = await channels.call(self.requester.RegisterNode, rpb.RegisterNodeRequest(node=info))
        assert response.requester_node_id.startswith("requester-")
        assert response.heartbeat_interval.ToMilliseconds() == 2000
        return self

    async def stop(self) -> None:
        for task in list(self.tasks):
            await task
        await self.server.stop(0.5)
        await self.channel.close()

    def _later(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def AskForBid(self, request, context):
        self.calls.append(("AskForBid", request.job.id))
        if self.decline:
            return cpb.AskForBidResponse(accepted=False, reason=self.decline, node_id=self.node_id)
        execution_id = f"e-{uuid.uuid4()}"
        self.executions[execution_id] = (request.job.id, request.shard_index)
        return cpb.AskForBidResponse(accepted=True, execution_id=execution_id, node_id=self.node_id)

    async def BidAccepted(self, request, context):
        self.calls.append(("BidAccepted", request.execution_id))
        job_id, shard_index = self.executions[request.execution_id]
        report = rpb.OnRunCompleteRequest(
            execution_id=request.execution_id,
            job_id=job_id,
            shard_index=shard_index,
            node_id=self.node_id,
            run_output=pb.RunCommandResult(stdout="hello from the peer\n", exit_code=0),
        )
        self._later(channels.call(self.requester.OnRunComplete, report))
        return cpb.BidAcceptedResponse()

    async def BidRejected(self, request, context):
        self.calls.append(("BidRejected", request.execution_id))
        return cpb.BidRejectedResponse()

    async def ResultAccepted(self, request, context):
        self.calls.append(("ResultAccepted", request.execution_id))
        job_id, shard_index = self.executions[request.execution_id]
        report = rpb.OnPublishCompleteRequest(
            execution_id=request.execution_id,
            job_id=job_id,
            shard_index=shard_index,
            node_id=self.node_id,
            published_result=pb.StorageSpec(name="noop", metadata={"publisher": "Noop"}),
        )
        self._later(channels.call(self.requester.OnPublishComplete, report))
        return cpb.ResultAcceptedResponse()

    async def ResultRejected(self, request, context):
        self.calls.append(("ResultRejected", request.execution_id))
        return cpb.ResultRejectedResponse()

    async def CancelExecution(self, request, context):
        self.calls.append(("CancelExecution", request.execution_id))
        return cpb.CancelExecutionResponse()


class Cluster:
    def __init__(self, root) -> None:
        self.root = root
        self.verifier = None
        self.requester = None
        self.channel = None
        self.stub: rgrpc.RequesterServiceStub | None = None
        self.node_stub: rngrpc.RequesterNodeServiceStub | None = None
        self.peers: list[PeerCompute] = []
        self.key = ClientKey.load_or_create(root / "client")  # the submitting client's key

    def settings(self, **overrides) -> RequesterSettings:
        return RequesterSettings(
            data_dir=self.root / "requester", verifier_address=self.verifier.address, **overrides
        )

    async def start(self, **overrides) -> "Cluster":
        if self.verifier is None:
            self.verifier = await verifier_app.start(VerifierSettings())
        self.requester = await requester_app.start(self.settings(**overrides))
        self.channel = channels.open_channel(self.requester.address)
        self.stub = rgrpc.RequesterServiceStub(self.channel)
        self.node_stub = rngrpc.RequesterNodeServiceStub(self.channel)  # the node protocol (plaintext)
        return self

    async def stop_requester(self) -> None:
        await self.channel.close()
        await self.requester.stop(1.0)

    async def add_peer(self, name: str, **options) -> PeerCompute:
        peer = await PeerCompute(name, self.requester.address, **options).start()
        self.peers.append(peer)
        return peer

    async def submit(self, job: pb.Job) -> pb.Job:
        request = self.key.signed_submit_request(job)
        return (await channels.call(self.stub.SubmitJob, request)).job

    async def watch(
        self, job_id: str, after: int = 0, timeout: float = 20.0
    ) -> list[rpb.WatchJobEventsResponse]:
        async def follow():
            request = rpb.WatchJobEventsRequest(job_id=job_id, after_sequence=after)
            return [item async for item in channels.stream(self.stub.WatchJobEvents, request)]

        return await asyncio.wait_for(follow(), timeout)

    async def stop(self) -> None:
        for peer in self.peers:
            await peer.stop()
        if self.requester is not None:
            await self.stop_requester()
        if self.verifier is not None:
            await self.verifier.stop(1.0)


@pytest.fixture
async def cluster(tmp_path):
    c = Cluster(tmp_path)
    await c.start()
    yield c
    await c.stop()


def noop_job(concurrency: int = 1, confidence: int = 0, min_bids: int = 0, tags=()) -> pb.Job:
    job = pb.Job(api_version="V1beta1")
    job.spec.engine = pb.Engine.ENGINE_NOOP
    job.spec.verifier = pb.Verifier.VERIFIER_NOOP
    job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
    job.spec.annotations.extend(tags)
    job.deal.concurrency = concurrency
    job.deal.confidence = confidence
    job.deal.min_bids = min_bids
    return job


def names(events) -> list[str]:
    return [E.Name(e.event_name).removeprefix("JOB_EVENT_TYPE_") for e in events]


async def test_submit_get_list_and_events(cluster):
    job = await cluster.submit(noop_job(tags=["demo"]))
    assert len(job.id) == 36 and job.client_id == cluster.key.client_id
    assert job.requester_node_id == cluster.requester.node_id
    assert job.spec.timeout == 1800.0 and job.execution_plan.total_shards == 1
    got = (await channels.call(cluster.stub.GetJob, rpb.GetJobRequest(job_id=job.id[:8]))).job
    assert got.job.id == job.id
    assert names(got.job_events) == ["CREATED"]
    created = got.job_events[0]
    assert created.api_version == "V1beta1" and created.client_id == cluster.key.client_id
    assert created.source_node_id == cluster.requester.node_id
    assert created.spec.annotations == ["demo"] and created.deal.concurrency == 1
    assert created.job_execution_plan.total_shards == 1
    listed = await channels.call(cluster.stub.ListJobs, rpb.ListJobsRequest(include_tags=["demo"]))
    assert [j.id for j in listed.jobs] == [job.id] and listed.next_page_token == ""
    none = await channels.call(cluster.stub.ListJobs, rpb.ListJobsRequest(client_id="somebody-else"))
    assert list(none.jobs) == []
    events = await channels.call(cluster.stub.ListJobEvents, rpb.ListJobEventsRequest(job_id=job.id))
    assert names(events.events) == ["CREATED"]
    version = await channels.call(cluster.stub.GetVersion, rpb.GetVersionRequest())
    assert version.version.git_version.startswith("v")


async def test_list_pages_over_grpc(cluster):
    ids = [(await cluster.submit(noop_job())).id for _ in range(7)]
    seen, token = [], ""
    while True:
        page = await channels.call(cluster.stub.ListJobs, rpb.ListJobsRequest(page_size=3, page_token=token))
        seen += [j.id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids
    by_id = await channels.call(
        cluster.stub.ListJobs, rpb.ListJobsRequest(sort_by=rpb.JOB_SORT_BY_ID, sort_reverse=True)
    )
    assert [j.id for j in by_id.jobs] == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda j: setattr(j.deal, "concurrency", 0), "Deal.Concurrency"),
        (lambda j: setattr(j.deal, "confidence", 2), "Deal.Confidence"),
        (lambda j: setattr(j.deal, "min_bids", -1), "Deal.MinBids"),
        (lambda j: setattr(j.spec, "engine", 0), "Spec.Engine"),
        (lambda j: setattr(j.spec.resources, "cpu", "two cores"), "Spec.Resources.CPU"),
        (lambda j: setattr(j.spec, "timeout", -5.0), "Spec.Timeout"),
    ],
)
async def test_a_bad_submission_is_invalid_argument_naming_the_field(cluster, change, field):
    job = noop_job()
    change(job)
    request = cluster.key.signed_submit_request(job)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await cluster.stub.SubmitJob(request, timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(f"{field}: ")
    info = grpc_errors.error_info_from(grpc_errors.rich_status(raised.value.trailing_metadata()))
    assert info.reason == "INVALID_ARGUMENT" and info.metadata["field"] == field
    # The typed client gets the same field back.
    with pytest.raises(InvalidArgumentError) as typed:
        await channels.call(cluster.stub.SubmitJob, request)
    assert typed.value.field == field


async def test_unknown_job_is_not_found(cluster):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await cluster.stub.GetJob(rpb.GetJobRequest(job_id="no-such-job"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == "job no-such-job not found"
    for method, request in [
        (cluster.stub.ListJobEvents, rpb.ListJobEventsRequest(job_id="no-such-job")),
        (cluster.stub.GetJobResults, rpb.GetJobResultsRequest(job_id="no-such-job")),
        (cluster.node_stub.Heartbeat, rpb.HeartbeatRequest(node_id="never-registered")),
        (
            cluster.node_stub.OnRunComplete,
            rpb.OnRunCompleteRequest(job_id="no-such-job", node_id="n", execution_id="e-1"),
        ),
    ]:
        with pytest.raises(NotFoundError):
            await channels.call(method, request)
    with pytest.raises(NotFoundError):
        async for _ in channels.stream(cluster.stub.WatchJobEvents, rpb.WatchJobEventsRequest(job_id="nope")):
            pass
    cancel = rpb.CancelJobRequest(job_id="no-such-job")
    signed = cluster.key.call_metadata("/bacalhau.requester.v1.RequesterService/CancelJob", cancel)
    with pytest.raises(NotFoundError):
        await channels.call(cluster.stub.CancelJob, cancel, metadata=signed)


async def test_an_oversize_request_is_refused_cleanly_and_the_server_keeps_serving(cluster):
    job = noop_job()
    job.spec.annotations.append("x" * (17 * 1024 * 1024))
    request = cluster.key.signed_submit_request(job)
    # A plain channel with no send limit, so the server is the one refusing.
    async with grpc.aio.insecure_channel(cluster.requester.address) as channel:
        stub = rgrpc.RequesterServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.SubmitJob(request, timeout=30)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        version = await stub.GetVersion(rpb.GetVersionRequest(), timeout=5)
        assert version.version.git_version
    listed = await channels.call(cluster.stub.ListJobs, rpb.ListJobsRequest())
    assert list(listed.jobs) == []


async def test_cancel_needs_the_callers_identity(cluster):
    job = await cluster.submit(noop_job())
    with pytest.raises(UnauthenticatedError, match="cancelling a job needs your identity"):
        await channels.call(cluster.stub.CancelJob, rpb.CancelJobRequest(job_id=job.id))


async def test_happy_path_with_a_peer_compute_node_and_the_real_verifier(cluster):
    peer = await cluster.add_peer("node-peer000001")
    job = await cluster.submit(noop_job())
    watched = await cluster.watch(job.id)
    assert names(w.event for w in watched) == [
        "CREATED",
        "BID",
        "BID_ACCEPTED",
        "RESULTS_PROPOSED",
        "RESULTS_ACCEPTED",
        "RESULTS_PUBLISHED",
    ]
    assert [w.sequence for w in watched] == [1, 2, 3, 4, 5, 6]
    events = [w.event for w in watched]
    assert [e.target_node_id or e.source_node_id for e in events[1:]] == [peer.node_id] * 5
    assert events[3].run_output.stdout == "hello from the peer\n"
    assert events[4].verification_result.complete and events[4].verification_result.result
    assert [name for name, _ in peer.calls] == ["AskForBid", "BidAccepted", "ResultAccepted"]
    got = (await channels.call(cluster.stub.GetJob, rpb.GetJobRequest(job_id=job.id))).job
    row = got.job_state.nodes[peer.node_id].shards[0]
    assert row.state == pb.JobStateType.JOB_STATE_TYPE_COMPLETED
    results = await channels.call(cluster.stub.GetJobResults, rpb.GetJobResultsRequest(job_id=job.id))
    assert [(r.node_id, r.data.name) for r in results.results] == [(peer.node_id, "noop")]
    # Replaying from a sequence number on the finished job.
    tail = await cluster.watch(job.id, after=4)
    assert [w.sequence for w in tail] == [5, 6]
    # The same report again is taken as a retry; a different late report is refused and recorded.
    execution_id = peer.calls[1][1]
    again = rpb.OnRunCompleteRequest(job_id=job.id, node_id=peer.node_id, execution_id=execution_id)
    await channels.call(cluster.node_stub.OnRunComplete, again)
    late = rpb.OnRunCompleteRequest(
        job_id=job.id, node_id=peer.node_id, execution_id=execution_id, verification_proposal=b"other"
    )
    with pytest.raises(FailedPreconditionError):
        await channels.call(cluster.node_stub.OnRunComplete, late)
    events = await channels.call(cluster.stub.ListJobEvents, rpb.ListJobEventsRequest(job_id=job.id))
    assert names(events.events)[-1:] == ["INVALID_REQUEST"]
    # A node that holds no execution of the shard is refused and leaves nothing behind, however often.
    huge = rpb.OnRunCompleteRequest(job_id=job.id, node_id="x" * 10_000, execution_id="e-x")
    with pytest.raises(
        InvalidArgumentError, match=r"bad node ID .*\(10000 characters\): a node ID is 1 to 128 characters"
    ):
        await channels.call(cluster.node_stub.OnRunComplete, huge)
    for node_id in ("node-stranger", peer.node_id):
        stranger = rpb.OnRunCompleteRequest(job_id=job.id, node_id=node_id, execution_id="e-x")
        with pytest.raises(PermissionDeniedError, match=r"holds no execution of shard|does not hold"):
            await channels.call(cluster.node_stub.OnRunComplete, stranger)
        nowhere = rpb.OnRunCompleteRequest(job_id=job.id, shard_index=7, node_id=node_id, execution_id="e")
        with pytest.raises(PermissionDeniedError, match="which does not exist"):
            await channels.call(cluster.node_stub.OnRunComplete, nowhere)
    after = await channels.call(cluster.stub.ListJobEvents, rpb.ListJobEventsRequest(job_id=job.id))
    assert list(after.events) == list(events.events)


async def test_report_executions_answers_each_report_on_its_own(cluster):
    peer = await cluster.add_peer("node-peer000001")
    job = await cluster.submit(noop_job())
    await cluster.watch(job.id)
    execution_id = peer.calls[1][1]
    same = rpb.OnRunCompleteRequest(job_id=job.id, node_id=peer.node_id, execution_id=execution_id)
    reports = [
        rpb.ExecutionReport(run_complete=same),  # a repeated report: taken as a retry
        rpb.ExecutionReport(
            run_complete=rpb.OnRunCompleteRequest(job_id="no-such-job", node_id="n", execution_id="e-1")
        ),
        rpb.ExecutionReport(),
        rpb.ExecutionReport(
            publish_complete=rpb.OnPublishCompleteRequest(job_id=job.id, node_id="node-x", execution_id="e-x")
        ),
    ]
    response = await channels.call(
        cluster.node_stub.ReportExecutions, rpb.ReportExecutionsRequest(reports=reports)
    )
    assert [(o.code, o.message) for o in response.outcomes] == [
        ("", ""),
        ("NOT_FOUND", "job no-such-job not found"),
        (
            "INVALID_ARGUMENT",
            "report: an execution report names no report (run_complete, publish_complete, …)",
        ),
        ("PERMISSION_DENIED", response.outcomes[3].message),
    ]
    assert "node-x" in response.outcomes[3].message


async def test_a_refusal_reason_reaches_the_events_and_another_node_is_asked(cluster):
    await cluster.add_peer("node-declines01", decline="job requirements exceed max allowed per job")
    job = await cluster.submit(noop_job())
    received = []

    async def follow():
        request = rpb.WatchJobEventsRequest(job_id=job.id)
        async for item in channels.stream(cluster.stub.WatchJobEvents, request):
            received.append(item.event)

    watcher = asyncio.create_task(follow())
    await eventually(
        lambda: any(e.event_name == E.JOB_EVENT_TYPE_BID_CANCELLED for e in received), what="the refusal"
    )
    peer = await cluster.add_peer("node-bids000001")  # the shard still wants a bid: this node is asked
    await asyncio.wait_for(watcher, 20)
    refusals = [e for e in received if e.event_name == E.JOB_EVENT_TYPE_BID_CANCELLED]
    assert [(e.source_node_id, e.status) for e in refusals] == [
        ("node-declines01", "declined to bid: job requirements exceed max allowed per job")
    ]
    assert names(received)[-1] == "RESULTS_PUBLISHED"
    assert received[-1].source_node_id == peer.node_id


async def test_watch_follows_a_job_until_it_ends(cluster):
    job = await cluster.submit(noop_job())
    received = []

    async def follow():
        request = rpb.WatchJobEventsRequest(job_id=job.id)
        async for item in channels.stream(cluster.stub.WatchJobEvents, request):
            received.append(item)

    watcher = asyncio.create_task(follow())
    await eventually(lambda: len(received) == 1, what="the replayed Created event")
    assert not watcher.done()
    await cluster.add_peer("node-arrives01")  # registers: offered the pending shard
    await asyncio.wait_for(watcher, 20)
    assert names(w.event for w in received)[-1] == "RESULTS_PUBLISHED"


async def test_a_restart_keeps_the_jobs(cluster):
    await cluster.add_peer("node-restart01")
    done = await cluster.submit(noop_job(tags=["first"]))
    before = [w.event for w in await cluster.watch(done.id)]
    pending = await cluster.submit(noop_job(min_bids=2))  # only one node: it waits for a second bid
    await eventually(
        lambda: cluster.requester.requester.shard(pending.id).bids, what="the first bid of the pending job"
    )
    node_id, port = cluster.requester.node_id, cluster.requester.port
    await cluster.stop_requester()
    await cluster.start(port=port)  # the same address: the peers' callbacks still reach it
    assert cluster.requester.node_id == node_id  # kept in data_dir
    got = (await channels.call(cluster.stub.GetJob, rpb.GetJobRequest(job_id=done.id))).job
    assert list(got.job_events) == before
    assert got.job_state.nodes["node-restart01"].shards[0].state == pb.JobStateType.JOB_STATE_TYPE_COMPLETED
    listed = await channels.call(cluster.stub.ListJobs, rpb.ListJobsRequest())
    assert [j.id for j in listed.jobs] == [done.id, pending.id]
    # The pending shard was reloaded with its bid and its negotiation deadline re-armed.
    shard = cluster.requester.requester.shard(pending.id)
    assert [b.node_id for b in shard.bids] == ["node-restart01"]
    assert cluster.requester.requester.armed_timers == 1
    # A second node arrives after the restart: the reloaded shard goes on to completion.
    await cluster.add_peer("node-restart02")
    events = [w.event for w in await cluster.watch(pending.id)]
    assert names(events).count("BID") == 2
    assert names(events)[-1] == "RESULTS_PUBLISHED"


async def test_a_graceful_stop_ends_open_watches_at_once(cluster):
    job = await cluster.submit(noop_job())  # no compute node: it stays pending
    received, outcome = [], []

    async def follow():
        try:
            async for item in channels.stream(
                cluster.stub.WatchJobEvents, rpb.WatchJobEventsRequest(job_id=job.id)
            ):
                received.append(item)
        except UnavailableError as error:
            outcome.append(error)

    watcher = asyncio.create_task(follow())
    await eventually(lambda: len(received) == 1, what="the replayed Created event")
    started = time.monotonic()
    await cluster.requester.stop(grace=5.0)
    assert time.monotonic() - started < 2.5  # the open stream did not hold the grace period
    await asyncio.wait_for(watcher, 5)
    assert outcome and "after_sequence=1" in str(outcome[0])
    await cluster.channel.close()
    cluster.requester = None
