"""The SQLite store on a real file: batched writes, reopen, the same jobs, events, rows and machines."""

import asyncio
import contextlib
import json
import sqlite3
import time

import pytest

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.page_tokens import decode_token, encode_token
from bacalhau_grpc.requester.domain.ports import JobQuery, JobTrace, SubmissionRecord
from bacalhau_grpc.requester.store.sqlite import SCHEMA_VERSION, RequesterStore


def make_job(job_id: str, created_us: int, client: str = "c1", tags=()) -> pb.Job:
    job = pb.Job(id=job_id, client_id=client, api_version="V1beta1")
    job.created_at.FromMicroseconds(created_us)
    job.spec.annotations.extend(tags)
    job.deal.concurrency = 1
    return job


async def open_store(path) -> RequesterStore:
    store = RequesterStore(path)
    await store.open()
    return store


async def test_everything_written_is_there_after_reopening(tmp_path):
    path = tmp_path / "requester.db"
    store = await open_store(path)
    job = make_job("job-1", 1_000, tags=["a", "b"])
    store.add_job(job)
    events = [pb.JobEvent(job_id="job-1", event_name=i + 2, status=f"s{i}") for i in range(6)]
    for seq, event in enumerate(events, start=1):
        store.add_event("job-1", seq, event)
    store.add_local_event("job-1", 1, pb.JobLocalEvent(job_id="job-1", target_node_id="n1", event_name=3))
    row = pb.JobShardState(node_id="n1", shard_index=0, state=pb.JobStateType.JOB_STATE_TYPE_BIDDING)
    store.put_row("job-1", row)
    row.state = pb.JobStateType.JOB_STATE_TYPE_COMPLETED
    store.put_row("job-1", row)  # the same key twice in one batch: the last value wins
    store.put_fsm("job-1", 0, ("WaitingForResults", {"phase": "WaitingForResults", "n": 1}))
    store.put_node(pb.NodeInfo(node_id="n1", address="127.0.0.1:1"), 5.0)
    await store.close()

    store = await open_store(path)
    try:
        stored = store.load_job("job-1")
        assert stored is not None
        assert stored.job == job
        assert stored.events == events
        assert [e.target_node_id for e in stored.local_events] == ["n1"]
        assert [(r.node_id, r.state) for r in stored.rows] == [
            ("n1", pb.JobStateType.JOB_STATE_TYPE_COMPLETED)
        ]
        assert stored.fsms == {0: {"phase": "WaitingForResults", "n": 1}}
        assert store.active_job_ids() == ["job-1"]
        assert [info.address for info, _ in store.load_nodes()] == ["127.0.0.1:1"]
        assert store.count_events("job-1") == 6
        assert [e.status for e in store.list_events("job-1", 2, 3)] == ["s2", "s3", "s4"]
        assert store.load_job("nope") is None
    finally:
        await store.close()


async def test_terminal_machines_are_not_active(tmp_path):
    store = await open_store(tmp_path / "r.db")
    try:
        store.add_job(make_job("a", 1))
        store.add_job(make_job("b", 2))
        store.put_fsm("a", 0, ("Completed", {}))
        store.put_fsm("b", 0, ("AcceptingBids", {}))
        await store.flush()
        assert store.active_job_ids() == ["b"]
    finally:
        await store.close()


async def test_writes_are_batched_into_few_transactions(tmp_path):
    store = await open_store(tmp_path / "r.db")
    try:
        for i in range(2000):
            store.add_event("j", i + 1, pb.JobEvent(job_id="j"))
        await store.flush()
        assert store.count_events("j") == 2000
        assert store.commits <= 2
        assert store.committed_generation == store.generation
    finally:
        await store.close()


async def test_reads_see_only_committed_writes_until_flush(tmp_path):
    store = await open_store(tmp_path / "r.db")
    try:
        store.add_job(make_job("x", 1))
        # The writer runs only when the loop gets control: nothing is committed yet.
        assert store.generation > store.committed_generation
        assert not store.job_exists("x")
        await store.flush()
        assert store.job_exists("x")
    finally:
        await store.close()


async def test_flush_from_many_waiters(tmp_path):
    store = await open_store(tmp_path / "r.db")
    try:

        async def writer(n):
            for i in range(50):
                store.add_event(f"j{n}", i + 1, pb.JobEvent())
                if i % 10 == 0:
                    await store.flush()

        await asyncio.gather(*(writer(n) for n in range(10)))
        await store.flush()
        assert sum(store.count_events(f"j{n}") for n in range(10)) == 500
    finally:
        await store.close()


async def _store_with_jobs(tmp_path) -> RequesterStore:
    store = await open_store(tmp_path / "r.db")
    for i in range(10):
        tags = ["even"] if i % 2 == 0 else ["odd"]
        if i % 3 == 0:
            tags.append("three")
        # Creation times out of ID order, with one tie.
        created = [50, 10, 40, 10, 90, 70, 20, 30, 60, 80][i]
        store.add_job(make_job(f"job-{i}", created, client="c1" if i < 6 else "c2", tags=tags))
        store.put_row(f"job-{i}", pb.JobShardState(node_id="n1", state=1))
    await store.flush()
    return store


def page_ids(result) -> list[str]:
    return [job.id for job, _ in result]


async def test_list_sorts_filters_and_pages(tmp_path):
    store = await _store_with_jobs(tmp_path)
    try:
        by_created = page_ids(store.list_jobs(JobQuery(page_size=100)))
        assert by_created == [
            "job-1",
            "job-3",
            "job-6",
            "job-7",
            "job-2",
            "job-0",
            "job-8",
            "job-5",
            "job-9",
            "job-4",
        ]
        assert page_ids(store.list_jobs(JobQuery(page_size=100, reverse=True))) == by_created[::-1]
        assert page_ids(store.list_jobs(JobQuery(sort_by="id", page_size=3))) == ["job-0", "job-1", "job-2"]
        assert page_ids(store.list_jobs(JobQuery(client_id="c2", page_size=100))) == [
            "job-6",
            "job-7",
            "job-8",
            "job-9",
        ]
        assert page_ids(store.list_jobs(JobQuery(id_prefix="job-1", page_size=100))) == ["job-1"]
        three = page_ids(store.list_jobs(JobQuery(include_tags=["three"], sort_by="id", page_size=100)))
        assert three == ["job-0", "job-3", "job-6", "job-9"]
        either = page_ids(
            store.list_jobs(JobQuery(include_tags=["three", "odd"], sort_by="id", page_size=100))
        )
        assert either == ["job-0", "job-1", "job-3", "job-5", "job-6", "job-7", "job-9"]
        no_odd = page_ids(
            store.list_jobs(JobQuery(exclude_tags=["odd", "three"], sort_by="id", page_size=100))
        )
        assert no_odd == ["job-2", "job-4", "job-8"]
        # Keyset pages: (created_at, id) after the last of the previous page, stable with ties.
        first = store.list_jobs(JobQuery(page_size=3))
        second = store.list_jobs(JobQuery(page_size=3, after=first[-1][1]))
        assert page_ids(first) + page_ids(second) == by_created[:6]
        # Jobs come with their state rows.
        assert first[0][0].state.nodes["n1"].shards[0].state == 1
        with pytest.raises(InvalidArgumentError):
            store.list_jobs(JobQuery(sort_by="colour"))
    finally:
        await store.close()


async def test_prefix_lookup(tmp_path):
    store = await _store_with_jobs(tmp_path)
    try:
        assert store.find_job_ids("job-", 3) == ["job-0", "job-1", "job-2"]
        assert store.find_job_ids("job-7", 3) == ["job-7"]
        assert store.find_job_ids("zzz", 3) == []
    finally:
        await store.close()


def test_page_tokens_are_opaque_and_checked():
    token = encode_token({"k": [1, "a"]})
    assert decode_token(token) == {"k": [1, "a"]}
    # Not base64, base64 of text that is not JSON, JSON that is not an object ("[1]").
    for bad in ("%%%", "bm90IGpzb24", "WzFd"):
        with pytest.raises(InvalidArgumentError) as caught:
            decode_token(bad)
        assert caught.value.field == "page_token"


async def test_schema_survives_json_state(tmp_path):
    store = await open_store(tmp_path / "r.db")
    try:
        data = {"v": 1, "nested": {"list": [1, 2.5, None, "x"]}}
        store.put_fsm("j", 0, ("EnqueuingBids", data))
        await store.flush()
        assert store._db.execute("SELECT data FROM shard_fsm").fetchone()[0] == json.dumps(
            data, separators=(",", ":")
        )
    finally:
        await store.close()


async def test_a_submission_record_is_committed_with_its_job_and_read_back(tmp_path):
    path = tmp_path / "requester.db"
    store = await open_store(path)
    store.add_job(make_job("job-1", 1_000))
    store.add_submission("c1", "sub-1", SubmissionRecord(job_id="job-1", digest="ab" * 32))
    commits = store.commits
    await store.flush()
    assert store.commits == commits + 1  # one transaction: the job and its submission record
    await store.close()

    store = await open_store(path)
    try:
        assert store.find_submission("c1", "sub-1") == SubmissionRecord(job_id="job-1", digest="ab" * 32)
        assert store.find_submission("c2", "sub-1") is None
        assert store.find_submission("c1", "sub-2") is None
    finally:
        await store.close()


async def test_a_database_made_before_submission_ids_gains_their_table_on_open(tmp_path):
    path = tmp_path / "requester.db"
    store = await open_store(path)
    store.add_job(make_job("job-1", 1_000))
    await store.close()
    with contextlib.closing(sqlite3.connect(path)) as db:  # as a requester before submission IDs left it
        db.execute("DROP TABLE submissions")
        db.commit()

    store = await open_store(path)
    try:
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert store.load_job("job-1") is not None
        assert store.find_submission("c1", "sub-1") is None
        store.add_job(make_job("job-2", 2_000))
        store.add_submission("c1", "sub-1", SubmissionRecord(job_id="job-2", digest="cd" * 32))
        await store.flush()
        assert store.find_submission("c1", "sub-1") == SubmissionRecord(job_id="job-2", digest="cd" * 32)
    finally:
        await store.close()


TRACE = JobTrace(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7")


async def test_a_jobs_trace_is_kept_with_it_and_a_job_stored_before_traces_reads_back_without_one(tmp_path):
    path = tmp_path / "requester.db"
    store = await open_store(path)
    store.add_job(make_job("job-old", 1_000))
    await store.close()
    with contextlib.closing(sqlite3.connect(path)) as db:  # as a requester before trace IDs left it
        db.execute("DROP TABLE job_traces")
        db.commit()

    store = await open_store(path)
    try:
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
        old = store.load_job("job-old")
        assert old is not None and old.trace is None
        store.add_job(make_job("job-traced", 2_000), TRACE)
        store.add_job(make_job("job-untraced", 3_000))
    finally:
        await store.close()

    store = await open_store(path)
    try:
        traced, untraced = store.load_job("job-traced"), store.load_job("job-untraced")
        assert traced is not None and traced.trace == TRACE
        assert untraced is not None and untraced.trace is None
    finally:
        await store.close()


async def test_retention_removes_a_jobs_trace_with_the_job(tmp_path):
    path = tmp_path / "requester.db"
    store = await open_store(path)
    try:
        store.add_job(make_job("job-1", 1_000), TRACE)
        store.put_fsm("job-1", 0, ("Completed", {"phase": "Completed"}))
        now = time.time()
        assert await store.expire_finished_jobs(now, now, 60.0, 10) == ["job-1"]
        assert store.load_job("job-1") is None
        assert store._db.execute("SELECT COUNT(*) FROM job_traces").fetchone() == (0,)
    finally:
        await store.close()
