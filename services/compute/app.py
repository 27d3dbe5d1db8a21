"""The compute node process: store, domain, gRPC server and requester client wired together (the CLI's
`serve --node-type compute`).

    running = await start(ComputeSettings(data_dir=..., requester_address="127.0.0.1:1234"))
    running.address, running.port, running.node_id
    await running.stop(grace=5.0)

Start order: node ID (saved in data_dir/node_id), telemetry, SQLite store (loads the executions a
previous process left), the gRPC server, then - in the background - registration with the requester
(retried until it answers) and heartbeats. Once registered, executions a previous process left
mid-run are failed and reported ("compute node restarted during execution").

The domain (`compute/domain/`) sees only its ports (`domain/ports.py`); the concrete parts are made
here: the machine's capacity (`compute/host.py`), the executors, the volumes (`storage/`, as
`RunInputs`), the publishers, the store and the requester client.
"""

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bacalhau_grpc.common import node_ids
from bacalhau_grpc.common.access import guarded
from bacalhau_grpc.common.content.client import fetch_content
from bacalhau_grpc.common.content.service import SERVICE_NAME as CONTENT_SERVICE_NAME
from bacalhau_grpc.common.content.service import ContentServiceServicer
from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.ipfs import IpfsClient
from bacalhau_grpc.common.metrics import NO_METRICS, Metrics
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.model.version import build_version_info
from bacalhau_grpc.common.server import RunningNode, ServiceBinding, start_server
from bacalhau_grpc.common.telemetry import (
    JobTraces,
    OtelMetrics,
    node_metrics,
    setup_metrics,
    setup_telemetry,
)
from bacalhau_grpc.common.transport import transport_of
from bacalhau_grpc.compute.api.access import COMPUTE_POLICY, CONTENT_POLICY
from bacalhau_grpc.compute.api.servicer import SERVICE_NAME, ComputeServiceServicer
from bacalhau_grpc.compute.clients.requester import RequesterClient
from bacalhau_grpc.compute.domain.bidding import ANYWHERE, LOCAL, BidPolicy
from bacalhau_grpc.compute.domain.capacity import Limits, parse_limits, resolve_limits
from bacalhau_grpc.compute.domain.node import ComputeNode
from bacalhau_grpc.compute.domain.ports import Executor, HostCapacity, Publisher
from bacalhau_grpc.compute.domain.proposals import Proposer
from bacalhau_grpc.compute.domain.retention import ExecutionRetention
from bacalhau_grpc.compute.executors.docker import DockerExecutor
from bacalhau_grpc.compute.executors.noop import NoopExecutor
from bacalhau_grpc.compute.executors.python_wasm import LanguageExecutor, PythonWasmExecutor
from bacalhau_grpc.compute.executors.wasm import WasmExecutor
from bacalhau_grpc.compute.executors.wasm_runtime import WasmRuntime
from bacalhau_grpc.compute.host import machine_capacity
from bacalhau_grpc.compute.publishers.base import NoopPublisher
from bacalhau_grpc.compute.publishers.content import ContentPublisher
from bacalhau_grpc.compute.publishers.ipfs import IpfsPublisher
from bacalhau_grpc.compute.settings import ComputeSettings
from bacalhau_grpc.compute.storage.base import StorageProvider
from bacalhau_grpc.compute.storage.content import ContentSource
from bacalhau_grpc.compute.storage.either import EitherSource
from bacalhau_grpc.compute.storage.inputs import RunInputs
from bacalhau_grpc.compute.storage.ipfs import IpfsSource
from bacalhau_grpc.compute.storage.local_path import UnsealedPathSource
from bacalhau_grpc.compute.storage.url import UrlSource
from bacalhau_grpc.compute.storage.volumes import Volumes
from bacalhau_grpc.compute.store.executions import SQLiteExecutionStore
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2_grpc as cgrpc
from bacalhau_grpc.pb.content.v1 import content_service_pb2_grpc as content_grpc

log = logging.getLogger(__name__)

COMPONENT = "compute"
# The most a fetched volume may unpack to.
MAX_FETCH_BYTES = 10 * 1024**3
VERIFIERS = (pb.Verifier.VERIFIER_NOOP, pb.Verifier.VERIFIER_DETERMINISTIC)


def new_node_id() -> str:
    return f"node-{secrets.token_hex(6)}"


async def resolve_node_limits(settings: ComputeSettings, host: HostCapacity = machine_capacity) -> Limits:
    """The node's total and per-job limits from its `limit_*` settings and this machine (`host`, measured
    in a thread: counting GPUs runs `nvidia-smi`). InvalidArgumentError names the setting to change."""
    total = parse_limits(
        settings.limit_total_cpu,
        settings.limit_total_memory,
        settings.limit_total_disk,
        settings.limit_total_gpu,
        field_prefix="limit_total_",
    )
    per_job = parse_limits(
        settings.limit_job_cpu,
        settings.limit_job_memory,
        settings.limit_job_disk,
        settings.limit_job_gpu,
        field_prefix="limit_job_",
    )
    machine = await asyncio.to_thread(host, settings.data_dir)
    return resolve_limits(total, per_job, machine)


def bid_policy(settings: ComputeSettings) -> BidPolicy:
    """The bid strategies' settings (`job_selection_*`, the timeout range, the over-commit factor)."""
    return BidPolicy(
        min_timeout=settings.min_job_timeout,
        max_timeout=settings.max_job_timeout,
        locality=LOCAL if settings.job_selection_data_locality == "local" else ANYWHERE,
        reject_stateless=settings.job_selection_reject_stateless,
        probe_http=settings.job_selection_probe_http,
        probe_exec=settings.job_selection_probe_exec,
        probe_timeout=settings.job_selection_probe_timeout,
        over_commit_factor=settings.over_commit_factor,
        max_url_inputs=settings.url_download_max_inputs,
    )


async def start_executors(settings: ComputeSettings, node_id: str, job_disk_limit: int = 0) -> list[Executor]:
    """Every engine's executor, started: those that cannot run here (no Docker engine) say so in the log
    and report themselves not installed, so the node does not bid on their jobs. `job_disk_limit`: the
    most a job that sets no Resources.Disk may write to its outputs (the node's per-job disk limit)."""
    docker = DockerExecutor(
        node_id,
        docker_host=settings.docker_host or None,
        user=settings.docker_user,
        disk_limit=job_disk_limit,
    )
    await docker.start()
    noop = NoopExecutor(
        stdout=settings.noop_stdout,
        stderr=settings.noop_stderr,
        exit_code=settings.noop_exit_code,
        delay=settings.noop_delay,
        error=settings.noop_error,
    )
    runtime = WasmRuntime(cache_dir=settings.wasm_cache_dir)  # one engine and epoch ticker for both
    wasm = WasmExecutor(runtime)
    python = PythonWasmExecutor(runtime)
    return [noop, docker, wasm, python, LanguageExecutor(wasm, python)]


async def prepare_python(executors: Sequence[Executor]) -> None:
    """Compiles the Python interpreter (or loads it from the cache) in the background, so the first
    Python job does not pay for it."""
    for executor in executors:
        if isinstance(executor, PythonWasmExecutor):
            try:
                await executor.prepare()
            except Exception:
                log.exception("could not prepare the Python interpreter")


async def close_executors(executors: Sequence[Executor]) -> None:
    for executor in executors:
        close = getattr(executor, "close", None)
        if close is not None:
            try:
                await close()
            except Exception:
                log.exception("could not close the %s executor", type(executor).__name__)


def node_publishers(content: ContentStore, node_id: str, ipfs: IpfsClient | None) -> list[Publisher]:
    """Noop; Local (results stay in the node's content store, downloaded over ContentService); IPFS: to the
    IPFS daemon when the node has one (`ipfs_connect`), else into the node's own store (the CIDs IPFS
    gives the same folders). Estuary and Filecoin fall back to IPFS."""
    return [
        NoopPublisher(),
        ContentPublisher(content, node_id, pb.Publisher.PUBLISHER_LOCAL),
        IpfsPublisher(ipfs, node_id)
        if ipfs
        else ContentPublisher(content, node_id, pb.Publisher.PUBLISHER_IPFS),
    ]


def storage_volumes(
    settings: ComputeSettings, content: ContentStore, client: RequesterClient, ipfs: IpfsClient | None
) -> Volumes:
    """The node's storage providers: IPFS content by CID (from its own store, else fetched through the
    requester; then from the IPFS daemon when the node has one), unsealed Filecoin data when a path
    template is set, and http(s) URL downloads."""

    def fetch(cid: str) -> Awaitable[Path]:
        return fetch_content(client.channel, cid, content, max_bytes=MAX_FETCH_BYTES)

    by_cid: StorageProvider = ContentSource(content, fetch)
    if ipfs is not None:
        daemon = IpfsSource(ipfs, settings.data_dir / "ipfs-cache", max_bytes=MAX_FETCH_BYTES)
        by_cid = EitherSource(by_cid, daemon)
    providers: list[StorageProvider] = [by_cid]
    if settings.filecoin_unsealed_path:
        providers.append(UnsealedPathSource(settings.filecoin_unsealed_path))
    providers.append(
        UrlSource(
            timeout=settings.url_download_timeout,
            max_bytes=settings.url_download_max_size,
            allow_networks=settings.url_download_networks,
        )
    )
    return Volumes(providers)


@dataclass
class RunningCompute(RunningNode):
    settings: ComputeSettings
    node: ComputeNode
    store: SQLiteExecutionStore
    client: RequesterClient
    servicer: ComputeServiceServicer
    volumes: Volumes
    # The metrics port (`telemetry.OtelMetrics` when metrics are on) and the /metrics endpoint, if any.
    metrics: Metrics = NO_METRICS
    metrics_address: str = ""
    # The retention collector (settings.execution_retention, bid_expiry, retention_interval).
    retention: ExecutionRetention | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopped: bool = False

    async def stop(self, grace: float = 5.0) -> None:
        """Stops serving (in-flight RPCs get `grace` seconds), stops the node's work and the heartbeats,
        then writes the store's last batch and closes it."""
        if self._stopped:
            return
        self._stopped = True
        await self.server.stop(grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.retention is not None:
            await self.retention.stop()
        await self.node.stop(grace=min(grace, 1.0))
        await self.volumes.close()
        await close_executors(list(self.node.all_executors))
        await self.client.close()
        await self.store.close()
        if isinstance(self.metrics, OtelMetrics):
            self.metrics.close()


async def start(settings: ComputeSettings) -> RunningCompute:
    """Starts a compute node; returns once its server listens (registration goes on in the background)."""
    settings.validate()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    node_id = node_ids.resolve_node_id(settings.data_dir, settings.node_id, new_node_id())
    setup_telemetry(COMPONENT, node_id)
    metrics_address = setup_metrics(COMPONENT, node_id, port=settings.metrics_port, host=settings.host)
    metrics = node_metrics(node_id)

    limits = await resolve_node_limits(settings)
    store = SQLiteExecutionStore(settings.db_path, metrics=metrics)
    await store.open()
    # The node's spans and its callbacks to the requester join the trace of their job.
    traces = JobTraces()
    transport = transport_of(settings)
    client = RequesterClient(
        settings.requester_address,
        node_id,
        call_timeout=settings.call_timeout,
        span=traces.span,
        credentials=transport.channel_credentials(),
    )
    content = ContentStore(settings.content_dir)
    executors = await start_executors(settings, node_id, limits.per_job.disk)
    ipfs = IpfsClient(settings.ipfs_connect) if settings.ipfs_connect else None
    volumes = storage_volumes(settings, content, client, ipfs)
    node = ComputeNode(
        node_id=node_id,
        store=store,
        executors=executors,
        publishers=node_publishers(content, node_id, ipfs),
        verifiers=VERIFIERS,
        limits=limits,
        proposer=Proposer(
            node_id,
            result_hash_override=settings.noop_result_hash,
            bad_actor=settings.bad_actor,
            bad_actor_shards=settings.bad_actor_shard_indexes,
        ),
        callbacks=client,
        bid_policy=bid_policy(settings),
        is_local=volumes.is_local,
        volumes=RunInputs(volumes),
        work_root=settings.executions_dir,
        version=build_version_info().git_version,
        span=traces.span,
        metrics=metrics,
    )
    node.load()
    servicer = ComputeServiceServicer(node)
    try:
        server = await start_server(
            component=COMPONENT,
            node_id=node_id,
            services=[
                ServiceBinding(
                    cgrpc.add_ComputeServiceServicer_to_server,
                    servicer,
                    SERVICE_NAME,
                    guarded(SERVICE_NAME, COMPUTE_POLICY, transport),
                ),
                ServiceBinding(
                    content_grpc.add_ContentServiceServicer_to_server,
                    ContentServiceServicer(content),
                    CONTENT_SERVICE_NAME,
                    guarded(CONTENT_SERVICE_NAME, CONTENT_POLICY, transport),
                ),
            ],
            host=settings.host,
            port=settings.port,
            # Every caller is a node of the cluster (mutual TLS) when the node has certificates.
            credentials=transport.server_credentials(require_client_auth=True),
            health_port=None if settings.health_port < 0 else settings.health_port,
        )
    except BaseException:
        await client.close()
        await store.close()
        await close_executors(executors)
        raise
    if isinstance(metrics, OtelMetrics):
        observe_compute(metrics, node)
    servicer.rpc_count = lambda: server.rpc_count
    node.address = settings.advertise_address or server.address
    running = RunningCompute(
        node_id=node_id,
        settings=settings,
        node=node,
        store=store,
        server=server,
        client=client,
        servicer=servicer,
        volumes=volumes,
        metrics=metrics,
        metrics_address=metrics_address,
        retention=ExecutionRetention(
            node,
            store,
            execution_retention=settings.execution_retention,
            bid_expiry=settings.bid_expiry,
            interval=settings.retention_interval,
            content=content,
        ),
    )
    assert running.retention is not None
    running.retention.start()
    running._tasks.append(
        asyncio.create_task(
            client.run(node.node_info, node.available_capacity, node.room_freed, node.execution_load)
        )
    )
    running._tasks.append(asyncio.create_task(_recover_when_registered(node, client)))
    running._tasks.append(asyncio.create_task(prepare_python(executors)))
    return running


# The capacity gauges: (resource, unit, its amount in a ResourceUsageData).
CAPACITY_RESOURCES = (
    ("cpu", "{cpu}", lambda usage: usage.cpu),
    ("memory", "By", lambda usage: usage.memory),
    ("disk", "By", lambda usage: usage.disk),
    ("gpu", "{gpu}", lambda usage: usage.gpu),
)


def observe_compute(metrics: OtelMetrics, node: ComputeNode) -> None:
    """The compute node's gauges, read from its capacity tracker at each collection."""
    tracker = node.tracker
    metrics.observe(
        "bacalhau.executions.running",
        "{execution}",
        "Executions running (holding capacity)",
        lambda: [(tracker.running_count(), {})],
    )
    metrics.observe(
        "bacalhau.executions.queued",
        "{execution}",
        "Executions waiting for capacity to run",
        lambda: [(tracker.queue_length(), {})],
    )
    for resource, unit, amount in CAPACITY_RESOURCES:
        metrics.observe(
            f"bacalhau.capacity.{resource}.limit",
            unit,
            f"The {resource} the node gives to jobs in total",
            lambda amount=amount: [(amount(tracker.total), {})],  # type: ignore[misc]
        )
        metrics.observe(
            f"bacalhau.capacity.{resource}.usage",
            unit,
            f"The {resource} running executions hold",
            lambda amount=amount: [(amount(tracker.running), {})],  # type: ignore[misc]
        )


async def _recover_when_registered(node: ComputeNode, client: RequesterClient) -> None:
    await client.registered.wait()
    node.recover()
