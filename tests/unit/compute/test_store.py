"""The SQLite execution store: a real file, reopened; compare-and-set; batched writes."""

import sqlite3

import pytest

from bacalhau_grpc.common.errors import AlreadyExistsError, FailedPreconditionError, NotFoundError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.executions import ExecutionState, new_execution
from bacalhau_grpc.compute.store.executions import SQLiteExecutionStore
from tests.unit.compute.support import make_job

S = ExecutionState


@pytest.fixture
async def store(tmp_path):
    store = SQLiteExecutionStore(tmp_path / "compute.db")
    await store.open()
    yield store
    await store.close()


def fresh(**job):
    return new_execution(make_job(**job), 0, pb.ResourceUsageData(cpu=0.25, memory=1024))


def rows(path, sql):
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


async def test_the_database_is_in_wal_mode(store, tmp_path):
    assert rows(tmp_path / "compute.db", "PRAGMA journal_mode") == [("wal",)]


async def test_create_get_and_unknown_ids(store):
    execution = fresh()
    store.create(execution)
    assert store.get(execution.id) is execution
    with pytest.raises(AlreadyExistsError):
        store.create(execution)
    with pytest.raises(NotFoundError, match="execution e-nope not found"):
        store.get("e-nope")
    with pytest.raises(NotFoundError):
        store.update("e-nope", S.BID_ACCEPTED, expected=S.CREATED)


async def test_update_is_compare_and_set(store):
    execution = fresh()
    store.create(execution)
    store.update(execution.id, S.BID_ACCEPTED, expected=S.CREATED)
    with pytest.raises(FailedPreconditionError):
        store.update(execution.id, S.BID_ACCEPTED, expected=S.CREATED)
    with pytest.raises(FailedPreconditionError):
        store.update(execution.id, S.RUNNING, expected=S.BID_ACCEPTED, expected_version=1)
    assert store.get(execution.id).state == S.BID_ACCEPTED and store.get(execution.id).version == 2


async def test_counts_and_active_follow_the_updates(store):
    a, b = fresh(), fresh()
    store.create(a)
    store.create(b)
    store.update(b.id, S.CANCELLED, expected=S.CREATED, reason="bid rejected")
    assert store.counts_by_state()[S.CREATED] == 1 and store.counts_by_state()[S.CANCELLED] == 1
    assert [e.id for e in store.active()] == [a.id]


async def test_a_reopened_store_finds_every_execution_with_its_history(tmp_path):
    path = tmp_path / "compute.db"
    store = SQLiteExecutionStore(path)
    await store.open()
    running, done = fresh(timeout=5), fresh(verifier=pb.Verifier.VERIFIER_DETERMINISTIC)
    for execution in (running, done):
        store.create(execution)
        store.update(execution.id, S.BID_ACCEPTED, expected=S.CREATED, reason="bid accepted")
        store.update(execution.id, S.RUNNING, expected=S.BID_ACCEPTED)
    output = pb.RunCommandResult(stdout="out", stderr="err", exit_code=2)
    store.update(done.id, S.WAITING_VERIFICATION, expected=S.RUNNING, run_output=output, proposal=b"cafe")
    store.update(done.id, S.RESULT_ACCEPTED, expected=S.WAITING_VERIFICATION)
    store.update(done.id, S.PUBLISHING, expected=S.RESULT_ACCEPTED)
    published = pb.StorageSpec(name="noop", metadata={"publisher": "Noop"})
    store.update(done.id, S.COMPLETED, expected=S.PUBLISHING, published_result=published)
    await store.close()

    again = SQLiteExecutionStore(path)
    await again.open()
    try:
        assert [e.id for e in again.active()] == [running.id]
        loaded = again.get(running.id)
        assert loaded.state == S.RUNNING and loaded.version == 3
        assert loaded.job == running.job and loaded.job.spec.timeout == 5
        assert loaded.usage == pb.ResourceUsageData(cpu=0.25, memory=1024)
        assert [(t.from_state, t.to_state, t.reason) for t in loaded.history] == [
            (None, S.CREATED, "bid"),
            (S.CREATED, S.BID_ACCEPTED, "bid accepted"),
            (S.BID_ACCEPTED, S.RUNNING, ""),
        ]
        finished = again.get(done.id)  # an ended execution: read from the file
        assert finished.state == S.COMPLETED and finished.version == 7
        assert finished.run_output == output and finished.proposal == b"cafe"
        assert finished.published_result == published
        assert finished.job.spec.verifier == pb.Verifier.VERIFIER_DETERMINISTIC
        assert len(finished.history) == 7
        assert again.counts_by_state()[S.RUNNING] == 1 and again.counts_by_state()[S.COMPLETED] == 1
        # The reloaded execution goes on where it stopped.
        again.update(running.id, S.FAILED, expected=S.RUNNING, reason="node restarted")
    finally:
        await again.close()
    assert rows(path, f"SELECT state, status FROM executions WHERE id = '{running.id}'") == [
        (8, "node restarted")
    ]


async def test_writes_are_batched_into_few_transactions(store, tmp_path):
    executions = [fresh() for _ in range(300)]
    for execution in executions:
        store.create(execution)
        store.update(execution.id, S.BID_ACCEPTED, expected=S.CREATED)
        store.update(execution.id, S.CANCELLED, expected=S.BID_ACCEPTED)
    await store.flush()
    assert store.batches_written <= 2
    assert rows(tmp_path / "compute.db", "SELECT COUNT(*), MIN(state), MAX(state) FROM executions") == [
        (300, 9, 9)
    ]
    assert rows(tmp_path / "compute.db", "SELECT COUNT(*) FROM execution_history") == [(900,)]


async def test_the_background_writer_commits_without_an_explicit_flush(store, tmp_path):
    import asyncio
    import time

    execution = fresh()
    store.create(execution)
    deadline = time.monotonic() + 5
    while not rows(tmp_path / "compute.db", "SELECT id FROM executions") and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert rows(tmp_path / "compute.db", "SELECT id FROM executions") == [(execution.id,)]


async def test_ended_executions_beyond_the_cache_are_read_back_from_the_file(tmp_path):
    store = SQLiteExecutionStore(tmp_path / "compute.db", ended_cache_size=2)
    await store.open()
    try:
        executions = [fresh() for _ in range(5)]
        for execution in executions:
            store.create(execution)
            store.update(execution.id, S.CANCELLED, expected=S.CREATED, reason="bid rejected: full")
        await store.flush()
        first = store.get(executions[0].id)
        assert first is not executions[0]  # evicted from memory, loaded from the file
        assert first.state == S.CANCELLED and first.status == "bid rejected: full"
        assert first.job == executions[0].job
    finally:
        await store.close()
