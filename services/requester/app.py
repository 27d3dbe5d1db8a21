"""The requester process: store, domain, clients and the gRPC server wired together (the CLI's entry).

running = await start(RequesterSettings(data_dir=..., verifier_address=...))
...  # running.address (client API), running.node_address (node protocol), running.node_id, running.requester
await running.stop()
"""

import logging
import secrets
from dataclasses import dataclass

from bacalhau_grpc.common import node_ids
from bacalhau_grpc.common.access import Access, guarded
from bacalhau_grpc.common.authz import OPEN, Policy
from bacalhau_grpc.common.caller import ClientCallAuthenticator
from bacalhau_grpc.common.content.listing import Listing, first_listing, ipfs_listing, store_listing
from bacalhau_grpc.common.content.service import SERVICE_NAME as CONTENT_SERVICE_NAME
from bacalhau_grpc.common.content.service import ContentServiceServicer
from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.ipfs import IpfsClient
from bacalhau_grpc.common.metrics import NO_METRICS, Metrics
from bacalhau_grpc.common.server import RunningNode, RunningServer, ServiceBinding, start_server
from bacalhau_grpc.common.telemetry import (
    JobTraces,
    OtelMetrics,
    node_metrics,
    setup_metrics,
    setup_telemetry,
)
from bacalhau_grpc.common.transport import Transport, transport_of
from bacalhau_grpc.pb.content.v1 import content_service_pb2_grpc as cgrpc
from bacalhau_grpc.pb.requester.v1 import requester_node_service_pb2_grpc as rngrpc
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from bacalhau_grpc.requester.api.access import NODE_CONTENT_POLICY, NODE_POLICY, OPERATOR_POLICY
from bacalhau_grpc.requester.api.node_servicer import SERVICE_NAME as NODE_SERVICE_NAME
from bacalhau_grpc.requester.api.node_servicer import RequesterNodeServicer
from bacalhau_grpc.requester.api.servicer import SERVICE_NAME, RequesterServicer
from bacalhau_grpc.requester.clients.compute import GrpcComputeClient
from bacalhau_grpc.requester.clients.content import ContentHub
from bacalhau_grpc.requester.clients.verifier import GrpcVerifierClient
from bacalhau_grpc.requester.domain.lifecycle import Requester
from bacalhau_grpc.requester.domain.retention import JobRetention
from bacalhau_grpc.requester.settings import RequesterSettings
from bacalhau_grpc.requester.store.sqlite import RequesterStore

COMPONENT = "requester"
log = logging.getLogger(__name__)


def new_node_id() -> str:
    return f"requester-{secrets.token_hex(6)}"


def resolve_node_id(settings: RequesterSettings) -> str:
    """The configured node ID; else the one kept in data_dir/node_id; else a new one, kept there."""
    return node_ids.resolve_node_id(settings.data_dir, settings.node_id, new_node_id())


@dataclass
class RunningRequester(RunningNode):
    # `server` serves the client API; `node_server` the node protocol (the same one without TLS).
    node_server: RunningServer
    requester: Requester
    store: RequesterStore
    compute: GrpcComputeClient
    verifier: GrpcVerifierClient
    settings: RequesterSettings
    # The IPFS daemon's client sharded jobs' inputs are listed with (settings.ipfs_connect), if any.
    ipfs: IpfsClient | None = None
    # The metrics port (`telemetry.OtelMetrics` when metrics are on) and the /metrics endpoint, if any.
    metrics: Metrics = NO_METRICS
    metrics_address: str = ""
    # The retention collector (settings.job_retention, node_retention, retention_interval).
    retention: JobRetention | None = None

    @property
    def node_address(self) -> str:
        """Where compute nodes call the requester (with TLS its node port, mutual TLS)."""
        return self.node_server.address

    async def live_node_count(self) -> int:
        """How many compute nodes are registered and heard from within node_timeout."""
        return self.requester.live_node_count()

    async def stop(self, grace: float = 5.0) -> None:
        """Refuse new calls (health NOT_SERVING, then the server stops with `grace`), let outbound calls in
        flight finish, commit everything to the store, close the channels."""
        try:
            self.requester.close_watches()
            for server in {id(s): s for s in (self.server, self.node_server)}.values():
                await server.stop(grace)
            if self.retention is not None:
                await self.retention.stop()
            await self.requester.stop(grace)
        finally:
            try:
                await self.store.close()
            finally:
                if isinstance(self.metrics, OtelMetrics):
                    self.metrics.close()
                await self.compute.close()
                await self.verifier.close()
                if self.ipfs is not None:
                    await self.ipfs.close()


def _listeners(
    settings: RequesterSettings,
    requester: Requester,
    content: ContentStore,
    hub: ContentHub,
    transport: Transport,
) -> list[tuple[int, list[ServiceBinding], bool]]:
    """What the requester serves on which port: (port, services, mutual TLS?).

    With TLS, two ports: the client API (RequesterService, ContentService) on `port` with server-only TLS,
    clients being who their signatures say; the node protocol (RequesterNodeService) on `node_port` with
    mutual TLS, only compute certificates, each speaking for itself; the client API there too, for
    operators' client certificates. Without TLS, one plaintext port serves everything.
    """
    clients = ClientCallAuthenticator()

    def client_api(policy: Policy) -> ServiceBinding:
        servicer = RequesterServicer(
            requester, allow_unsigned=settings.allow_unsigned, max_message_bytes=settings.max_message_bytes
        )
        access = Access(SERVICE_NAME, policy, transport=transport, clients=clients)
        return ServiceBinding(rgrpc.add_RequesterServiceServicer_to_server, servicer, SERVICE_NAME, access)

    def content_service(policy: Policy) -> ServiceBinding:
        # Content by CID stays public to clients whatever the job visibility: content-addressed, it is
        # found only by whoever knows the CID (compute nodes fetch contexts here too).
        servicer = ContentServiceServicer(content, fallback=hub.fetch)
        access = guarded(CONTENT_SERVICE_NAME, policy, transport)
        return ServiceBinding(
            cgrpc.add_ContentServiceServicer_to_server, servicer, CONTENT_SERVICE_NAME, access
        )

    node_protocol = ServiceBinding(
        rngrpc.add_RequesterNodeServiceServicer_to_server,
        RequesterNodeServicer(requester),
        NODE_SERVICE_NAME,
        guarded(NODE_SERVICE_NAME, NODE_POLICY, transport),
    )
    if not transport.secure:
        return [(settings.port, [client_api(OPEN), node_protocol, content_service(OPEN)], False)]
    return [
        (settings.port, [client_api(OPEN), content_service(OPEN)], False),
        (
            settings.node_port,
            [node_protocol, client_api(OPERATOR_POLICY), content_service(NODE_CONTENT_POLICY)],
            True,
        ),
    ]


def input_listing(content: ContentStore, ipfs: IpfsClient | None) -> Listing:
    """How sharded jobs' IPFS inputs are listed at submission: from the content the requester holds,
    then, with an IPFS daemon (settings.ipfs_connect), from the daemon."""
    held = store_listing(content, holder="the requester")
    return held if ipfs is None else first_listing(held, ipfs_listing(ipfs))


async def start(settings: RequesterSettings) -> RunningRequester:
    """Open the store, reload the requester's jobs, then serve (tracing is set up first when configured)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    node_id = resolve_node_id(settings)
    setup_telemetry(COMPONENT, node_id)
    metrics_address = setup_metrics(COMPONENT, node_id, port=settings.metrics_port, host=settings.host)
    metrics = node_metrics(node_id)
    store = RequesterStore(settings.db_path, metrics=metrics)
    await store.open()
    content = ContentStore(settings.data_dir / "content")
    transport = transport_of(settings)
    credentials = transport.channel_credentials()
    compute = GrpcComputeClient(call_timeout=settings.call_timeout, credentials=credentials)
    verifier = GrpcVerifierClient(
        settings.verifier_address, call_timeout=settings.call_timeout, credentials=credentials
    )
    ipfs = IpfsClient(settings.ipfs_connect) if settings.ipfs_connect else None
    # Every span of a job - and the calls made inside it - in the job's one trace.
    traces = JobTraces()
    requester = Requester(
        node_id=node_id,
        store=store,
        compute=compute,
        verifier=verifier,
        negotiation_timeout=settings.negotiation_timeout,
        default_job_timeout=settings.default_job_timeout,
        node_timeout=settings.node_timeout,
        heartbeat_interval=settings.heartbeat_interval,
        max_active_jobs=settings.max_active_jobs,
        max_active_jobs_per_client=settings.client_job_limit,
        max_followers_per_client=settings.max_followers_per_client,
        limits=settings.submission_limits,
        span=traces.span,
        # Each job's trace ID is kept with it (GetJob), and restored for active jobs after a restart.
        traces=traces,
        content=content,
        # Sharded jobs: IPFS inputs are listed from the content the requester holds, then (with
        # ipfs_connect) from the IPFS daemon.
        listing=input_listing(content, ipfs),
        job_visibility=settings.job_visibility,
        metrics=metrics,
    )
    if isinstance(metrics, OtelMetrics):
        observe_requester(metrics, requester)
    hub = ContentHub(content, requester.live_node_addresses, credentials=credentials)
    retention = JobRetention(
        requester,
        store,
        job_retention=settings.job_retention,
        node_retention=settings.node_retention,
        interval=settings.retention_interval,
        content=content,
    )
    servers: list[RunningServer] = []
    try:
        await requester.start()
        retention.start()
        for port, bindings, require_client_auth in _listeners(settings, requester, content, hub, transport):
            health = settings.health_port if not servers and settings.health_port >= 0 else None
            servers.append(
                await start_server(
                    component=COMPONENT,
                    node_id=node_id,
                    services=bindings,
                    host=settings.host,
                    port=port,
                    credentials=transport.server_credentials(require_client_auth=require_client_auth),
                    health_port=health,
                    max_concurrent_rpcs=settings.max_concurrent_rpcs,
                    max_message_bytes=settings.max_message_bytes,
                )
            )
    except BaseException:
        if isinstance(metrics, OtelMetrics):
            metrics.close()
        for server in servers:
            await server.stop(0)
        await retention.stop()
        await requester.stop(0)
        await store.close()
        await compute.close()
        await verifier.close()
        if ipfs is not None:
            await ipfs.close()
        raise
    return RunningRequester(
        node_id=node_id,
        server=servers[0],
        node_server=servers[-1],
        requester=requester,
        store=store,
        compute=compute,
        verifier=verifier,
        settings=settings,
        ipfs=ipfs,
        metrics=metrics,
        metrics_address=metrics_address,
        retention=retention,
    )


def observe_requester(metrics: OtelMetrics, requester: Requester) -> None:
    """The requester's gauges, read from its state at each collection."""
    metrics.observe(
        "bacalhau.jobs.active", "{job}", "Jobs in progress (not ended)", lambda: [(requester.active_jobs, {})]
    )
    metrics.observe(
        "bacalhau.submissions.waiting",
        "{submission}",
        "Submissions waiting for room (max_active_jobs jobs in progress)",
        lambda: [(requester.waiting_submissions, {})],
    )
