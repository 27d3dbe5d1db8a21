"""One job is one trace: a devstack (separate processes) exports its spans to an OTLP receiver in the test,
and every span of a job - submission, bids, runs, verification, publication, on every service - carries
the same trace id, with `jobid`, `nodeid` (and `shardindex` on shard work)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import urllib.request
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from bacalhau_grpc.common import certs, telemetry
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.devstack import Devstack
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from tests.e2e.cli_support import clean_env, run_cli

NODES = 3
JOB_END_TIMEOUT = 60.0
SPANS_TIMEOUT = 20.0
SERVICE = "bacalhau-grpc-{}"
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")  # an OpenTelemetry trace ID as GetJob answers it


@dataclass(frozen=True)
class ReceivedSpan:
    service: str  # the resource's service.name
    resource_node_id: str  # the resource's nodeid
    name: str
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    attributes: dict
    links: tuple[tuple[bytes, bytes], ...]  # (trace id, span id) of each linked span


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace collector keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.exported = asyncio.Event()

    async def Export(self, request, context):
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service=resource.get("service.name", ""),
                            resource_node_id=resource.get("nodeid", ""),
                            name=span.name,
                            trace_id=span.trace_id,
                            span_id=span.span_id,
                            parent_span_id=span.parent_span_id,
                            attributes={
                                a.key: getattr(a.value, a.value.WhichOneof("value") or "string_value")
                                for a in span.attributes
                            },
                            links=tuple((link.trace_id, link.span_id) for link in span.links),
                        )
                    )
        self.exported.set()
        return trace_service_pb2.ExportTraceServiceResponse()

    def of_job(self, job_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.attributes.get("jobid") == job_id]


def deterministic_noop_job(concurrency: int) -> pb.Job:
    job = pb.Job(api_version="V1beta1")
    job.spec.engine = pb.Engine.ENGINE_NOOP
    job.spec.verifier = pb.Verifier.VERIFIER_DETERMINISTIC
    job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
    job.deal.concurrency = concurrency
    return job


def tracing_env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    return env


async def run_job(address: str, job: pb.Job, credentials) -> tuple[str, list[pb.JobEvent]]:
    """Submits the job (TLS with `credentials`) and follows its events until it ends."""
    async with grpc.aio.secure_channel(address, credentials) as channel:
        stub = rgrpc.RequesterServiceStub(channel)
        created = await stub.SubmitJob(ClientKey.generate().signed_submit_request(job), timeout=10)
        request = rpb.WatchJobEventsRequest(job_id=created.job.id)
        events = [item.event async for item in stub.WatchJobEvents(request, timeout=JOB_END_TIMEOUT)]
    return created.job.id, events


async def trace_ids(address: str, credentials, job_id: str) -> set[str]:
    """The job's trace ID as GetJob answers it, with and without each exclusion (a set: one ID, we hope)."""
    async with grpc.aio.secure_channel(address, credentials) as channel:
        stub = rgrpc.RequesterServiceStub(channel)
        found = set()
        for exclude_events in (False, True):
            for exclude_shard_states in (False, True):
                request = rpb.GetJobRequest(
                    job_id=job_id, exclude_events=exclude_events, exclude_shard_states=exclude_shard_states
                )
                found.add((await stub.GetJob(request, timeout=10)).job.trace_id)
    return found


async def describe(stack: Devstack, job_id: str) -> dict:
    """`bacalhau-grpc describe JOB_ID` (YAML) against the devstack's requester, as data."""
    host, _, port = stack.requester_address.rpartition(":")
    env = clean_env(BACALHAU_API_HOST=host, BACALHAU_API_PORT=port, BACALHAU_TLS_CA_CERT=str(stack.ca_cert))
    done = await asyncio.to_thread(run_cli, "describe", job_id, env=env)
    assert done.returncode == 0, done.stderr
    document = yaml.safe_load(done.stdout)
    assert document["Job"]["ID"] == job_id
    return document


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Receiver, int]]:
    """An OTLP/gRPC receiver on 127.0.0.1:<free port>."""
    receiver = Receiver()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield receiver, port
    finally:
        await server.stop(grace=0)


async def wait_for_spans(receiver: Receiver, job_id: str, compute_ids: set[str]) -> None:
    """Until spans of the job arrived from every service and every compute node (or the deadline)."""
    services = {SERVICE.format(c) for c in ("requester", "compute", "verifier")}

    def complete() -> bool:
        spans = receiver.of_job(job_id)
        nodes = {s.attributes.get("nodeid") for s in spans if s.service == SERVICE.format("compute")}
        return {s.service for s in spans} >= services and nodes >= compute_ids

    loop = asyncio.get_running_loop()
    deadline = loop.time() + SPANS_TIMEOUT
    while not complete() and loop.time() < deadline:
        receiver.exported.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiver.exported.wait(), max(0.0, deadline - loop.time()))


def assert_one_trace(
    receiver: Receiver, job_id: str, *, requester_id: str, verifier_id: str, compute_ids: set[str]
) -> str:
    """Checks the job's spans form one trace across every service; returns its id (hex)."""
    spans = receiver.of_job(job_id)
    assert spans, f"no span carries jobid={job_id}; received {sorted({s.name for s in receiver.spans})}"
    by_service = defaultdict(list)
    for span in spans:
        by_service[span.service].append(span)
    assert set(by_service) == {SERVICE.format(c) for c in ("requester", "compute", "verifier")}, sorted(
        (s.service, s.name) for s in spans
    )
    # One trace for the whole job, on every service.
    traces = {s.trace_id.hex() for s in spans}
    assert len(traces) == 1, sorted((s.trace_id.hex(), s.service, s.name) for s in spans)
    (trace_id,) = traces
    # Every job span names its job and the node doing the work: that node's own id.
    for span in spans:
        assert span.attributes["nodeid"] == span.resource_node_id, span
    assert {s.attributes["nodeid"] for s in by_service[SERVICE.format("compute")]} == compute_ids
    assert {s.attributes["nodeid"] for s in by_service[SERVICE.format("requester")]} == {requester_id}
    assert {s.attributes["nodeid"] for s in by_service[SERVICE.format("verifier")]} == {verifier_id}
    # Shard work names its shard; each compute node bid, ran, reported and published inside the trace.
    nodes_by_name = defaultdict(set)
    for span in spans:
        nodes_by_name[span.name].add(span.attributes["nodeid"])
    for name in (
        "compute.ask_for_bid",
        "compute.run",
        "compute.OnRunComplete",
        "compute.publish",
        "compute.OnPublishComplete",
    ):
        assert nodes_by_name[name] == compute_ids, (name, dict(nodes_by_name))
    assert nodes_by_name["verify"] == {verifier_id}
    assert {"requester.SubmitJob", "requester.AskForBid", "requester.Verify"} <= set(nodes_by_name)
    shard_spans = [s for s in spans if s.name != "requester.SubmitJob"]
    assert [s.name for s in shard_spans if s.attributes.get("shardindex") != 0] == []
    # The gRPC spans between them (no jobid) are in the same trace: the W3C context crossed every call
    # (calls go out as batch calls, in the trace of the call that started the batch: here, this job's).
    in_trace = [s for s in receiver.spans if s.trace_id.hex() == trace_id]
    rpc_names = {s.name for s in in_trace if s.name.startswith("/")}
    for method in (
        "/bacalhau.requester.v1.RequesterService/SubmitJob",
        "/bacalhau.compute.v1.ComputeService/AskForBids",
        "/bacalhau.compute.v1.ComputeService/UpdateExecutions",
        "/bacalhau.requester.v1.RequesterNodeService/ReportExecutions",
        "/bacalhau.verifier.v1.VerifierService/VerifyShards",
    ):
        assert method in rpc_names, (method, sorted(rpc_names))
    # The trace has one root: the SubmitJob server span.
    ids = {s.span_id for s in in_trace}
    roots = [s for s in in_trace if s.parent_span_id not in ids]
    assert [s.name for s in roots] == ["/bacalhau.requester.v1.RequesterService/SubmitJob"]
    return trace_id


def published_by(events: list[pb.JobEvent]) -> set[str]:
    return {
        e.source_node_id for e in events if e.event_name == pb.JobEventType.JOB_EVENT_TYPE_RESULTS_PUBLISHED
    }


async def test_one_job_is_one_trace_across_every_service(tmp_path, collector):
    receiver, port = collector
    env = tracing_env(port) | {"BACALHAU_DIR": str(tmp_path / "key")}
    async with Devstack(nodes=NODES, data_dir=tmp_path / "stack", env=env, dashboard=True) as stack:
        compute_ids = {node.node_id for node in stack.computes}
        job = deterministic_noop_job(NODES)
        job_id, events = await run_job(stack.requester_address, job, stack.channel_credentials())
        assert published_by(events) == compute_ids
        requester_id, verifier_id = stack.requester.node_id, stack.verifier.node_id
        answered = await trace_ids(stack.requester_address, stack.channel_credentials(), job_id)
        shown = await asyncio.to_thread(dashboard_job, stack.dashboard_url, job_id)
    # The devstack stopped: every node flushed its spans on the way out.
    await wait_for_spans(receiver, job_id, compute_ids)
    trace_id = assert_one_trace(
        receiver, job_id, requester_id=requester_id, verifier_id=verifier_id, compute_ids=compute_ids
    )
    # GetJob names that trace, so an operator can look it up; so does the dashboard's job page.
    assert answered == {trace_id}
    assert shown["trace_id"] == trace_id


def dashboard_job(url: str, job_id: str) -> dict:
    """What the dashboard's job page reads of the job (its overview)."""
    with urllib.request.urlopen(f"{url}api/jobs/{job_id}", timeout=30) as response:
        return json.load(response)


async def test_a_node_joining_later_works_inside_the_jobs_trace(tmp_path, collector):
    """The job waits for a third node; the requester asks it for a bid from the RegisterNode handler, in
    that call's own trace, yet the bid, run and publication join the job's trace."""
    receiver, port = collector
    env = tracing_env(port)
    async with Devstack(nodes=NODES - 1, data_dir=tmp_path / "stack", env=env) as stack:
        async with grpc.aio.secure_channel(stack.requester_address, stack.channel_credentials()) as channel:
            stub = rgrpc.RequesterServiceStub(channel)
            request = ClientKey.generate().signed_submit_request(deterministic_noop_job(NODES))
            created = await stub.SubmitJob(request, timeout=10)
            job_id = created.job.id
            late = await start_compute_node(tmp_path / "late", stack, env)
            try:
                request = rpb.WatchJobEventsRequest(job_id=job_id)
                events = [item.event async for item in stub.WatchJobEvents(request, timeout=JOB_END_TIMEOUT)]
            finally:
                await stop_process(late)
        late_id = (tmp_path / "late" / "node_id").read_text().strip()
        compute_ids = {node.node_id for node in stack.computes} | {late_id}
        assert published_by(events) == compute_ids
        requester_id, verifier_id = stack.requester.node_id, stack.verifier.node_id
    await wait_for_spans(receiver, job_id, compute_ids)
    trace_id = assert_one_trace(
        receiver, job_id, requester_id=requester_id, verifier_id=verifier_id, compute_ids=compute_ids
    )
    # The late node was offered the job from inside its RegisterNode (or a Heartbeat) call, in that call's
    # trace: the AskForBid span to it is in the job's trace and links the call that triggered it.
    node_calls = {
        s.trace_id
        for s in receiver.spans
        if s.name.rpartition("/")[2] in ("RegisterNode", "Heartbeat") and s.trace_id.hex() != trace_id
    }
    asks = [s for s in receiver.of_job(job_id) if s.name == "requester.AskForBid"]
    assert any(link[0] in node_calls for s in asks for link in s.links), asks


async def test_the_trace_id_survives_a_requester_restart_and_the_job_goes_on_in_its_trace(
    tmp_path, collector, key_dir
):
    """GetJob and `describe` answer the job's trace ID (32 hex digits); the job waits for a third node while
    the requester restarts; the restarted requester answers the same trace ID, and its work on the job
    after the restart (asking the new node for a bid, accepting results, verifying) is in the same trace."""
    receiver, port = collector
    env = tracing_env(port)
    async with Devstack(nodes=NODES - 1, data_dir=tmp_path / "stack", env=env) as stack:
        credentials = stack.channel_credentials()
        async with grpc.aio.secure_channel(stack.requester_address, credentials) as channel:
            stub = rgrpc.RequesterServiceStub(channel)
            request = ClientKey.generate().signed_submit_request(deterministic_noop_job(NODES))
            job_id = (await stub.SubmitJob(request, timeout=10)).job.id
        (before,) = await trace_ids(stack.requester_address, credentials, job_id)
        assert TRACE_ID.match(before), before
        assert (await describe(stack, job_id))["TraceID"] == before

        # SIGTERM: the requester stops gracefully (exporting its spans), then starts again on its data dir.
        requester = stack.requester
        assert requester is not None and requester.process is not None
        requester.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(requester.process.wait(), 30) == 0
        await stack.restart(requester)
        assert await trace_ids(stack.requester_address, credentials, job_id) == {before}

        late = await start_compute_node(tmp_path / "late", stack, env)
        try:
            async with grpc.aio.secure_channel(stack.requester_address, credentials) as channel:
                stub = rgrpc.RequesterServiceStub(channel)
                watch = rpb.WatchJobEventsRequest(job_id=job_id)
                events = [item.event async for item in stub.WatchJobEvents(watch, timeout=JOB_END_TIMEOUT)]
        finally:
            await stop_process(late)
        late_id = (tmp_path / "late" / "node_id").read_text().strip()
        compute_ids = {node.node_id for node in stack.computes} | {late_id}
        assert published_by(events) == compute_ids
        assert (await describe(stack, job_id))["TraceID"] == before
        requester_id, verifier_id = stack.requester.node_id, stack.verifier.node_id
    await wait_for_spans(receiver, job_id, compute_ids)
    trace_id = assert_one_trace(
        receiver, job_id, requester_id=requester_id, verifier_id=verifier_id, compute_ids=compute_ids
    )
    assert trace_id == before
    # Only the restarted requester knew the late node: it asked for that bid inside the job's trace again
    # (restored from its store), so the late node's work is in the trace, under a requester span of it.
    late_asks = [
        s
        for s in receiver.of_job(job_id)
        if s.name == "compute.ask_for_bid" and s.attributes["nodeid"] == late_id
    ]
    assert late_asks and {s.trace_id.hex() for s in late_asks} == {before}


async def test_with_tracing_off_a_job_has_no_trace_id(tmp_path, key_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    async with Devstack(nodes=1, data_dir=tmp_path, env=env) as stack:
        job = deterministic_noop_job(1)
        job.spec.verifier = pb.Verifier.VERIFIER_NOOP  # one node: nothing to compare its result with
        job_id, events = await run_job(stack.requester_address, job, stack.channel_credentials())
        assert published_by(events) == {stack.computes[0].node_id}
        assert await trace_ids(stack.requester_address, stack.channel_credentials(), job_id) == {""}
        assert "TraceID" not in await describe(stack, job_id)


async def start_compute_node(data_dir: Path, stack: Devstack, env: dict[str, str]):
    """A compute node process outside the devstack (stopped by `stop_process`), with a certificate from the
    devstack's CA, registering at the requester's node port."""
    data_dir.mkdir(parents=True)
    issued = certs.issue(stack.tls_dir, role="compute", node_id="node-late", out_dir=data_dir)
    log = open(data_dir / "node.log", "wb")  # noqa: SIM115 - the child writes to it until stopped
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "bacalhau_grpc.cli.main", "serve", "--node-type", "compute"),
            *("--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir)),
            *("--node-id", "node-late", "--requester-address", stack.requester_node_address),
            *("--tls-cert", str(issued.cert), "--tls-key", str(issued.key), "--tls-ca", str(stack.ca_cert)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        log.close()


async def stop_process(process: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            process.kill()
            await process.wait()
    assert process.returncode == 0, f"the compute node exited with {process.returncode}"


def test_job_traces_cost_nothing_with_tracing_off_and_stay_bounded():
    assert not telemetry.telemetry_enabled()  # this process exports nothing
    traces = telemetry.JobTraces(limit=2)
    with traces.span("test.job", job_id="j-1", node_id="node-test", shard_index=0) as span:
        assert not span.is_recording()
    assert len(traces) == 0
    for i in range(1, 4):
        traces.remember(f"j-{i}", trace.SpanContext(trace_id=i, span_id=i, is_remote=False))
    traces.remember("j-invalid", trace.INVALID_SPAN_CONTEXT)
    assert len(traces) == 2 and traces.span_context("j-1") is None
    assert traces.span_context("j-3").trace_id == 3
    traces.forget("j-3")
    assert traces.span_context("j-3") is None and len(traces) == 1
