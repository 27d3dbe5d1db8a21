"""Process logging: stdlib `logging` to stderr, with the job and node of every job log line.

Pass them per call, `logger.info("bid accepted", extra={"job_id": job.id, "node_id": node_id})`, or bind
them once with `job_logger(logger, job_id=..., node_id=...)`. Lines without them show `-`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

FORMAT = "%(asctime)s %(levelname)-7s %(name)s [job=%(job_id)s node=%(node_id)s] %(message)s"
CONTEXT_FIELDS = ("job_id", "node_id")


class ContextFilter(logging.Filter):
    """Gives every record `job_id` and `node_id` ("-" when the caller passed none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in CONTEXT_FIELDS:
            if not getattr(record, name, None):
                setattr(record, name, "-")
        return True


class _Handler(logging.StreamHandler[TextIO]):
    """Marks the handler this module installed, so a second setup replaces it instead of doubling lines."""


def setup_logging(level: str | int = "INFO", stream: TextIO | None = None) -> None:
    """Logs to stderr (or `stream`) at `level` ("DEBUG", "INFO", ...) with job/node context; idempotent."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
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
