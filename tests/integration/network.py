"""A whole network in one test process: the verifier, the requester and N compute nodes as real gRPC
servers on 127.0.0.1:0, each with its own SQLite files, talking to each other over gRPC."""

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.model import pb, states
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.compute import app as compute_app
from bacalhau_grpc.compute.settings import ComputeSettings
from bacalhau_grpc.pb.requester.v1 import requester_node_service_pb2_grpc as rngrpc
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from bacalhau_grpc.requester import app as requester_app
from bacalhau_grpc.requester.settings import RequesterSettings
from bacalhau_grpc.verifier import app as verifier_app
from bacalhau_grpc.verifier.settings import VerifierSettings

E = pb.JobEventType
REQUESTER_SERVICE = "bacalhau.requester.v1.RequesterService"


@dataclass
class Network:
    root: Path
    verifier: object = None
    requester: object = None
    computes: list = field(default_factory=list)
    requester_overrides: dict = field(default_factory=dict)
    _channel: object = None
    _clients: dict = field(default_factory=dict)

    async def start(
        self, nodes: int = 1, *, bad_actors: int = 0, compute: list[dict] | None = None, **requester
    ):
        """Starts the verifier, the requester and `nodes` compute nodes (the last `bad_actors` lie)."""
        self.requester_overrides = requester
        self.verifier = await verifier_app.start(VerifierSettings(host="127.0.0.1", port=0))
        await self.start_requester()
        per_node = compute or [{} for _ in range(nodes)]
        for i, overrides in enumerate(per_node):
            if i >= len(per_node) - bad_actors:
                overrides = {"bad_actor": True, **overrides}
            await self.add_compute(**overrides)
        await self.wait_for_nodes(len(per_node))
        return self

    async def start_requester(self):
        settings = RequesterSettings(
            host="127.0.0.1",
            port=0,
            data_dir=self.root / "requester",
            verifier_address=self.verifier.address,
            **self.requester_overrides,
        )
        self.requester = await requester_app.start(settings)
        self._channel = channels.open_channel(self.requester.address)
        return self.requester

    async def add_compute(self, **overrides):
        index = len(self.computes)
        settings = ComputeSettings(
            host="127.0.0.1",
            port=0,
            data_dir=self.root / f"compute-{index}",
            requester_address=self.requester.address,
            **overrides,
        )
        node = await compute_app.start(settings)
        if settings.noop_error:  # the executor's failure knob, whether or not the app passes it on
            node.node.executors[pb.Engine.ENGINE_NOOP].error = settings.noop_error
        self.computes.append(node)
        return node

    def compute_by_id(self, node_id: str):
        return next(n for n in self.computes if n.node_id == node_id)

    def client(self, name: str = "test-client") -> ClientKey:
        """The signing key of the client `name` (its own directory under the network's root)."""
        if name not in self._clients:
            self._clients[name] = ClientKey.load_or_create(self.root / "clients" / name)
        return self._clients[name]

    def _key(self, client: "str | ClientKey") -> ClientKey:
        return client if isinstance(client, ClientKey) else self.client(client)

    async def cancel(
        self, job_id: str, client: "str | ClientKey" = "test-client", reason: str = ""
    ) -> pb.Job:
        """Cancels the job as `client` (a client name or a key; the call is signed by its key): only its
        owner may."""
        request = rpb.CancelJobRequest(job_id=job_id, reason=reason)
        metadata = self._key(client).call_metadata(f"/{REQUESTER_SERVICE}/CancelJob", request)
        return (await channels.call(self.stub.CancelJob, request, metadata=metadata)).job

    async def wait_until(self, predicate, timeout: float = 20.0, what: str = "condition"):
        """Polls `predicate` (sync or async) until it returns a true value; returns that value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    @property
    def stub(self) -> rgrpc.RequesterServiceStub:
        return rgrpc.RequesterServiceStub(self._channel)

    @property
    def node_stub(self) -> rngrpc.RequesterNodeServiceStub:
        """The requester's node protocol (what compute nodes call)."""
        return rngrpc.RequesterNodeServiceStub(self._channel)

    async def wait_for_nodes(self, count: int, timeout: float = 20.0):
        """Waits until `count` compute nodes have registered with the requester (each bids once asked)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.requester.live_node_count() >= count:
                return
            await asyncio.sleep(0.02)
        raise TimeoutError(f"only {await self.requester.live_node_count()} of {count} nodes registered")

    async def submit(
        self, job: pb.Job, client: "str | ClientKey" = "test-client", *, context: bytes = b""
    ) -> pb.Job:
        """Submits the job signed by `client` (a client name or a key), with an optional context archive
        (tar.gz, mounted at /job); the job is that client's."""
        request = self._key(client).signed_submit_request(job, context)
        response = await channels.call(self.stub.SubmitJob, request)
        return response.job

    async def wait_for_end(self, job_id: str, timeout: float = 30.0) -> list[pb.JobEvent]:
        """Follows the job's events until the job ends; returns them all."""
        events = []

        async def follow():
            async for item in self.stub.WatchJobEvents(rpb.WatchJobEventsRequest(job_id=job_id)):
                events.append(item.event)

        await asyncio.wait_for(follow(), timeout)
        return events

    async def wait_for_event(self, job_id: str, event_type: int, timeout: float = 20.0) -> pb.JobEvent:
        """Follows the job's events until one of `event_type` arrives; returns it."""

        async def follow():
            async for item in self.stub.WatchJobEvents(rpb.WatchJobEventsRequest(job_id=job_id)):
                if item.event.event_name == event_type:
                    return item.event
            raise AssertionError(f"the job ended without a {pb.JobEventType.Name(event_type)} event")

        return await asyncio.wait_for(follow(), timeout)

    async def get_job(self, job_id: str) -> pb.JobWithInfo:
        return (await channels.call(self.stub.GetJob, rpb.GetJobRequest(job_id=job_id))).job

    async def stop(self):
        if self._channel is not None:
            await self._channel.close()
        for node in self.computes:
            await node.stop(grace=1.0)
        if self.requester is not None:
            await self.requester.stop(grace=1.0)
        if self.verifier is not None:
            await self.verifier.stop(grace=1.0)


def noop_job(
    *,
    concurrency: int = 1,
    verifier: int = pb.Verifier.VERIFIER_NOOP,
    confidence: int = 0,
    min_bids: int = 0,
    timeout: float = 0,
) -> pb.Job:
    job = pb.Job(api_version="V1beta1")
    job.spec.engine = pb.Engine.ENGINE_NOOP
    job.spec.verifier = verifier
    job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
    job.spec.timeout = timeout
    job.deal.concurrency = concurrency
    job.deal.confidence = confidence
    job.deal.min_bids = min_bids
    return job


def names(events: list[pb.JobEvent]) -> list[str]:
    return [pb.JobEventType.Name(e.event_name).removeprefix("JOB_EVENT_TYPE_") for e in events]


def of_type(events: list[pb.JobEvent], event_type: int) -> list[pb.JobEvent]:
    return [e for e in events if e.event_name == event_type]


def final_row_states(job: pb.JobWithInfo) -> dict[str, int]:
    return {node: shard.state for node, ns in job.job_state.nodes.items() for shard in ns.shards.values()}


__all__ = ["E", "Network", "final_row_states", "names", "noop_job", "of_type", "states"]
