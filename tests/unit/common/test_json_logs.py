"""The JSON log format (`serve --log-format json`): one JSON object per line, with the time in RFC 3339 UTC,
the level, logger and message, the job and node the line is about, the current span's trace and span ids,
and the traceback of an exception."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider

from bacalhau_grpc.common.logs import JsonFormatter, formatter, job_logger, setup_logging


@pytest.fixture
def capture():
    """setup_logging in JSON to a buffer; the root logger is put back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    setup_logging("DEBUG", stream=stream, log_format="json")
    yield stream
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_line_is_one_json_object_with_time_level_logger_and_message(capture):
    before = datetime.now(UTC).replace(microsecond=0)
    logging.getLogger("bacalhau_grpc.test").info("bid %s on %d", "accepted", 3)
    [line] = lines(capture)
    assert set(line) == {"time", "level", "logger", "message"}  # no job, node or span: left out
    assert line["level"] == "INFO"
    assert line["logger"] == "bacalhau_grpc.test"
    assert line["message"] == "bid accepted on 3"
    # RFC 3339 in UTC, with milliseconds and a Z.
    assert line["time"].endswith("Z") and len(line["time"]) == len("2026-01-02T03:04:05.678Z")
    when = datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
    assert when.tzinfo is not None and when.utcoffset().total_seconds() == 0
    assert before <= when <= datetime.now(UTC)


def test_job_and_node_ids_become_jobid_and_nodeid(capture):
    log = logging.getLogger("bacalhau_grpc.test")
    log.warning("shard failed", extra={"job_id": "job-1", "node_id": "node-a"})
    job_logger(log, job_id="job-2", node_id="node-b").error("again")
    job_logger(log, job_id="job-3").info("no node")
    first, second, third = lines(capture)
    assert (first["jobid"], first["nodeid"], first["level"]) == ("job-1", "node-a", "WARNING")
    assert (second["jobid"], second["nodeid"], second["message"]) == ("job-2", "node-b", "again")
    assert third["jobid"] == "job-3" and "nodeid" not in third


def test_the_current_span_gives_trace_id_and_span_id_in_hex(capture):
    tracer = TracerProvider().get_tracer("test")
    log = logging.getLogger("bacalhau_grpc.test")
    with tracer.start_as_current_span("job") as span:
        log.info("inside", extra={"job_id": "job-1"})
        context = span.get_span_context()
    log.info("outside")
    inside, outside = lines(capture)
    assert inside["trace_id"] == f"{context.trace_id:032x}" and len(inside["trace_id"]) == 32
    assert inside["span_id"] == f"{context.span_id:016x}" and len(inside["span_id"]) == 16
    assert "trace_id" not in outside and "span_id" not in outside


def test_an_exception_is_its_traceback_text(capture):
    log = logging.getLogger("bacalhau_grpc.test")
    try:
        raise ValueError('bad "value"\nover two lines')
    except ValueError:
        log.exception("run failed", extra={"job_id": "job-1"})
    [line] = lines(capture)  # the traceback's newlines stay inside the one JSON line
    assert line["level"] == "ERROR" and line["message"] == "run failed"
    assert line["exc_info"].startswith("Traceback (most recent call last):")
    assert line["exc_info"].endswith('ValueError: bad "value"\nover two lines')


def test_messages_that_are_not_text_and_unicode_are_kept():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, {"a": 1}, None, None)
    assert json.loads(JsonFormatter().format(record))["message"] == "{'a': 1}"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "café ☕", None, None)
    assert json.loads(JsonFormatter().format(record))["message"] == "café ☕"


def test_text_stays_the_default_format_and_others_are_refused():
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        setup_logging("INFO", stream=stream)
        logging.getLogger("bacalhau_grpc.test").info("plain", extra={"job_id": "job-1"})
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
    assert "INFO    bacalhau_grpc.test [job=job-1 node=-] plain" in stream.getvalue()
    with pytest.raises(ValueError, match="xml"):
        formatter("xml")
