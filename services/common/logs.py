"""Process logging: stdlib `logging` to stderr, with the job and node of every job log line.

Pass them per call, `logger.info("bid accepted", extra={"job_id": job.id, "node_id": node_id})`, or bind
them once with `job_logger(logger, job_id=..., node_id=...)`. Lines without them show `-`.

Two formats (`serve --log-format`): `text` (the default, `FORMAT`) and `json`, one JSON object per line
(`JsonFormatter`): `time` (RFC 3339, UTC), `level`, `logger`, `message`, then `jobid` and `nodeid` when the
line has them, `trace_id` and `span_id` (hex) when a valid OpenTelemetry span is current, and `exc_info`
(the traceback's text) when the line carries an exception.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

from opentelemetry import trace

FORMAT = "%(asctime)s %(levelname)-7s %(name)s [job=%(job_id)s node=%(node_id)s] %(message)s"
CONTEXT_FIELDS = ("job_id", "node_id")
LOG_FORMATS = ("text", "json")
# The JSON key of each context field.
JSON_CONTEXT_KEYS = {"job_id": "jobid", "node_id": "nodeid"}


class ContextFilter(logging.Filter):
    """Gives every record `job_id` and `node_id` ("-" when the caller passed none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in CONTEXT_FIELDS:
            if not getattr(record, name, None):
                setattr(record, name, "-")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module's docstring for its keys)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, key in JSON_CONTEXT_KEYS.items():
            value = getattr(record, name, None)
            if value and value != "-":
                line[key] = str(value)
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            line["trace_id"] = format(span_context.trace_id, "032x")
            line["span_id"] = format(span_context.span_id, "016x")
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(log_format: str = "text") -> logging.Formatter:
    """The formatter of a log format: "text" or "json"."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(FORMAT)
    raise ValueError(f"unknown log format {log_format!r} (text or json)")


class _Handler(logging.StreamHandler[TextIO]):
    """Marks the handler this module installed, so a second setup replaces it instead of doubling lines."""


def setup_logging(level: str | int = "INFO", stream: TextIO | None = None, log_format: str = "text") -> None:
    """Logs to stderr (or `stream`) at `level` ("DEBUG", "INFO", ...) with job/node context, as `log_format`
    ("text" or "json"); idempotent (a second call replaces the first's handler)."""
    chosen = formatter(log_format)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(chosen)
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # gRPC's and OpenTelemetry's own chatter stays at WARNING unless we debug.
    quiet = logging.WARNING if root.level > logging.DEBUG else logging.DEBUG
    for name in ("grpc", "opentelemetry"):
        logging.getLogger(name).setLevel(quiet)


class JobLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose lines all carry one job's id and a node's id."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra: Mapping[str, Any] = self.extra or {}
        kwargs["extra"] = {**extra, **kwargs["extra"]} if "extra" in kwargs else extra
        return msg, kwargs


def job_logger(logger: logging.Logger, *, job_id: str, node_id: str = "") -> JobLogger:
    """`logger`, with `job_id` and `node_id` on every line."""
    return JobLogger(logger, {"job_id": job_id, "node_id": node_id})
