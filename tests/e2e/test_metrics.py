"""Metrics and structured logs from real `serve` processes: a devstack whose every node serves Prometheus'
/metrics on a free port of its own (`serve --metrics-port 0`), scraped over HTTP before and after jobs and
parsed with prometheus_client's parser; the same metrics pushed over OTLP to a receiver in the test when the
OTEL_* variables ask for it; and JSON log lines (`serve --log-format json`) carrying each job's trace id
(tracing on, exported to the OTLP receiver of test_tracing) and job id."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Iterable

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.devstack import Devstack
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from tests.e2e.test_tracing import (  # noqa: F401 - the collector fixture
    Receiver,
    assert_one_trace,
    collector,
    deterministic_noop_job,
    published_by,
    run_job,
    tracing_env,
    wait_for_spans,
)

NODES = 2
JOBS = 3
SCRAPE_TIMEOUT = 20.0
CAPACITY_GAUGES = [
    f"bacalhau_capacity_{resource}_{kind}{suffix}"
    for resource, suffix in (("cpu", ""), ("memory", "_bytes"), ("disk", "_bytes"), ("gpu", ""))
    for kind in ("limit", "usage")
]


Samples = list[tuple[str, dict[str, str], float]]


def scrape(address: str) -> Samples:
    """Every sample of the node's /metrics page: (sample name, labels, value)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when there are none)."""
    return sum(v for n, lb, v in samples if n == name and all(lb.get(k) == x for k, x in labels.items()))


def matching(samples: Samples, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    return [(lb, v) for n, lb, v in samples if n == name and all(lb.get(k) == x for k, x in labels.items())]


async def scrape_until(address: str, done, what: str) -> Samples:
    """Scrapes until `done(samples)` holds (the deadline fails the test, saying `what` was awaited)."""
    deadline = time.monotonic() + SCRAPE_TIMEOUT
    while True:
        samples = await asyncio.to_thread(scrape, address)
        if done(samples):
            return samples
        assert time.monotonic() < deadline, f"{what}: not seen within {SCRAPE_TIMEOUT:g} s"
        await asyncio.sleep(0.1)


async def test_every_node_serves_metrics_that_move_with_jobs(tmp_path):
    # A short negotiation: the job no node bids on ends (Error) within seconds.
    async with Devstack(
        nodes=NODES, data_dir=tmp_path, metrics=True, requester_flags=["--negotiation-timeout", "3"]
    ) as stack:
        requester, verifier = stack.requester, stack.verifier
        assert requester is not None and verifier is not None
        for node in stack.all_nodes:
            assert node.metrics_address.startswith("127.0.0.1:"), node
        before = {
            node.name: await asyncio.to_thread(scrape, node.metrics_address) for node in stack.all_nodes
        }

        credentials = stack.channel_credentials()
        for _ in range(JOBS):
            _, events = await run_job(stack.requester_address, deterministic_noop_job(NODES), credentials)
            assert published_by(events) == {node.node_id for node in stack.computes}
        # A job asking for more CPU than a node gives one job: every node refuses to bid, and the
        # job ends in Error when its negotiation runs out.
        too_big = deterministic_noop_job(1)
        too_big.spec.resources.cpu = "1000"
        await run_job(stack.requester_address, too_big, credentials)

        def delta(after: Samples, node: str, name: str, **labels: str) -> float:
            return total(after, name, **labels) - total(before[node], name, **labels)

        # The requester: jobs submitted and ended by state, shard moves, gauges, commits, RPCs.
        after = await scrape_until(
            requester.metrics_address,
            lambda s: delta(s, "requester", "bacalhau_jobs_ended_total") >= JOBS + 1,
            "the requester's jobs ended",
        )
        rid = requester.node_id
        assert delta(after, "requester", "bacalhau_jobs_submitted_total", nodeid=rid) == JOBS + 1
        assert delta(after, "requester", "bacalhau_jobs_ended_total", nodeid=rid, state="Completed") == JOBS
        assert delta(after, "requester", "bacalhau_jobs_ended_total", nodeid=rid, state="Error") == 1
        assert delta(after, "requester", "bacalhau_shard_transitions_total", phase="Completed") == JOBS
        assert delta(after, "requester", "bacalhau_shard_transitions_total", phase="Error") == 1
        assert (
            delta(after, "requester", "bacalhau_shard_transitions_total", phase="WaitingForResults") == JOBS
        )
        assert matching(after, "bacalhau_jobs_active", nodeid=rid) == [({"nodeid": rid}, 0.0)]
        assert matching(after, "bacalhau_submissions_waiting", nodeid=rid) == [({"nodeid": rid}, 0.0)]
        assert (
            delta(after, "requester", "bacalhau_store_commit_duration_seconds_count", store="requester") > 0
        )
        submit = dict(rpc_service="bacalhau.requester.v1.RequesterService", rpc_method="SubmitJob")
        rpc_count = "rpc_server_duration_milliseconds_count"
        assert (
            delta(after, "requester", rpc_count, nodeid=rid, rpc_grpc_status_code="OK", **submit) == JOBS + 1
        )
        assert (
            delta(after, "requester", "rpc_server_duration_milliseconds_bucket", le="+Inf", **submit)
            == JOBS + 1
        )
        assert not matching(after, rpc_count, rpc_service="grpc.health.v1.Health")  # probes are not measured
        # No job ID in any label.
        assert not [lb for _, lb, _ in after if any(k in ("jobid", "job_id") for k in lb)]

        # Each compute node: its bids (and refusals, with the reason), runs by engine, gauges, capacity.
        for node in stack.computes:
            after = await scrape_until(
                node.metrics_address,
                lambda s, n=node.name: delta(s, n, "bacalhau_execution_duration_seconds_count") >= JOBS,
                f"{node.name}'s executions",
            )
            nid = node.node_id
            runs = dict(nodeid=nid, engine="Noop", outcome="completed")
            assert delta(after, node.name, "bacalhau_execution_duration_seconds_count", **runs) == JOBS
            assert delta(after, node.name, "bacalhau_execution_duration_seconds_sum", **runs) > 0
            assert delta(after, node.name, "bacalhau_bids_total", nodeid=nid, outcome="bid") == JOBS
            refused = dict(nodeid=nid, outcome="refused", reason="MaxCapacity")
            assert delta(after, node.name, "bacalhau_bids_total", **refused) == 1
            assert matching(after, "bacalhau_executions_running", nodeid=nid) == [({"nodeid": nid}, 0.0)]
            assert matching(after, "bacalhau_executions_queued", nodeid=nid) == [({"nodeid": nid}, 0.0)]
            for gauge in CAPACITY_GAUGES:
                (labels, value), *others = matching(after, gauge)
                assert not others and labels == {"nodeid": nid}, (gauge, labels, others)
                positive = gauge in ("bacalhau_capacity_cpu_limit", "bacalhau_capacity_memory_limit_bytes")
                assert value > 0 if positive else value >= 0, (gauge, value)
            assert (
                delta(after, node.name, "bacalhau_store_commit_duration_seconds_count", store="compute") > 0
            )
            bids = dict(rpc_service="bacalhau.compute.v1.ComputeService", rpc_method="AskForBids")
            assert delta(after, node.name, rpc_count, nodeid=nid, rpc_grpc_status_code="OK", **bids) >= 1

        # The verifier: the durations of the calls it served.
        after = await asyncio.to_thread(scrape, verifier.metrics_address)
        verify = dict(rpc_service="bacalhau.verifier.v1.VerifierService", rpc_method="VerifyShards")
        assert delta(after, "verifier", rpc_count, nodeid=verifier.node_id, **verify) >= 1


def noop_job() -> pb.Job:
    """A noop job one node completes (the deterministic verifier wants two results to compare)."""
    job = deterministic_noop_job(1)
    job.spec.verifier = pb.Verifier.VERIFIER_NOOP
    return job


def json_lines(text: str) -> list[dict]:
    """The log's JSON lines (the `serve` "listening on" lines are plain text, printed for the devstack)."""
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def keys_of(lines: Iterable[dict]) -> set[str]:
    return {key for line in lines for key in line}


async def test_json_logs_carry_the_job_and_its_trace(tmp_path, collector):  # noqa: F811 - the fixture
    receiver, port = collector
    env = tracing_env(port)
    async with Devstack(nodes=1, data_dir=tmp_path, env=env, log_format="json", log_level="DEBUG") as stack:
        compute = stack.computes[0]
        job_id, events = await run_job(stack.requester_address, noop_job(), stack.channel_credentials())
        compute_ids = {compute.node_id}
        assert published_by(events) == compute_ids
        requester_id, verifier_id = stack.requester.node_id, stack.verifier.node_id
        nodes = list(stack.all_nodes)
    await wait_for_spans(receiver, job_id, compute_ids)
    trace_id = assert_one_trace(
        receiver, job_id, requester_id=requester_id, verifier_id=verifier_id, compute_ids=compute_ids
    )
    for node in nodes:
        text = node.log_path.read_text()
        lines = json_lines(text)
        assert lines, f"{node.name} wrote no JSON line:\n{text[:2000]}"
        # Every non-JSON line is one `serve` prints for the devstack.
        for line in text.splitlines():
            assert line.startswith("{") or f" {node.node_id} " in line, line
        for line in lines:
            assert {"time", "level", "logger", "message"} <= set(line), line
            assert line["time"].endswith("Z") and "T" in line["time"], line
            assert line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), line
        assert any(line.get("nodeid") == node.node_id for line in lines), node.name
    # The requester's lines about the job name the job and the trace it is in (a compute node logs
    # nothing about a job that goes well).
    requester = nodes[1]
    about_job = [line for line in json_lines(requester.log_path.read_text()) if line.get("jobid") == job_id]
    assert about_job, f"the requester logged nothing about job {job_id}"
    traced = [line for line in about_job if line.get("trace_id") == trace_id]
    assert traced, (trace_id, about_job)
    for line in traced:
        assert len(line["span_id"]) == 16 and int(line["span_id"], 16) != 0, line
        assert line["nodeid"] == requester_id, line


async def test_metrics_and_log_format_settings_reach_serve(tmp_path):
    """BACALHAU_LOG_FORMAT (the settings mechanism) switches a real node to JSON lines; a node without
    --metrics-port serves no metrics endpoint (metrics are off unless asked for)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "BACALHAU_LOG_FORMAT": "json",
    }
    async with Devstack(nodes=1, data_dir=tmp_path, env=env) as stack:
        async with grpc.aio.secure_channel(stack.requester_address, stack.channel_credentials()) as channel:
            stub = rgrpc.RequesterServiceStub(channel)
            created = await stub.SubmitJob(ClientKey.generate().signed_submit_request(noop_job()), timeout=10)
            request = rpb.WatchJobEventsRequest(job_id=created.job.id)
            [item async for item in stub.WatchJobEvents(request, timeout=60)]
        for node in stack.all_nodes:
            text = node.current_log()
            assert "metrics on" not in text and node.metrics_address == ""
            assert json_lines(text), text[:2000]


class MetricsReceiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    """An OTLP/gRPC metrics collector keeping each export's data points: (service.name, metric name,
    unit, point attributes, value)."""

    def __init__(self) -> None:
        self.points: list[tuple[str, str, str, dict, float]] = []

    async def Export(self, request, context):
        for resource_metrics in request.resource_metrics:
            resource = {a.key: a.value.string_value for a in resource_metrics.resource.attributes}
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points:
                        attributes = {a.key: a.value.string_value for a in point.attributes}
                        if kind == "histogram":
                            value = float(point.count)
                        else:
                            value = point.as_double if point.HasField("as_double") else float(point.as_int)
                        self.points.append(
                            (resource.get("service.name", ""), metric.name, metric.unit, attributes, value)
                        )
        return metrics_service_pb2.ExportMetricsServiceResponse()


async def test_metrics_go_over_otlp_when_the_otel_variables_ask_for_them(tmp_path):
    metrics_receiver, traces_receiver = MetricsReceiver(), Receiver()
    server = grpc.aio.server()
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(metrics_receiver, server)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(traces_receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        env = {**tracing_env(port), "OTEL_METRIC_EXPORT_INTERVAL": "200"}
        async with Devstack(nodes=1, data_dir=tmp_path, env=env) as stack:
            job_id, events = await run_job(stack.requester_address, noop_job(), stack.channel_credentials())
            assert published_by(events) == {stack.computes[0].node_id}
            requester_id, compute_id = stack.requester.node_id, stack.computes[0].node_id
            # No metrics port was asked for: OTLP only.
            assert all(node.metrics_address == "" for node in stack.all_nodes)

            def seen(service: str, name: str, node_id: str) -> list[tuple]:
                return [
                    p
                    for p in metrics_receiver.points
                    if p[0] == f"bacalhau-grpc-{service}" and p[1] == name and p[3].get("nodeid") == node_id
                ]

            deadline = time.monotonic() + SCRAPE_TIMEOUT
            while not (
                seen("requester", "bacalhau.jobs.submitted", requester_id)
                and seen("compute", "bacalhau.execution.duration", compute_id)
            ):
                assert time.monotonic() < deadline, sorted({p[:2] for p in metrics_receiver.points})
                await asyncio.sleep(0.1)
        submitted = seen("requester", "bacalhau.jobs.submitted", requester_id)
        assert submitted[-1][2] == "{job}" and submitted[-1][4] == 1
        runs = seen("compute", "bacalhau.execution.duration", compute_id)
        assert runs[-1][2] == "s" and runs[-1][3]["engine"] == "Noop" and runs[-1][4] == 1
        assert not [p for p in metrics_receiver.points if job_id in p[3].values()]
    finally:
        await server.stop(grace=0)
