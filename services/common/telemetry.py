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
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace

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
