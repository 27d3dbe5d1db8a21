"""Retention end to end: a devstack of real processes with short retention settings. A finished job leaves
(describe answers NOT_FOUND saying it expired; its rows leave the requester's SQLite file, its uploaded
context the requester's content store, its executions the compute node's file and folders) while a job
still running is untouched."""

import asyncio
import sqlite3
import time
from pathlib import Path

from bacalhau_grpc.common.content.archive import make_tar_gz
from bacalhau_grpc.common.errors import NotFoundError
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.devstack import Devstack
from bacalhau_grpc.sdk import Client
from bacalhau_grpc.sdk import sdk_types as m
from tests.e2e import cli_support
from tests.e2e.cli_support import clean_env, run_cli, spinning
from tests.e2e.test_cli_query import noop

WASM = Path(__file__).parents[1] / "wasm"
TIMEOUT = 90.0
REQUESTER_FLAGS = ("--job-retention", "2", "--node-retention", "2", "--retention-interval", "0.5")
COMPUTE_FLAGS = ("--execution-retention", "2", "--bid-expiry", "10", "--retention-interval", "0.5")
JOB_TABLES = ("jobs", "job_tags", "events", "local_events", "shard_rows", "shard_fsm", "submissions")


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def requester_rows(db_path: Path, job_id: str) -> int:
    db = read_only(db_path)
    try:
        return sum(
            db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {'id' if table == 'jobs' else 'job_id'} = ?", (job_id,)
            ).fetchone()[0]
            for table in JOB_TABLES
        )
    finally:
        db.close()


def compute_executions(db_path: Path, job_id: str) -> list[tuple[str, int]]:
    db = read_only(db_path)
    try:
        return db.execute("SELECT id, state FROM executions WHERE job_id = ?", (job_id,)).fetchall()
    finally:
        db.close()


async def until(predicate, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


async def test_finished_jobs_expire_and_running_ones_stay(tmp_path):
    async with Devstack(
        nodes=1, data_dir=tmp_path, requester_flags=REQUESTER_FLAGS, compute_flags=COMPUTE_FLAGS
    ) as stack:
        requester_dir, compute_dir = tmp_path / "requester", tmp_path / "compute-0"
        key = ClientKey.load_or_create(cli_support.KEY_DIR)
        async with Client(stack.requester_address, key=key, ca_cert=stack.ca_cert) as client:
            running = await client.submit(
                spinning(), context=make_tar_gz({"spin.wasm": (WASM / "spin.wasm").read_bytes()})
            )
            async for event in client.events(running.id, follow=True):
                if event.event_name == m.JobEventType.BID_ACCEPTED:
                    break
            finished = await client.submit(noop(), context=make_tar_gz({"notes.txt": b"kept for 2 s\n"}))
            await client.wait(finished.id)
            context_cid = finished.spec.contexts[0].cid
            assert (requester_dir / "content" / context_cid).exists()
            assert compute_executions(compute_dir / "compute.db", finished.id)

            async def expired() -> str:
                try:
                    await client.get(finished.id)
                except NotFoundError as exc:
                    return str(exc)
                return ""

            message = await until(expired, "the finished job to expire")
            assert f"job {finished.id} expired: finished jobs are kept for 2s (job_retention)" in message
            assert requester_rows(requester_dir / "requester.db", finished.id) == 0
            assert not (requester_dir / "content" / context_cid).exists()
            await until(
                lambda: not compute_executions(compute_dir / "compute.db", finished.id),
                "the compute node to remove the finished execution",
            )
            env = clean_env(
                BACALHAU_API_HOST=stack.requester_address.rpartition(":")[0],
                BACALHAU_API_PORT=stack.requester_address.rpartition(":")[2],
                BACALHAU_TLS_CA_CERT=str(stack.ca_cert),
            )
            described = await asyncio.to_thread(run_cli, "describe", finished.id, env=env)
            assert described.returncode != 0
            assert f"job {finished.id} expired: finished jobs are kept for 2s" in described.stderr

            # The running job is untouched: readable, still running, its context and execution kept.
            info = await client.get(running.id)
            assert info.job.id == running.id
            (execution_id, state), *_ = compute_executions(compute_dir / "compute.db", running.id)
            assert state == 3  # Running
            assert (compute_dir / "executions" / execution_id).exists()
            assert [p.name for p in (compute_dir / "executions").iterdir()] == [execution_id]
            assert (requester_dir / "content" / running.spec.contexts[0].cid).exists()
            assert requester_rows(requester_dir / "requester.db", running.id) > 0
            await client.cancel(running.id)
