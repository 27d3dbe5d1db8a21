"""A job's trace ID: kept with the job, answered by GetJob, and put back in the requester's job traces when
a restarted requester reloads the job (so its later spans join its trace). This process does not trace
(tests/e2e/test_tracing.py runs the real thing): here the trace a traced requester would have kept is
written to the store as it keeps it."""

import contextlib
import sqlite3

from opentelemetry import trace

from bacalhau_grpc.common import telemetry
from bacalhau_grpc.common.model import pb
from tests.unit.requester.fakes import Harness

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def payload() -> pb.JobCreatePayload:
    p = pb.JobCreatePayload(client_id="client-1")
    p.job.spec.engine = pb.Engine.ENGINE_NOOP
    p.job.deal.concurrency = 1
    return p


async def test_without_tracing_a_job_has_no_trace_id(tmp_path):
    assert not telemetry.telemetry_enabled()
    traces = telemetry.JobTraces()
    harness = Harness(tmp_path, span=traces.span, traces=traces)
    requester = await harness.start()
    try:
        job = await requester.submit(payload())
        assert (await requester.get_job(job.id)).trace_id == ""
        assert len(traces) == 0
    finally:
        await harness.stop()
    requester = await harness.start()
    try:
        assert (await requester.get_job(job.id)).trace_id == ""
        assert len(traces) == 0
    finally:
        await harness.stop()


async def test_a_reloaded_job_answers_its_kept_trace_and_is_back_in_it(tmp_path):
    traces = telemetry.JobTraces()
    harness = Harness(tmp_path, span=traces.span, traces=traces)
    requester = await harness.start()
    try:
        job = await requester.submit(payload())  # no compute node: it stays active, waiting for bids
        untraced = await requester.submit(payload())
    finally:
        await harness.stop()
    with contextlib.closing(sqlite3.connect(harness.path)) as db:  # as a requester that traced it kept it
        db.execute(
            "INSERT INTO job_traces (job_id, trace_id, span_id) VALUES (?, ?, ?)", (job.id, TRACE_ID, SPAN_ID)
        )
        db.commit()

    requester = await harness.start()
    try:
        restored = traces.span_context(job.id)
        assert restored is not None
        assert (trace.format_trace_id(restored.trace_id), trace.format_span_id(restored.span_id)) == (
            TRACE_ID,
            SPAN_ID,
        )
        assert restored.trace_flags.sampled
        assert traces.trace_ids(job.id) == (TRACE_ID, SPAN_ID)
        for events in (True, False):
            for shard_states in (True, False):
                info = await requester.get_job(job.id, events=events, shard_states=shard_states)
                assert info.trace_id == TRACE_ID
        assert traces.span_context(untraced.id) is None
        assert (await requester.get_job(untraced.id)).trace_id == ""
    finally:
        await harness.stop()


def test_job_traces_give_and_restore_a_jobs_trace_as_hex():
    traces = telemetry.JobTraces()
    assert traces.trace_ids("j-1") is None
    traces.remember("j-1", trace.SpanContext(trace_id=0xAB, span_id=0xCD, is_remote=False))
    assert traces.trace_ids("j-1") == ("0" * 30 + "ab", "0" * 14 + "cd")
    traces.restore("j-2", TRACE_ID, SPAN_ID)
    assert traces.trace_ids("j-2") == (TRACE_ID, SPAN_ID)
    for bad in (("", SPAN_ID), ("xyz", SPAN_ID), (TRACE_ID, "12"), ("0" * 32, SPAN_ID), (TRACE_ID, "0" * 16)):
        traces.restore("j-bad", *bad)
    assert traces.span_context("j-bad") is None
