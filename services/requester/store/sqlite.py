"""The requester's SQLite store (WAL, synchronous=NORMAL), with batched commits: the domain's `JobStore`
port (`domain/ports.py`, which also defines the records it keeps: `StoredJob`, `JobQuery`).

Writes are queued in memory by cheap synchronous calls (`add_event`, `put_row`, `put_fsm`, ...) and a
writer task commits them in one transaction per batch: whatever queued up during a short window (a few
milliseconds) or up to `max_batch` writes, on a thread of its own so the event loop keeps serving.
Upserts of the same key in one batch (a shard row, a shard state machine) collapse to the last value.
`flush()` waits until everything queued so far is committed; `close()` flushes.

Reads (`reads.py`, `StoreReads`) run on the caller's thread on their own connection and see committed
data only: the domain keeps active jobs in memory and flushes before the queries that must see everything
(listing, prefix lookups). The tables are in `schema.py`, a batch of queued writes in `batch.py`.
"""

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bacalhau_grpc.common.metrics import NO_METRICS, Metrics
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.ports import JobTrace, SubmissionRecord
from bacalhau_grpc.requester.store.batch import Batch
from bacalhau_grpc.requester.store.reads import LIST_SCAN_BATCH, StoreReads
from bacalhau_grpc.requester.store.schema import JOB_TABLES, SCHEMA, SCHEMA_VERSION, connect

log = logging.getLogger(__name__)

# The writer lingers for a batch only after a commit of at least this many writes (the store is busy:
# batching pays); a lone job's few writes per step are committed at once.
BUSY_BATCH = 8


class RequesterStore(StoreReads):
    def __init__(
        self,
        path: Path,
        *,
        flush_interval: float = 0.004,
        max_batch: int = 5000,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.path = Path(path)
        # Each batch's commit latency (`bacalhau.store.commit.duration`).
        self.metrics = metrics
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._batch = Batch()
        self._generation = 0  # bumped by every queued write
        self._committed = 0  # the generation the database holds
        self._last_batch_size = 0  # the writes the last commit held (see BUSY_BATCH)
        self._executor: ThreadPoolExecutor | None = None
        self._writer_db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        # (generation, callback): run once that generation is committed (or the writer stopped).
        self._after_commit: deque[tuple[int, Callable[[], None]]] = deque()
        self._closing = False
        self._last_error: BaseException | None = None
        self.commits = 0
        self.rows_written = 0

    # -- life ------------------------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="requester-store")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open_writer)
        self._reader = connect(self.path)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._writer_loop(), name="requester-store-writer")
        self._task.add_done_callback(lambda _: self._run_after_commit(stopped=True))

    def _open_writer(self) -> None:
        db = connect(self.path)
        db.executescript(SCHEMA)
        db.commit()
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        if int(version) != SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path}: schema version {version}, this requester reads {SCHEMA_VERSION}"
            )
        self._writer_db = db

    async def close(self) -> None:
        """Commit everything queued, then close."""
        if self._task is None:
            return
        self._closing = True
        assert self._wake is not None
        self._wake.set()
        try:
            await self._task
        finally:
            self._task = None
            loop = asyncio.get_running_loop()
            assert self._executor is not None
            await loop.run_in_executor(self._executor, self._close_writer)
            self._executor.shutdown(wait=True)
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def _close_writer(self) -> None:
        if self._writer_db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._writer_db.execute("PRAGMA optimize")
            self._writer_db.close()
            self._writer_db = None

    # -- the writer ------------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """The generation of the last queued write (compare with `committed_generation`)."""
        return self._generation

    @property
    def committed_generation(self) -> int:
        return self._committed

    @property
    def pending(self) -> int:
        return self._batch.size

    def _queued(self, count: int = 1) -> None:
        self._generation += 1
        self._batch.size += count
        if self._wake is not None and not self._wake.is_set():
            self._wake.set()

    async def _writer_loop(self) -> None:
        assert self._wake is not None and self._executor is not None
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            busy = self._last_batch_size >= BUSY_BATCH
            if busy and not self._closing and self._batch.size < self.max_batch:
                # Under load, let the batch fill for a few milliseconds: one transaction for all of it.
                await asyncio.sleep(self.flush_interval)
            batch, self._batch = self._batch, Batch()
            generation = self._generation
            if batch.size:
                try:
                    batch.serialize_machines()
                    await loop.run_in_executor(self._executor, self._commit, batch)
                except Exception as exc:
                    failures += 1
                    self._last_error = exc
                    log.exception(
                        "requester store: commit of %d writes failed (attempt %d)", batch.size, failures
                    )
                    batch.absorb_newer(self._batch)
                    self._batch = batch
                    if self._closing and failures >= 3:
                        raise
                    await asyncio.sleep(min(0.05 * 2**failures, 2.0))
                    self._wake.set()
                    continue
                failures = 0
                self._last_error = None
                self.commits += 1
                self.rows_written += batch.size
            self._last_batch_size = batch.size
            self._committed = generation
            self._run_after_commit()
            if self._closing and not self._batch.size:
                return
            if self._batch.size:
                self._wake.set()

    def _commit(self, batch: Batch) -> None:
        started = time.perf_counter()
        try:
            self._commit_batch(batch)
        finally:
            self.metrics.store_commit("requester", time.perf_counter() - started)

    def _commit_batch(self, batch: Batch) -> None:
        db = self._writer_db
        assert db is not None
        with db:  # one transaction
            if batch.jobs:
                db.executemany(
                    "INSERT OR REPLACE INTO jobs (id, client_id, created_at_us, job) VALUES (?, ?, ?, ?)",
                    batch.jobs,
                )
            if batch.tags:
                db.executemany("INSERT OR IGNORE INTO job_tags (job_id, tag) VALUES (?, ?)", batch.tags)
            if batch.submissions:
                db.executemany(
                    "INSERT OR REPLACE INTO submissions (client_id, submission_id, job_id, digest) "
                    "VALUES (?, ?, ?, ?)",
                    batch.submissions,
                )
            if batch.traces:
                db.executemany(
                    "INSERT OR REPLACE INTO job_traces (job_id, trace_id, span_id) VALUES (?, ?, ?)",
                    batch.traces,
                )
            if batch.events:
                db.executemany(
                    "INSERT OR REPLACE INTO events (job_id, seq, event) VALUES (?, ?, ?)", batch.events
                )
            if batch.local_events:
                db.executemany(
                    "INSERT OR REPLACE INTO local_events (job_id, seq, event) VALUES (?, ?, ?)",
                    batch.local_events,
                )
            if batch.rows:
                db.executemany(
                    "INSERT OR REPLACE INTO shard_rows (job_id, node_id, shard_index, row) "
                    "VALUES (?, ?, ?, ?)",
                    [(*key, row) for key, row in batch.rows.items()],
                )
            if batch.fsm_rows:
                db.executemany(
                    "INSERT OR REPLACE INTO shard_fsm (job_id, shard_index, phase, active, data) "
                    "VALUES (?, ?, ?, ?, ?)",
                    batch.fsm_rows,
                )
            if batch.nodes:
                db.executemany(
                    "INSERT OR REPLACE INTO nodes (node_id, info, registered_at) VALUES (?, ?, ?)",
                    [(node_id, *value) for node_id, value in batch.nodes.items()],
                )

    async def flush(self) -> None:
        """Wait until every write queued before this call is committed."""
        target = self._generation
        if self._committed >= target:
            return
        if self._task is None or self._task.done():
            raise RuntimeError("the requester store is closed")
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def resolve() -> None:
            if not committed.done():
                committed.set_result(None)

        self.when_committed(resolve)
        await committed
        if self._committed < target:
            raise RuntimeError("the requester store's writer stopped") from self._last_error

    def when_committed(self, callback: Callable[[], None]) -> None:
        """Call `callback()` once every write queued so far is committed: now when it is, else right
        after the commit (also when the writer stops, so nothing waits forever: check `committed`)."""
        if self._committed >= self._generation:
            callback()
            return
        self._after_commit.append((self._generation, callback))
        assert self._wake is not None
        self._wake.set()

    def _run_after_commit(self, *, stopped: bool = False) -> None:
        waiting = self._after_commit
        while waiting and (stopped or waiting[0][0] <= self._committed):
            _, callback = waiting.popleft()
            try:
                callback()
            except Exception:
                log.exception("requester store: a callback after a commit failed")

    # -- queued writes ---------------------------------------------------------------------------

    def add_job(self, job: pb.Job, trace: JobTrace | None = None) -> None:
        """A new job (without state or events); its annotations become its tags; `trace`: the trace it was
        created in (committed in the same transaction)."""
        created = job.created_at.ToMicroseconds()
        self._batch.jobs.append((job.id, job.client_id, created, job.SerializeToString()))
        tags = sorted(set(job.spec.annotations))
        self._batch.tags.extend((job.id, tag) for tag in tags)
        if trace is not None:
            self._batch.traces.append((job.id, trace.trace_id, trace.span_id))
        self._queued(1 + len(tags) + (trace is not None))

    def add_submission(self, client_id: str, submission_id: str, record: SubmissionRecord) -> None:
        """A client's submission ID and what it made; queue it right after its job (`add_job`, with no
        await between) and both are committed in the same transaction."""
        self._batch.submissions.append((client_id, submission_id, record.job_id, record.digest))
        self._queued()

    def add_event(self, job_id: str, seq: int, event: pb.JobEvent) -> None:
        self._batch.events.append((job_id, seq, event.SerializeToString()))
        self._queued()

    def add_local_event(self, job_id: str, seq: int, event: pb.JobLocalEvent) -> None:
        self._batch.local_events.append((job_id, seq, event.SerializeToString()))
        self._queued()

    def put_row(self, job_id: str, row: pb.JobShardState) -> None:
        self._batch.rows[(job_id, row.node_id, row.shard_index)] = row.SerializeToString()
        self._queued()

    def put_fsm(self, job_id: str, shard_index: int, machine: Any) -> None:
        """A shard's state machine: an object with `.phase` and `.to_dict()` (read when the batch is
        committed, so a machine changed several times in one batch is written once, as it is then), or
        a `(phase, data)` snapshot."""
        self._batch.fsms[(job_id, shard_index)] = machine
        self._queued()

    def put_node(self, info: pb.NodeInfo, registered_at: float) -> None:
        self._batch.nodes[info.node_id] = (info.SerializeToString(), registered_at)
        self._queued()

    # -- retention (domain/retention.py): on the writer's thread, each call one transaction -------

    async def _on_writer(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """`work(writer connection)` on the writer's thread, after everything queued so far is committed."""
        await self.flush()
        assert self._executor is not None
        db = self._writer_db
        assert db is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, db)

    async def expire_finished_jobs(
        self, ended_before: float, now: float, kept_for: float, limit: int
    ) -> list[str]:
        """Remove up to `limit` jobs whose every shard ended and whose last event (else creation) is
        before `ended_before` (epoch seconds): their rows, events, shard rows and machines, tags and
        submission IDs, in one transaction that also records each as expired at `now` (kept for
        `kept_for` seconds) and prunes the expiry records older than `kept_for`. Returns their IDs."""

        def work(db: sqlite3.Connection) -> list[str]:
            cutoff_us = int(ended_before * 1_000_000)
            chosen: list[str] = []
            after: tuple[int, str] = (-1, "")
            while len(chosen) < limit:
                page = db.execute(
                    "SELECT id, created_at_us FROM jobs j"
                    " WHERE created_at_us < ? AND (created_at_us, id) > (?, ?)"
                    " AND EXISTS (SELECT 1 FROM shard_fsm f WHERE f.job_id = j.id)"
                    " AND NOT EXISTS (SELECT 1 FROM shard_fsm f WHERE f.job_id = j.id AND f.active = 1)"
                    " ORDER BY created_at_us, id LIMIT ?",
                    (cutoff_us, *after, LIST_SCAN_BATCH),
                ).fetchall()
                for job_id, created_us in page:
                    last = db.execute(
                        "SELECT event FROM events WHERE job_id = ? ORDER BY seq DESC LIMIT 1", (job_id,)
                    ).fetchone()
                    ended_us = created_us
                    if last is not None:
                        event = pb.JobEvent.FromString(last[0])
                        if event.HasField("event_time"):
                            ended_us = max(ended_us, event.event_time.ToMicroseconds())
                    if ended_us < cutoff_us:
                        chosen.append(job_id)
                        if len(chosen) >= limit:
                            break
                if len(page) < LIST_SCAN_BATCH:
                    break
                after = (page[-1][1], page[-1][0])
            now_us = int(now * 1_000_000)
            with db:
                for start in range(0, len(chosen), 500):
                    chunk = chosen[start : start + 500]
                    marks = ", ".join("?" * len(chunk))
                    for table, column in JOB_TABLES:
                        db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)
                db.executemany(
                    "INSERT OR REPLACE INTO expired_jobs (id, expired_at_us, kept_for) VALUES (?, ?, ?)",
                    [(job_id, now_us, kept_for) for job_id in chosen],
                )
                db.execute(
                    "DELETE FROM expired_jobs WHERE expired_at_us < ?", (now_us - int(kept_for * 1_000_000),)
                )
            return chosen

        removed: list[str] = await self._on_writer(work)
        return removed

    async def referenced_cids(self) -> set[str]:
        """The CIDs the kept jobs name (their contexts and inputs)."""

        def work(db: sqlite3.Connection) -> set[str]:
            cids: set[str] = set()
            for (blob,) in db.execute("SELECT job FROM jobs"):
                spec = pb.Job.FromString(blob).spec
                cids.update(v.cid for v in (*spec.contexts, *spec.inputs) if v.cid)
            return cids

        found: set[str] = await self._on_writer(work)
        return found

    async def remove_nodes(self, node_ids: Iterable[str]) -> None:
        """Remove these nodes from the node table (one transaction)."""
        ids = [(node_id,) for node_id in node_ids]
        for (node_id,) in ids:
            self._batch.nodes.pop(node_id, None)

        def work(db: sqlite3.Connection) -> None:
            with db:
                db.executemany("DELETE FROM nodes WHERE node_id = ?", ids)

        await self._on_writer(work)
