"""OpenTelemetry tracing, set up once per process from the standard `OTEL_*` environment variables.

Tracing is on when an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or `OTEL_TRACES_EXPORTER` names `otlp`, unless
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. Then spans go to the OTLP gRPC exporter
through a BatchSpanProcessor, and the gRPC server/client interceptors carry the W3C trace context across
services, so one job is one trace. Otherwise nothing is installed: no provider, no exporter, no
interceptors, and `job_span` hands back a shared no-op context manager.

A job's work happens in many places: RPC handlers of other traces (a node registering is offered the
job; a callback), timers, background tasks. `JobTraces` remembers each job's trace (the context of its
first span, e.g. the one inside SubmitJob) and opens every later span of the job inside it, so the
outbound calls made there carry the job's trace to the next service.

Metrics (`setup_metrics`) are OpenTelemetry metrics too: exported in Prometheus' text format on an HTTP
`/metrics` endpoint when the node has a metrics port (`serve --metrics-port`), and over OTLP when the
`OTEL_*` variables ask for it as they do for traces (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, or `OTEL_METRICS_EXPORTER=otlp`; `OTEL_METRICS_EXPORTER=none` or
`OTEL_SDK_DISABLED=true` turn it off). `OtelMetrics` is the domain's metrics port
(`common.metrics.Metrics`) over those instruments, every point labelled with the node's `nodeid`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from opentelemetry import trace

from bacalhau_grpc.common.metrics import Metrics

logger = logging.getLogger(__name__)

TRACER_NAME = "bacalhau_grpc"
SERVICE_NAME_PREFIX = "bacalhau-grpc-"
# gRPC services whose calls are not traced (probes and tooling, not job work).
UNTRACED_SERVICE_PREFIXES = ("grpc.health.", "grpc.reflection.")

_lock = threading.Lock()
_provider: Any = None  # the SDK TracerProvider once tracing is on
_tracer: trace.Tracer | None = None
_NOOP_SPAN = contextlib.nullcontext(trace.INVALID_SPAN)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def tracing_configured(environ: Mapping[str, str] | None = None) -> bool:
    """True when the environment (default: os.environ) asks for traces to be exported over OTLP."""
    if environ is None:
        environ = os.environ
    if _truthy(environ.get("OTEL_SDK_DISABLED")):
        return False
    exporters = {e.strip().lower() for e in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()}
    if exporters:
        return "otlp" in exporters
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def setup_telemetry(component: str, node_id: str, environ: Mapping[str, str] | None = None) -> None:
    """Sets up tracing for this process (service.name `bacalhau-grpc-<component>`); later calls do nothing.

    Call it before `start_server` and `open_channel`: they pick their tracing interceptors when made.
    """
    global _provider, _tracer
    if environ is None:
        environ = os.environ
    with _lock:
        if _provider is not None or not tracing_configured(environ):
            return
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        protocol = environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        )
        if protocol.strip().lower() not in ("", "grpc"):
            logger.warning("OTLP protocol %r is not supported here; exporting traces over gRPC", protocol)
        resource = Resource.create(
            {
                SERVICE_NAME: f"{SERVICE_NAME_PREFIX}{component}",
                SERVICE_INSTANCE_ID: node_id,
                "nodeid": node_id,
            }
        )
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _provider = provider
        _tracer = provider.get_tracer(TRACER_NAME)
        logger.info("tracing on: service.name=%s%s", SERVICE_NAME_PREFIX, component)


def telemetry_enabled() -> bool:
    """True once `setup_telemetry` turned tracing on in this process."""
    return _provider is not None


def shutdown_telemetry(timeout_millis: int = 5000) -> None:
    """Exports the spans still buffered (call before a process exits; atexit does it too)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


def _traced(details: Any) -> bool:
    method = getattr(details, "method", "") or ""
    if isinstance(method, bytes):
        method = method.decode()
    return not method.lstrip("/").startswith(UNTRACED_SERVICE_PREFIXES)


def server_interceptors() -> list[Any]:
    """grpc.aio server interceptors carrying trace context in; empty when tracing is off."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=_provider, filter_=_traced)]


def client_interceptors() -> list[Any]:
    """grpc.aio client interceptors carrying trace context out; empty when tracing is off."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=_provider, filter_=_traced))


def no_span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[None]:
    """The span factory of domain code run without tracing (unit tests, tools): spans nothing."""
    return contextlib.nullcontext()


def job_span(
    name: str, *, job_id: str, node_id: str, shard_index: int | None = None
) -> contextlib.AbstractContextManager[trace.Span]:
    """A span for job work, with attributes `jobid`, `nodeid` (and `shardindex`); a no-op when tracing is off.

    Use as `with job_span("compute.run", job_id=..., node_id=..., shard_index=0) as span: ...`.
    """
    if _tracer is None:
        return _NOOP_SPAN
    return _tracer.start_as_current_span(name, attributes=_job_attributes(job_id, node_id, shard_index))


def _job_attributes(job_id: str, node_id: str, shard_index: int | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {"jobid": job_id, "nodeid": node_id}
    if shard_index is not None:
        attributes["shardindex"] = shard_index
    return attributes


class JobTraces:
    """One trace per job: `span(...)` is `job_span` that opens its span in the job's trace wherever it runs.

    The first span of a job (no trace known yet) starts in the current context (e.g. the SubmitJob or
    AskForBid server span, which carry the caller's trace) and its context is remembered. A later span
    started in that trace is an ordinary child of the current span; one started elsewhere (a timer, a
    RegisterNode or Heartbeat handler, a callback that lost its context) gets the remembered span as its
    parent, plus a link to the span that was current. Outbound calls inside the span carry the job's trace.

    The last `limit` jobs are remembered. With tracing off, `span` is `job_span`'s shared no-op.
    """

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._contexts: OrderedDict[str, trace.SpanContext] = OrderedDict()

    def __len__(self) -> int:
        return len(self._contexts)

    def remember(self, job_id: str, span_context: trace.SpanContext) -> None:
        """Makes `span_context` the trace of job `job_id` (ignored when it is not a valid context)."""
        if not span_context.is_valid:
            return
        self._contexts[job_id] = span_context
        self._contexts.move_to_end(job_id)
        while len(self._contexts) > self.limit:
            self._contexts.popitem(last=False)

    def forget(self, job_id: str) -> None:
        self._contexts.pop(job_id, None)

    def span_context(self, job_id: str) -> trace.SpanContext | None:
        """The remembered span context of the job, if any."""
        return self._contexts.get(job_id)

    def trace_ids(self, job_id: str) -> tuple[str, str] | None:
        """(trace ID, span ID) of the job's remembered context as lowercase hex (32 and 16 digits): the
        job's trace, and its first span, the parent of the spans started elsewhere; None when unknown."""
        known = self._contexts.get(job_id)
        if known is None:
            return None
        return trace.format_trace_id(known.trace_id), trace.format_span_id(known.span_id)

    def restore(self, job_id: str, trace_id: str, span_id: str) -> None:
        """Makes the trace that `trace_ids` gave (e.g. kept in a store across a restart) the job's trace
        again, so its later spans join it; ignored when the IDs are not valid hex IDs."""
        try:
            context = trace.SpanContext(
                trace_id=int(trace_id, 16),
                span_id=int(span_id, 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
        except ValueError:
            return
        if len(trace_id) == 32 and len(span_id) == 16:
            self.remember(job_id, context)

    def span(
        self, name: str, *, job_id: str, node_id: str, shard_index: int | None = None
    ) -> contextlib.AbstractContextManager[trace.Span]:
        """Like `job_span`, in the job's trace."""
        if _tracer is None:
            return _NOOP_SPAN
        attributes = _job_attributes(job_id, node_id, shard_index)
        known = self._contexts.get(job_id)
        if known is None:
            return self._first_span(name, job_id, attributes)
        current = trace.get_current_span().get_span_context()
        if current.is_valid and current.trace_id == known.trace_id:
            return _tracer.start_as_current_span(name, attributes=attributes)
        return _tracer.start_as_current_span(
            name,
            context=trace.set_span_in_context(trace.NonRecordingSpan(known)),
            attributes=attributes,
            links=[trace.Link(current)] if current.is_valid else None,
        )

    @contextlib.contextmanager
    def _first_span(self, name: str, job_id: str, attributes: dict[str, Any]) -> Iterator[trace.Span]:
        assert _tracer is not None
        with _tracer.start_as_current_span(name, attributes=attributes) as span:
            self.remember(job_id, span.get_span_context())
            yield span


# -------------------------------------------------------------------------------------------- metrics

METER_NAME = "bacalhau_grpc"
# Seconds: a WASM job takes milliseconds, a Docker job seconds to hours.
EXECUTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# Seconds: one SQLite transaction (WAL) takes well under a millisecond to tens of milliseconds.
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
# Milliseconds.
RPC_BUCKETS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)

_meter_provider: Any = None  # the SDK MeterProvider once metrics are on
_meter: Any = None
_metrics_address = ""  # host:port of the Prometheus endpoint, when there is one
_gauge_sources: dict[str, list[Callable[[], Iterable[tuple[float, dict[str, Any]]]]]] = {}
_rpc_duration: Any = None

GaugeSource = Callable[[], Iterable[tuple[float, dict[str, Any]]]]


def metrics_otlp_configured(environ: Mapping[str, str] | None = None) -> bool:
    """True when the environment (default: os.environ) asks for metrics to be exported over OTLP: the
    same rules as `tracing_configured`, with OTEL_METRICS_EXPORTER and OTEL_EXPORTER_OTLP_METRICS_ENDPOINT."""
    if environ is None:
        environ = os.environ
    if _truthy(environ.get("OTEL_SDK_DISABLED")):
        return False
    exporters = {e.strip().lower() for e in environ.get("OTEL_METRICS_EXPORTER", "").split(",") if e.strip()}
    if exporters:
        return "otlp" in exporters
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip()
    )


def _http_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def setup_metrics(
    component: str,
    node_id: str,
    *,
    port: int = -1,
    host: str = "127.0.0.1",
    environ: Mapping[str, str] | None = None,
) -> str:
    """Turns metrics on for this process when asked: a Prometheus `/metrics` endpoint on host:`port`
    (0: a free port; -1: none) and/or OTLP export per the `OTEL_*` variables. Returns the endpoint's
    host:port ("" without one). Later calls change nothing and return the first endpoint.

    Call it before `start_server`: the RPC duration interceptor is picked when the server starts.
    """
    global _meter_provider, _meter, _metrics_address, _rpc_duration
    if environ is None:
        environ = os.environ
    with _lock:
        if _meter_provider is not None:
            return _metrics_address
        otlp = metrics_otlp_configured(environ)
        if port < 0 and not otlp:
            return ""
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource

        readers: list[Any] = []
        address = ""
        if port >= 0:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import start_http_server

            # One meter: the otel_scope_* labels would only repeat its name on every series.
            readers.append(PrometheusMetricReader(scope_info_enabled=False))
            try:
                server, _thread = start_http_server(port, addr=host)
            except OSError as error:
                raise OSError(
                    f"{component}: cannot serve metrics on {_http_address(host, port)}: {error}"
                ) from error
            address = _http_address(host, server.server_port)
        if otlp:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            protocol = environ.get(
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            )
            if protocol.strip().lower() not in ("", "grpc"):
                logger.warning(
                    "OTLP protocol %r is not supported here; exporting metrics over gRPC", protocol
                )
            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        resource = Resource.create(
            {
                SERVICE_NAME: f"{SERVICE_NAME_PREFIX}{component}",
                SERVICE_INSTANCE_ID: node_id,
                "nodeid": node_id,
            }
        )
        provider = MeterProvider(resource=resource, metric_readers=readers)
        _meter_provider = provider
        _meter = provider.get_meter(METER_NAME)
        _metrics_address = address
        _rpc_duration = _meter.create_histogram(
            "rpc.server.duration",
            unit="ms",
            description="How long the server took to answer each RPC, by method and status code",
            explicit_bucket_boundaries_advisory=RPC_BUCKETS,
        )
        logger.info(
            "metrics on:%s%s",
            f" http://{address}/metrics" if address else "",
            " OTLP" if otlp else "",
            extra={"node_id": node_id},
        )
        return address


def metrics_enabled() -> bool:
    """True once `setup_metrics` turned metrics on in this process."""
    return _meter_provider is not None


def shutdown_metrics(timeout_millis: int = 5000) -> None:
    """Exports the metrics not yet sent over OTLP (call before a process exits)."""
    if _meter_provider is not None:
        _meter_provider.force_flush(timeout_millis)


def record_rpc(method: str, code: str, seconds: float, node_id: str) -> None:
    """One served RPC (`method`: "/package.Service/Method") in `rpc.server.duration`; nothing when
    metrics are off. `code`: its gRPC status code's name (OK, NOT_FOUND, ...)."""
    if _rpc_duration is None:
        return
    service, _, name = method.lstrip("/").rpartition("/")
    _rpc_duration.record(
        seconds * 1000.0,
        {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": name,
            "rpc.grpc.status_code": code,
            "nodeid": node_id,
        },
    )


def _observe_gauge(name: str, unit: str, description: str) -> list[GaugeSource]:
    """The sources of the observable gauge `name`, made on first use: the gauge reports every source's
    points at each collection (several nodes in one process each add theirs)."""
    sources = _gauge_sources.get(name)
    if sources is not None:
        return sources
    sources = _gauge_sources[name] = []

    def callback(_options: Any) -> Iterator[Any]:
        from opentelemetry.metrics import Observation

        for source in list(sources):
            try:
                points = list(source())
            except Exception:  # a node stopping meanwhile; its state is read from another thread
                logger.debug("metrics source of %s failed", name, exc_info=True)
                continue
            for value, attributes in points:
                yield Observation(value, attributes)

    _meter.create_observable_gauge(name, callbacks=[callback], unit=unit, description=description)
    return sources


class OtelMetrics(Metrics):
    """The domain's metrics port over this process's OpenTelemetry instruments (`setup_metrics` first),
    each point labelled `nodeid`; `observe` adds observable gauges read from domain state."""

    def __init__(self, node_id: str) -> None:
        if _meter is None:
            raise RuntimeError("setup_metrics has not turned metrics on")
        self.node_id = node_id
        self._node = {"nodeid": node_id}
        self._observed: list[tuple[list[GaugeSource], GaugeSource]] = []
        meter = _meter
        self._submitted = meter.create_counter(
            "bacalhau.jobs.submitted", unit="{job}", description="Jobs the requester accepted"
        )
        self._ended = meter.create_counter(
            "bacalhau.jobs.ended", unit="{job}", description="Jobs that ended, by final state"
        )
        self._shards = meter.create_counter(
            "bacalhau.shard.transitions",
            unit="{transition}",
            description="Moves of the requester's shard state machines, by the phase moved to",
        )
        self._bids = meter.create_counter(
            "bacalhau.bids",
            unit="{bid}",
            description="A compute node's answers to asks for bids, by outcome and refusal reason",
        )
        self._executions = meter.create_histogram(
            "bacalhau.execution.duration",
            unit="s",
            description="How long a compute node's runs of shards took, by engine and outcome",
            explicit_bucket_boundaries_advisory=EXECUTION_BUCKETS,
        )
        self._commits = meter.create_histogram(
            "bacalhau.store.commit.duration",
            unit="s",
            description="How long the store took to commit one batch (one SQLite transaction)",
            explicit_bucket_boundaries_advisory=COMMIT_BUCKETS,
        )

    def job_submitted(self) -> None:
        self._submitted.add(1, self._node)

    def job_ended(self, state: str) -> None:
        self._ended.add(1, {**self._node, "state": state})

    def shard_transition(self, phase: str) -> None:
        self._shards.add(1, {**self._node, "phase": phase})

    def bid(self, outcome: str, reason: str = "") -> None:
        self._bids.add(1, {**self._node, "outcome": outcome, "reason": reason})

    def execution_ended(self, engine: str, seconds: float, outcome: str) -> None:
        self._executions.record(seconds, {**self._node, "engine": engine, "outcome": outcome})

    def store_commit(self, store: str, seconds: float) -> None:
        self._commits.record(seconds, {**self._node, "store": store})

    def observe(
        self,
        name: str,
        unit: str,
        description: str,
        read: Callable[[], Iterable[tuple[float, dict[str, Any]]]],
    ) -> None:
        """An observable gauge `name` reporting `read()`'s (value, labels) points, labelled `nodeid`.

        `read` runs at each collection, in the exporter's thread (Prometheus' HTTP server): it must only
        read plain state (lengths, counters), never await or touch the store."""

        def labelled() -> Iterator[tuple[float, dict[str, Any]]]:
            for value, attributes in read():
                yield value, {**self._node, **attributes}

        with _lock:
            sources = _observe_gauge(name, unit, description)
            sources.append(labelled)
        self._observed.append((sources, labelled))

    def close(self) -> None:
        """Stops this node's gauges (a node stopping in a process that goes on)."""
        with _lock:
            for sources, source in self._observed:
                if source in sources:
                    sources.remove(source)
        self._observed.clear()


def node_metrics(node_id: str) -> Metrics:
    """`OtelMetrics` for the node when metrics are on, else the no-op port."""
    return OtelMetrics(node_id) if _meter is not None else Metrics()
