"""The compute service as a real gRPC server (app.start on 127.0.0.1:0), driven over gRPC, talking to a
real RequesterNodeService server that records what the node sends it (RegisterNode, Heartbeat, On*)."""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute import app
from bacalhau_grpc.compute.settings import ComputeSettings
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2 as cpb
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2_grpc as cgrpc
from bacalhau_grpc.pb.requester.v1 import requester_node_service_pb2_grpc as rngrpc
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from tests.batch_fakes import BatchedRequester

REQUESTER_ID = "requester-0123456789ab"
HEARTBEAT = 0.05


class RecordingRequester(BatchedRequester, rngrpc.RequesterNodeServiceServicer):
    """The requester's side of the protocol, recording every call. `fail_next[method] = n` answers the
    next n calls of `method` with UNAVAILABLE; a heartbeat from a node it does not know gets NOT_FOUND."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.known: set[str] = set()
        self.fail_next: dict[str, int] = {}
        self.changed = asyncio.Event()

    async def _record(self, name: str, request: object, context: grpc.aio.ServicerContext) -> None:
        if self.fail_next.get(name, 0) > 0:
            self.fail_next[name] -= 1
            self.calls.append((f"{name}:refused", request))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again later")
        self.calls.append((name, request))
        self.changed.set()

    async def RegisterNode(self, request, context):
        await self._record("RegisterNode", request, context)
        self.known.add(request.node.node_id)
        return rpb.RegisterNodeResponse(
            requester_node_id=REQUESTER_ID,
            heartbeat_interval=duration_pb2.Duration(nanos=int(HEARTBEAT * 1e9)),
        )

    async def Heartbeat(self, request, context):
        if request.node_id not in self.known:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"node {request.node_id} is not registered")
        await self._record("Heartbeat", request, context)
        return rpb.HeartbeatResponse()

    async def OnRunComplete(self, request, context):
        await self._record("OnRunComplete", request, context)
        return rpb.OnRunCompleteResponse()

    async def OnPublishComplete(self, request, context):
        await self._record("OnPublishComplete", request, context)
        return rpb.OnPublishCompleteResponse()

    async def OnComputeFailure(self, request, context):
        await self._record("OnComputeFailure", request, context)
        return rpb.OnComputeFailureResponse()

    async def OnCancelComplete(self, request, context):
        await self._record("OnCancelComplete", request, context)
        return rpb.OnCancelCompleteResponse()

    def named(self, name: str) -> list:
        return [request for call, request in self.calls if call == name]

    async def wait_until(self, predicate: Callable[[], object], timeout: float = 10.0) -> object:
        """The first true value of `predicate()`, re-evaluated after each recorded call."""
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met; calls: {[c for c, _ in self.calls]}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return value

    async def wait_for(
        self, name: str, match: Callable[[object], bool] = lambda r: True, timeout: float = 10.0
    ):
        """The first recorded `name` request for which `match` is true, waiting up to `timeout` seconds."""
        found = await self.wait_until(lambda: [r for r in self.named(name) if match(r)], timeout)
        return found[0]


class RequesterServer:
    def __init__(self) -> None:
        self.servicer = RecordingRequester()
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> "RequesterServer":
        self.server = grpc.aio.server()
        rngrpc.add_RequesterNodeServiceServicer_to_server(self.servicer, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        await self.server.start()
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)


@pytest.fixture
async def requester():
    server = await RequesterServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def computes(tmp_path, requester):
    """Starts compute nodes (settings overrides as keywords); stops them all at the end."""
    started: list[app.RunningCompute] = []

    async def start(**overrides) -> app.RunningCompute:
        settings = ComputeSettings(
            **{
                "host": "127.0.0.1",
                "port": 0,
                "data_dir": tmp_path / "compute",
                "requester_address": requester.address,
                "call_timeout": 2.0,
                **overrides,
            }
        )
        running = await app.start(settings)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.stop(grace=1.0)


class Client:
    """Calls a compute node over gRPC, as the requester does."""

    def __init__(self, address: str) -> None:
        self.channel = channels.open_channel(address)
        self.stub = cgrpc.ComputeServiceStub(self.channel)

    async def ask(self, job: pb.Job, shard_index: int = 0) -> cpb.AskForBidResponse:
        return await channels.call(
            self.stub.AskForBid, cpb.AskForBidRequest(job=job, shard_index=shard_index)
        )

    async def accept(self, execution_id: str) -> None:
        await channels.call(self.stub.BidAccepted, cpb.BidAcceptedRequest(execution_id=execution_id))

    async def accept_results(self, execution_id: str) -> None:
        await channels.call(self.stub.ResultAccepted, cpb.ResultAcceptedRequest(execution_id=execution_id))

    async def info(self) -> cpb.GetNodeInfoResponse:
        return await channels.call(self.stub.GetNodeInfo, cpb.GetNodeInfoRequest())

    async def executions_by_state(self) -> dict[str, int]:
        info = await self.info()
        return json.loads(next(d.info for d in info.debug_info if d.component == "executions"))

    async def wait_for_state(self, state: str, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while (await self.executions_by_state())[state] < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {count} execution(s) {state}: {await self.executions_by_state()}")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        await self.channel.close()


@pytest.fixture
async def connect():
    clients: list[Client] = []

    def make(running: app.RunningCompute) -> Client:
        client = Client(running.address)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def noop_job(
    *, verifier=pb.Verifier.VERIFIER_NOOP, engine=pb.Engine.ENGINE_NOOP, timeout: float = 0.0
) -> pb.Job:
    job = pb.Job(id=str(uuid.uuid4()), api_version="V1beta1", requester_node_id=REQUESTER_ID)
    job.spec.engine = engine
    job.spec.verifier = verifier
    job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
    job.spec.timeout = timeout
    job.deal.concurrency = 1
    job.execution_plan.total_shards = 1
    return job


# A Docker engine address where none answers: the node runs without Docker.
NO_DOCKER_ENGINE = "unix:///nonexistent/docker.sock"


def for_execution(execution_id: str) -> Callable[[object], bool]:
    return lambda request: request.execution_id == execution_id


async def test_the_node_registers_and_sends_heartbeats(requester, computes, tmp_path):
    node = await computes(
        limit_total_cpu="2", limit_total_memory="4Gb", limit_job_cpu="1", docker_host=NO_DOCKER_ENGINE
    )
    registration = await requester.servicer.wait_for("RegisterNode")
    info = registration.node
    assert info.node_id == node.node_id and node.node_id.startswith("node-") and len(node.node_id) == 17
    assert info.address == node.address == f"127.0.0.1:{node.port}"
    E = pb.Engine
    assert list(info.engines) == [E.ENGINE_NOOP, E.ENGINE_WASM, E.ENGINE_LANGUAGE, E.ENGINE_PYTHON_WASM]
    assert list(info.verifiers) == [pb.Verifier.VERIFIER_NOOP, pb.Verifier.VERIFIER_DETERMINISTIC]
    assert list(info.publishers) == [1, 2, 3, 4, 5]  # Noop, Ipfs (+ Filecoin, Estuary falling back), Local
    assert info.total_capacity.cpu == 2.0 and info.total_capacity.memory == 4 * 1024**3
    assert info.max_job_capacity.cpu == 1.0 and info.max_job_capacity.memory == 4 * 1024**3
    assert info.version.startswith("v")
    heartbeat = await requester.servicer.wait_for("Heartbeat")
    assert heartbeat.node_id == node.node_id and heartbeat.available_capacity.cpu == 2.0
    assert (tmp_path / "compute" / "node_id").read_text().strip() == node.node_id


async def test_a_forgotten_node_registers_again(requester, computes):
    node = await computes()
    await requester.servicer.wait_for("Heartbeat")
    requester.servicer.known.clear()  # as if the requester restarted
    await requester.servicer.wait_until(lambda: len(requester.servicer.named("RegisterNode")) >= 2)
    assert node.node_id in requester.servicer.known


async def test_registration_is_retried_until_the_requester_is_up(tmp_path):
    placeholder = await RequesterServer().start()
    port = placeholder.port
    await placeholder.stop()  # nothing listens there now
    settings = ComputeSettings(
        data_dir=tmp_path / "c", requester_address=f"127.0.0.1:{port}", call_timeout=1.0
    )
    node = await app.start(settings)
    late = RequesterServer()
    try:
        await asyncio.sleep(0)  # the node is already trying; no synchronisation is implied
        await late.start(port)
        registration = await late.servicer.wait_for("RegisterNode", timeout=15)
        assert registration.node.node_id == node.node_id
    finally:
        await node.stop(grace=1.0)
        await late.stop()


async def test_health_and_node_info(requester, computes, connect):
    node = await computes()
    async with channels.open_channel(node.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "bacalhau.compute.v1.ComputeService"):
            response = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
    info = await connect(node).info()
    assert info.node.node_id == node.node_id and info.active_executions == 0
    components = {d.component for d in info.debug_info}
    assert {"rpcs", "executions", "bids", "capacity"} <= components


async def test_bid_run_verify_publish(requester, computes, connect):
    node = await computes(noop_stdout="hello from noop\n", noop_stderr="a warning\n")
    client = connect(node)
    job = noop_job(verifier=pb.Verifier.VERIFIER_DETERMINISTIC)

    bid = await client.ask(job)
    assert (
        bid.accepted
        and bid.execution_id.startswith("e-")
        and bid.reason == ""
        and bid.node_id == node.node_id
    )
    await client.accept(bid.execution_id)

    done = await requester.servicer.wait_for("OnRunComplete", for_execution(bid.execution_id))
    assert (done.job_id, done.shard_index, done.node_id) == (job.id, 0, node.node_id)
    assert done.run_output.stdout == "hello from noop\n" and done.run_output.stderr == "a warning\n"
    assert done.run_output.HasField("exit_code") and done.run_output.exit_code == 0
    assert len(done.verification_proposal) == 64 and bytes.fromhex(done.verification_proposal.decode())

    await client.accept_results(bid.execution_id)
    published = await requester.servicer.wait_for("OnPublishComplete", for_execution(bid.execution_id))
    assert (published.job_id, published.shard_index, published.node_id) == (job.id, 0, node.node_id)
    assert published.published_result == pb.StorageSpec(name="noop", metadata={"publisher": "Noop"})
    await client.wait_for_state("Completed")
    assert requester.servicer.named("OnComputeFailure") == []
    info = await client.info()
    assert info.active_executions == 0


async def test_a_non_zero_exit_code_is_still_a_result(requester, computes, connect):
    node = await computes(noop_stdout="partial\n", noop_exit_code=3)
    client = connect(node)
    bid = await client.ask(noop_job())
    await client.accept(bid.execution_id)
    done = await requester.servicer.wait_for("OnRunComplete", for_execution(bid.execution_id))
    assert done.run_output.exit_code == 3 and done.run_output.stdout == "partial\n"
    assert done.verification_proposal == b""
    assert requester.servicer.named("OnComputeFailure") == []


async def test_refusals_carry_their_reason(requester, computes, connect):
    node = await computes(docker_host=NO_DOCKER_ENGINE)
    client = connect(node)
    docker = await client.ask(noop_job(engine=pb.Engine.ENGINE_DOCKER))
    assert (docker.accepted, docker.execution_id) == (False, "")
    assert docker.reason == "executor Docker not installed"
    too_long = await client.ask(noop_job(timeout=7200))
    assert (too_long.accepted, too_long.reason) == (False, "job timeout 7200s exceeds maximum allowed 3600s")
    job = noop_job()
    job.spec.resources.cpu = "lots"
    bad = await client.ask(job)
    assert not bad.accepted and bad.reason.startswith("Spec.Resources.CPU: 'lots' is not a CPU amount")
    assert (await client.info()).active_executions == 0


async def test_request_errors_use_status_codes(requester, computes, connect):
    node = await computes()
    client = connect(node)
    with pytest.raises(NotFoundError, match="execution e-unknown not found"):
        await client.accept("e-unknown")
    with pytest.raises(NotFoundError):
        await client.accept_results("e-unknown")
    with pytest.raises(InvalidArgumentError) as error:
        await client.accept("")
    assert error.value.field == "execution_id"
    with pytest.raises(InvalidArgumentError) as error:
        await client.ask(pb.Job())
    assert error.value.field == "job.id"
    bid = await client.ask(noop_job())
    with pytest.raises(FailedPreconditionError, match="no results yet"):
        await client.accept_results(bid.execution_id)
    await client.accept(bid.execution_id)
    # A second BidAccepted runs nothing again: before the run ends it is a no-op; after, the node reports
    # again what it did (the requester may have lost the report), the same results.
    await client.accept(bid.execution_id)
    await requester.servicer.wait_for("OnRunComplete", for_execution(bid.execution_id))
    reports = requester.servicer.named("OnRunComplete")
    assert len({report.SerializeToString() for report in reports}) == 1
    assert node.node.executors[pb.Engine.ENGINE_NOOP].runs == 1


async def test_batch_calls_answer_each_item_on_its_own(requester, computes, connect):
    node = await computes()
    client = connect(node)
    asks = [cpb.AskForBidRequest(job=noop_job(), shard_index=0), cpb.AskForBidRequest(job=pb.Job())]
    asked = await channels.call(client.stub.AskForBids, cpb.AskForBidsRequest(asks=asks))
    assert asked.answers[0].accepted and asked.answers[0].execution_id.startswith("e-")
    assert asked.outcomes[0].code == ""
    assert (asked.answers[1].accepted, asked.outcomes[1].code) == (False, "INVALID_ARGUMENT")
    assert "job.id" in asked.outcomes[1].message
    execution_id = asked.answers[0].execution_id
    updates = [
        cpb.ExecutionUpdate(bid_accepted=cpb.BidAcceptedRequest(execution_id=execution_id)),
        cpb.ExecutionUpdate(bid_accepted=cpb.BidAcceptedRequest(execution_id="e-unknown")),
        cpb.ExecutionUpdate(),
        cpb.ExecutionUpdate(bid_accepted=cpb.BidAcceptedRequest(execution_id=execution_id)),  # a repeat
    ]
    updated = await channels.call(client.stub.UpdateExecutions, cpb.UpdateExecutionsRequest(updates=updates))
    assert [(o.code, o.message) for o in updated.outcomes] == [
        ("", ""),
        ("NOT_FOUND", "execution e-unknown not found"),
        ("INVALID_ARGUMENT", "update: an execution update names no update (bid_accepted, bid_rejected, …)"),
        ("", ""),
    ]
    done = await requester.servicer.wait_for("OnRunComplete", for_execution(execution_id))
    assert done.node_id == node.node_id


async def test_a_run_longer_than_the_job_timeout_is_a_compute_failure(requester, computes, connect):
    node = await computes(noop_delay=30)
    client = connect(node)
    bid = await client.ask(noop_job(timeout=0.5))
    await client.accept(bid.execution_id)
    failure = await requester.servicer.wait_for("OnComputeFailure", for_execution(bid.execution_id))
    assert failure.error == "execution timed out after 0.5s" and failure.node_id == node.node_id


async def test_cancel_stops_a_run(requester, computes, connect):
    node = await computes(noop_delay=30)
    client = connect(node)
    bid = await client.ask(noop_job())
    await client.accept(bid.execution_id)
    await client.wait_for_state("Running")
    await channels.call(
        client.stub.CancelExecution,
        cpb.CancelExecutionRequest(execution_id=bid.execution_id, reason="timed out"),
    )
    cancelled = await requester.servicer.wait_for("OnCancelComplete", for_execution(bid.execution_id))
    assert cancelled.node_id == node.node_id
    await client.wait_for_state("Cancelled")
    assert (await client.info()).available_capacity == (await client.info()).node.total_capacity


async def test_a_callback_is_retried_while_the_requester_is_unavailable(requester, computes, connect):
    node = await computes()
    client = connect(node)
    requester.servicer.fail_next["OnRunComplete"] = 2
    bid = await client.ask(noop_job())
    await client.accept(bid.execution_id)
    await requester.servicer.wait_for("OnRunComplete", for_execution(bid.execution_id))
    refused = [c for c, _ in requester.servicer.calls if c == "OnRunComplete:refused"]
    assert len(refused) == 2


async def test_a_restarted_node_keeps_its_executions(requester, computes, connect):
    node = await computes(noop_delay=30, node_id="")
    client = connect(node)
    finished = await client.ask(noop_job())
    running = await client.ask(noop_job(timeout=60))
    waiting = await client.ask(noop_job())
    await client.accept(running.execution_id)
    await client.wait_for_state("Running")
    await channels.call(
        client.stub.BidRejected, cpb.BidRejectedRequest(execution_id=finished.execution_id, reason="full")
    )
    node_id = node.node_id
    await node.stop(grace=1.0)

    again = await computes()
    assert again.node_id == node_id
    client = connect(again)
    failure = await requester.servicer.wait_for("OnComputeFailure", for_execution(running.execution_id))
    assert failure.error == "compute node restarted during execution" and failure.node_id == node_id
    counts = await client.executions_by_state()
    assert (counts["Created"], counts["Failed"], counts["Cancelled"]) == (1, 1, 1)
    # The restarted node still knows every execution: none is NOT_FOUND.
    with pytest.raises(FailedPreconditionError, match="can no longer be accepted"):
        await client.accept(finished.execution_id)
    await client.accept(waiting.execution_id)  # the new process runs without delay
    done = await requester.servicer.wait_for("OnRunComplete", for_execution(waiting.execution_id))
    assert done.node_id == node_id
