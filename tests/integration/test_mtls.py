"""The network over mutual TLS (real servers on 127.0.0.1:0, real certificates from `common.certs`): a job
runs end to end, and every way an outsider or a node could act as someone else is refused with the right
code and leaves the job, its events and the node table as they were (see "Trust and security" in
docs/architecture.md).

The requester serves its client API on one port (server-only TLS) and the node protocol on another
(mutual TLS); compute nodes and the verifier accept only cluster certificates of the right role.
"""

import asyncio
import datetime as dt

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bacalhau_grpc.common import certs, channels, tls
from bacalhau_grpc.common.certs import client_id_of_certificate
from bacalhau_grpc.common.errors import PermissionDeniedError, UnauthenticatedError, UnavailableError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.compute import app as compute_app
from bacalhau_grpc.compute.settings import ComputeSettings
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2 as cpb
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2_grpc as cgrpc
from bacalhau_grpc.pb.requester.v1 import requester_node_service_pb2_grpc as rngrpc
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2 as vpb
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2_grpc as vgrpc
from bacalhau_grpc.requester import app as requester_app
from bacalhau_grpc.requester.settings import RequesterSettings
from bacalhau_grpc.verifier import app as verifier_app
from bacalhau_grpc.verifier.settings import VerifierSettings

E = pb.JobEventType
REQUESTER_ID, VERIFIER_ID = "requester-tls", "verifier-tls"
NODES = ("node-a", "node-b")
CLIENT_API = "bacalhau.requester.v1.RequesterService"


def files(issued: certs.IssuedCert) -> dict[str, str]:
    return {"tls_cert": str(issued.cert), "tls_key": str(issued.key), "tls_ca": str(issued.ca)}


def credentials(issued: certs.IssuedCert | None, ca: "certs.CaFiles") -> grpc.ChannelCredentials:
    """A client's credentials: the cluster CA, and `issued`'s certificate when given."""
    ca_pem = ca.cert.read_bytes()
    if issued is None:
        return tls.channel_credentials(ca_pem)
    return tls.channel_credentials(ca_pem, issued.cert.read_bytes(), issued.key.read_bytes())


class TlsNetwork:
    def __init__(self, root) -> None:
        self.root = root
        self.ca = certs.create_ca(root / "ca")
        self.issued = {
            name: certs.issue(root / "ca", role=role, node_id=name, out_dir=root / "tls")
            for role, name in [
                ("requester", REQUESTER_ID),
                ("verifier", VERIFIER_ID),
                ("compute", NODES[0]),
                ("compute", NODES[1]),
                ("client", "operator"),
            ]
        }
        self.verifier = self.requester = None
        self.computes = []
        self.channels: list[grpc.aio.Channel] = []

    async def start(self) -> "TlsNetwork":
        self.verifier = await verifier_app.start(
            VerifierSettings(node_id=VERIFIER_ID, **files(self.issued[VERIFIER_ID]))
        )
        self.requester = await requester_app.start(
            RequesterSettings(
                node_id=REQUESTER_ID,
                data_dir=self.root / "requester",
                verifier_address=self.verifier.address,
                **files(self.issued[REQUESTER_ID]),
            )
        )
        for index, node_id in enumerate(NODES):
            self.computes.append(
                await compute_app.start(
                    ComputeSettings(
                        node_id=node_id,
                        data_dir=self.root / f"compute-{index}",
                        requester_address=self.requester.node_address,
                        noop_stdout="hello over TLS",
                        **files(self.issued[node_id]),
                    )
                )
            )
        await wait_for(lambda: self.requester.requester.live_node_count() == len(NODES), "the nodes")
        return self

    def channel(self, address: str, as_who: str | None) -> grpc.aio.Channel:
        """A channel to `address`, presenting the certificate of `as_who` (None: none, CA only)."""
        issued = self.issued[as_who] if as_who is not None else None
        channel = channels.open_channel(address, credentials=credentials(issued, self.ca))
        self.channels.append(channel)
        return channel

    def node_stub(self, as_who: str | None) -> rngrpc.RequesterNodeServiceStub:
        return rngrpc.RequesterNodeServiceStub(self.channel(self.requester.node_address, as_who))

    def node_table(self) -> dict[str, str]:
        return {node_id: self.requester.requester.nodes.address(node_id) for node_id in NODES}

    async def stop(self) -> None:
        for channel in self.channels:
            await channel.close()
        for node in self.computes:
            await node.stop(0.5)
        for service in (self.requester, self.verifier):
            if service is not None:
                await service.stop(0.5)


async def wait_for(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def network(tmp_path):
    running = TlsNetwork(tmp_path)
    try:
        yield await running.start()
    finally:
        await running.stop()


def noop_job() -> pb.Job:
    job = pb.Job()
    job.spec.engine = pb.Engine.ENGINE_NOOP
    job.spec.verifier = pb.Verifier.VERIFIER_NOOP
    job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
    job.deal.concurrency = 1
    return job


async def submit(network: TlsNetwork, key: ClientKey) -> pb.Job:
    """A signed submission on the client API (server-only TLS, no client certificate)."""
    stub = rgrpc.RequesterServiceStub(network.channel(network.requester.address, None))
    return (await channels.call(stub.SubmitJob, key.signed_submit_request(noop_job()))).job


async def ended(network: TlsNetwork, job_id: str) -> list[pb.JobEvent]:
    record = await network.requester.requester.job_record(job_id)
    await wait_for(lambda: record.finished, f"job {job_id} to end")
    return list((await network.requester.requester.get_job(job_id)).job_events)


async def test_a_job_runs_end_to_end_over_mutual_tls(network, tmp_path):
    events = await ended(network, (await submit(network, ClientKey.generate())).id)
    assert events[-1].event_name == E.JOB_EVENT_TYPE_RESULTS_PUBLISHED
    assert events[-1].source_node_id in NODES
    # the client port is TLS without client certificates; the node port is not served there
    stub = rngrpc.RequesterNodeServiceStub(network.channel(network.requester.address, None))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Heartbeat(rpb.HeartbeatRequest(node_id=NODES[0]), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_node_cannot_act_as_another_node_and_nothing_changes(network):
    before = network.node_table()
    as_b = network.node_stub(NODES[1])
    impostor = pb.NodeInfo(node_id=NODES[0], address="127.0.0.1:1", engines=[pb.Engine.ENGINE_NOOP])
    with pytest.raises(PermissionDeniedError, match="compute node node-b may act only as itself"):
        await channels.call(as_b.RegisterNode, rpb.RegisterNodeRequest(node=impostor))
    with pytest.raises(PermissionDeniedError, match="may act only as itself"):
        await channels.call(as_b.Heartbeat, rpb.HeartbeatRequest(node_id=NODES[0]))
    report = rpb.ExecutionReport(
        run_complete=rpb.OnRunCompleteRequest(job_id="j", node_id=NODES[0], execution_id="e")
    )
    with pytest.raises(PermissionDeniedError, match="may act only as itself"):
        await channels.call(as_b.ReportExecutions, rpb.ReportExecutionsRequest(reports=[report]))
    assert network.node_table() == before


async def test_only_compute_certificates_speak_the_node_protocol(network):
    job = await submit(network, ClientKey.generate())
    events = await ended(network, job.id)
    request = rpb.OnRunCompleteRequest(job_id=job.id, node_id=REQUESTER_ID, execution_id="e-x")
    for who in (REQUESTER_ID, VERIFIER_ID, "operator"):
        with pytest.raises(PermissionDeniedError, match="is for compute nodes"):
            await channels.call(network.node_stub(who).OnRunComplete, request)
    # without a certificate the handshake itself fails: the call never reaches the requester
    with pytest.raises(UnavailableError):
        await channels.call(network.node_stub(None).OnRunComplete, request, timeout=5)
    assert list((await network.requester.requester.get_job(job.id)).job_events) == events


async def test_compute_nodes_and_the_verifier_take_orders_only_from_the_requester(network):
    node = network.computes[0]
    as_other_node = cgrpc.ComputeServiceStub(network.channel(node.address, NODES[1]))
    job = noop_job()
    job.id = "job-from-a-stranger"
    with pytest.raises(PermissionDeniedError, match="is for requester nodes"):
        await channels.call(as_other_node.AskForBid, cpb.AskForBidRequest(job=job))
    for method, request in [
        (as_other_node.BidAccepted, cpb.BidAcceptedRequest(execution_id="e-1")),
        (as_other_node.CancelExecution, cpb.CancelExecutionRequest(execution_id="e-1")),
    ]:
        with pytest.raises(PermissionDeniedError, match="is for requester nodes"):
            await channels.call(method, request)
    assert not any(node.node.store.counts_by_state().values())  # nothing was taken
    # what the node is, any node of the cluster may ask
    info = await channels.call(as_other_node.GetNodeInfo, cpb.GetNodeInfoRequest())
    assert info.node.node_id == NODES[0]
    verifier = vgrpc.VerifierServiceStub(network.channel(network.verifier.address, NODES[1]))
    with pytest.raises(PermissionDeniedError, match="is for requester nodes"):
        await channels.call(verifier.Verify, vpb.VerifyRequest(job=job))


async def test_foreign_expired_and_missing_certificates_are_refused_at_the_handshake(network, tmp_path):
    foreign_ca = certs.create_ca(tmp_path / "other-ca")
    foreign = certs.issue(tmp_path / "other-ca", role="compute", node_id=NODES[0], out_dir=tmp_path / "x")
    expired = certs.issue(
        tmp_path / "ca",
        role="compute",
        node_id=NODES[0],
        days=1,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=3),
        out_dir=tmp_path / "expired",
    )
    before = network.node_table()
    register = rpb.RegisterNodeRequest(node=pb.NodeInfo(node_id=NODES[0], address="127.0.0.1:1"))
    for issued, ca in [
        (foreign, foreign_ca),
        (foreign, network.ca),
        (expired, network.ca),
        (None, network.ca),
    ]:
        channel = channels.open_channel(network.requester.node_address, credentials=credentials(issued, ca))
        network.channels.append(channel)
        with pytest.raises(UnavailableError):
            await channels.call(rngrpc.RequesterNodeServiceStub(channel).RegisterNode, register, timeout=5)
    # plaintext against the TLS port fails at once too
    async with grpc.aio.insecure_channel(network.requester.node_address) as plain:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await rngrpc.RequesterNodeServiceStub(plain).RegisterNode(register, timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert network.node_table() == before


async def test_an_operator_certificate_is_a_client_identity_on_the_node_port(network):
    operator = network.issued["operator"]
    operator_id = client_id_of_certificate(operator.cert.read_bytes())
    stub = rgrpc.RequesterServiceStub(network.channel(network.requester.node_address, "operator"))
    # no signing helper: the certificate says who submits and who may cancel
    request = rpb.SubmitJobRequest(payload=pb.JobCreatePayload(job=noop_job()))
    job = (await channels.call(stub.SubmitJob, request)).job
    assert job.client_id == operator_id
    someone = await submit(network, ClientKey.generate())
    with pytest.raises(PermissionDeniedError):
        await channels.call(stub.CancelJob, rpb.CancelJobRequest(job_id=someone.id))
    # a compute certificate is not a client
    as_node = rgrpc.RequesterServiceStub(network.channel(network.requester.node_address, NODES[0]))
    with pytest.raises(PermissionDeniedError, match="is for client nodes"):
        await channels.call(as_node.CancelJob, rpb.CancelJobRequest(job_id=job.id))
    cancelled = (await channels.call(stub.CancelJob, rpb.CancelJobRequest(job_id=job.id))).job
    assert cancelled.id == job.id


async def test_clients_without_certificates_are_who_their_signatures_say(network):
    owner, stranger = ClientKey.generate(), ClientKey.generate()
    job = await submit(network, owner)
    stub = rgrpc.RequesterServiceStub(network.channel(network.requester.address, None))
    cancel = rpb.CancelJobRequest(job_id=job.id)
    with pytest.raises(UnauthenticatedError, match="needs your identity"):
        await channels.call(stub.CancelJob, cancel)
    metadata = stranger.call_metadata(f"/{CLIENT_API}/CancelJob", cancel)
    with pytest.raises(PermissionDeniedError):
        await channels.call(stub.CancelJob, cancel, metadata=metadata)


async def test_probes_reach_health_alone_on_a_plaintext_port(tmp_path):
    ca = certs.create_ca(tmp_path / "ca")
    issued = certs.issue(tmp_path / "ca", role="verifier", node_id=VERIFIER_ID, out_dir=tmp_path / "tls")
    verifier = await verifier_app.start(VerifierSettings(node_id=VERIFIER_ID, health_port=0, **files(issued)))
    try:
        health_address = f"127.0.0.1:{verifier.server.health_port}"
        async with grpc.aio.insecure_channel(health_address) as plain:
            answer = await health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as raised:  # nothing else is served there
                await vgrpc.VerifierServiceStub(plain).GetVerifierInfo(
                    vpb.GetVerifierInfoRequest(), timeout=5
                )
            assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        async with grpc.aio.insecure_channel(verifier.address) as plain:  # the service port needs TLS
            with pytest.raises(grpc.aio.AioRpcError):
                await health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert ca.cert.exists()
    finally:
        await verifier.stop(0.5)
