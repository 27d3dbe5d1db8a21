"""The requester's SQLite store (WAL, synchronous=NORMAL), with batched commits: the domain's `JobStore`
port (`domain/ports.py`, which also defines the records it keeps: `StoredJob`, `JobQuery`).

Writes are queued in memory by cheap synchronous calls (`add_event`, `put_row`, `put_fsm`, ...) and a
writer task commits them in one transaction per batch: whatever queued up during a short window (a few
milliseconds) or up to `max_batch` writes, on a thread of its own so the event loop keeps serving.
Upserts of the same key in one batch (a shard row, a shard state machine) collapse to the last value.
`flush()` waits until everything queued so far is committed; `close()` flushes.

Reads run on the caller's thread on their own connection and see committed data only: the domain
keeps active jobs in memory and flushes before the queries that must see everything (listing,
prefix lookups).
"""

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.metrics import NO_METRICS, Metrics
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.ports import (
    JobQuery,
    JobTrace,
    StoredJob,
    SubmissionRecord,
    summary_state,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# The state machine phases that end a shard (kept in sync with domain.shard_fsm.TERMINAL_PHASES; the
# store imports only the domain's ports).
TERMINAL_PHASES = ("Completed", "Error", "Cancelled")
# Jobs read per query while filling a page of jobs filtered by state (`list_jobs`).
LIST_SCAN_BATCH = 500

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    job BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at_us, id);
CREATE INDEX IF NOT EXISTS jobs_by_client ON jobs (client_id, created_at_us, id);
CREATE TABLE IF NOT EXISTS job_tags (
    job_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (job_id, tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_tags_by_tag ON job_tags (tag, job_id);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS local_events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shard_rows (
    job_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    shard_index INTEGER NOT NULL,
    row BLOB NOT NULL,
    PRIMARY KEY (job_id, node_id, shard_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shard_fsm (
    job_id TEXT NOT NULL,
    shard_index INTEGER NOT NULL,
    phase TEXT NOT NULL,
    active INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, shard_index)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS shard_fsm_active ON shard_fsm (active) WHERE active = 1;
-- Client-chosen submission IDs (domain/submissions.py): created on open like every table, so a database
-- made before it existed gains it without a schema version change; kept as long as the job.
CREATE TABLE IF NOT EXISTS submissions (
    client_id TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (client_id, submission_id)
) WITHOUT ROWID;
-- Each traced job's OpenTelemetry trace (domain/ports.py JobTrace: trace ID, first span's ID), written in
-- its job's transaction; created on open like every table, so a database made before it existed gains it
-- without a schema version change, and its jobs (no row here) read back with no trace.
CREATE TABLE IF NOT EXISTS job_traces (
    job_id TEXT PRIMARY KEY,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY,
    info BLOB NOT NULL,
    registered_at REAL NOT NULL
) WITHOUT ROWID;
-- Jobs removed by retention (domain/retention.py): when, and how long finished jobs were kept then, so a
-- read of one answers "expired" rather than "not found"; pruned after another retention period.
CREATE TABLE IF NOT EXISTS expired_jobs (
    id TEXT PRIMARY KEY,
    expired_at_us INTEGER NOT NULL,
    kept_for REAL NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
"""

# The tables holding a job's rows, with the column naming the job (retention removes all of them).
_JOB_TABLES = (
    ("jobs", "id"),
    ("job_tags", "job_id"),
    ("events", "job_id"),
    ("local_events", "job_id"),
    ("shard_rows", "job_id"),
    ("shard_fsm", "job_id"),
    ("submissions", "job_id"),
    ("job_traces", "job_id"),
)


@dataclass
class _Batch:
    jobs: list[tuple[str, str, int, bytes]] = field(default_factory=list)
    tags: list[tuple[str, str]] = field(default_factory=list)
    # (client_id, submission_id, job_id, digest): written in the transaction of their job.
    submissions: list[tuple[str, str, str, str]] = field(default_factory=list)
    # (job_id, trace_id, span_id): written in the transaction of their job.
    traces: list[tuple[str, str, str]] = field(default_factory=list)
    events: list[tuple[str, int, bytes]] = field(default_factory=list)
    local_events: list[tuple[str, int, bytes]] = field(default_factory=list)
    rows: dict[tuple[str, str, int], bytes] = field(default_factory=dict)
    # Shard state machines are serialized when the batch is taken, once per machine however often it
    # changed meanwhile: either a (phase, data) snapshot or a live object with .phase and .to_dict().
    fsms: dict[tuple[str, int], Any] = field(default_factory=dict)
    nodes: dict[str, tuple[bytes, float]] = field(default_factory=dict)
    size: int = 0
    fsm_rows: list[tuple[str, int, str, int, str]] = field(default_factory=list)

    def serialize_machines(self) -> None:
        """Snapshot the state machines (on the event loop's thread, where they change)."""
        rows = []
        for (job_id, shard_index), machine in self.fsms.items():
            if isinstance(machine, tuple):
                phase, data = machine
            else:
                phase, data = str(machine.phase), machine.to_dict()
            active = 0 if phase in TERMINAL_PHASES else 1
            rows.append((job_id, shard_index, phase, active, json.dumps(data, separators=(",", ":"))))
        self.fsm_rows = rows

    def absorb_newer(self, newer: "_Batch") -> None:
        """This (older, failed) batch followed by `newer`, merged into this one."""
        self.jobs += newer.jobs
        self.tags += newer.tags
        self.submissions += newer.submissions
        self.traces += newer.traces
        self.events += newer.events
        self.local_events += newer.local_events
        self.rows.update(newer.rows)
        self.fsms.update(newer.fsms)
        self.nodes.update(newer.nodes)
        self.size += newer.size


# The writer lingers for a batch only after a commit of at least this many writes (the store is busy:
# batching pays); a lone job's few writes per step are committed at once.
BUSY_BATCH = 8


class RequesterStore:
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
        self._batch = _Batch()
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
        self._reader = _connect(self.path)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._writer_loop(), name="requester-store-writer")
        self._task.add_done_callback(lambda _: self._run_after_commit(stopped=True))

    def _open_writer(self) -> None:
        db = _connect(self.path)
        db.executescript(_SCHEMA)
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
            batch, self._batch = self._batch, _Batch()
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

    def _commit(self, batch: _Batch) -> None:
        started = time.perf_counter()
        try:
            self._commit_batch(batch)
        finally:
            self.metrics.store_commit("requester", time.perf_counter() - started)

    def _commit_batch(self, batch: _Batch) -> None:
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
                    for table, column in _JOB_TABLES:
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

    def expired_job(self, job_id: str) -> tuple[float, float] | None:
        """(when it expired, how long finished jobs were kept then), epoch seconds and seconds, for a job
        removed by retention; None otherwise."""
        row = self._db.execute(
            "SELECT expired_at_us, kept_for FROM expired_jobs WHERE id = ?", (job_id,)
        ).fetchone()
        return None if row is None else (row[0] / 1_000_000, row[1])

    # -- reads (committed data) ------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError("the requester store is not open")
        return self._reader

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def job_exists(self, job_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None

    def load_job(self, job_id: str) -> StoredJob | None:
        db = self._db
        row = db.execute("SELECT job FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        job = pb.Job.FromString(row[0])
        events = [
            pb.JobEvent.FromString(blob)
            for (blob,) in db.execute("SELECT event FROM events WHERE job_id = ? ORDER BY seq", (job_id,))
        ]
        local_events = [
            pb.JobLocalEvent.FromString(blob)
            for (blob,) in db.execute(
                "SELECT event FROM local_events WHERE job_id = ? ORDER BY seq", (job_id,)
            )
        ]
        rows = [
            pb.JobShardState.FromString(blob)
            for (blob,) in db.execute("SELECT row FROM shard_rows WHERE job_id = ?", (job_id,))
        ]
        fsms = {
            index: json.loads(data)
            for index, data in db.execute(
                "SELECT shard_index, data FROM shard_fsm WHERE job_id = ?", (job_id,)
            )
        }
        traced = db.execute("SELECT trace_id, span_id FROM job_traces WHERE job_id = ?", (job_id,)).fetchone()
        trace = None if traced is None else JobTrace(*traced)
        return StoredJob(job, events, local_events, rows, fsms, trace)

    def find_submission(self, client_id: str, submission_id: str) -> SubmissionRecord | None:
        """What the client's submission with this ID made (committed data), or None."""
        row = self._db.execute(
            "SELECT job_id, digest FROM submissions WHERE client_id = ? AND submission_id = ?",
            (client_id, submission_id),
        ).fetchone()
        return None if row is None else SubmissionRecord(job_id=row[0], digest=row[1])

    def active_job_ids(self) -> list[str]:
        """Jobs with a shard whose state machine has not ended."""
        return [
            job_id
            for (job_id,) in self._db.execute(
                "SELECT DISTINCT job_id FROM shard_fsm WHERE active = 1 ORDER BY job_id"
            )
        ]

    def find_job_ids(self, prefix: str, limit: int, client_id: str = "") -> list[str]:
        """IDs of the jobs starting with `prefix` (only `client_id`'s, when given), at most `limit`."""
        if client_id:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE id >= ? AND id < ? AND client_id = ? ORDER BY id LIMIT ?",
                (prefix, prefix + "\U0010ffff", client_id, limit),
            )
        else:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
                (prefix, prefix + "\U0010ffff", limit),
            )
        return [job_id for (job_id,) in rows]

    def count_events(self, job_id: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM events WHERE job_id = ?", (job_id,)).fetchone()[0]

    def load_nodes(self) -> list[tuple[pb.NodeInfo, float]]:
        return [
            (pb.NodeInfo.FromString(info), registered_at)
            for info, registered_at in self._db.execute(
                "SELECT info, registered_at FROM nodes ORDER BY node_id"
            )
        ]

    def list_jobs(self, query: JobQuery) -> list[tuple[pb.Job, tuple[Any, ...]]]:
        """One page of jobs (with their state rows, without events), each with its sort key.

        With `query.states`, only jobs whose summary state is one of them: a job's state is computed from
        its shard rows (stored as blobs), so the jobs are read in sort order a batch at a time and the
        matching ones kept until the page is full (each job comes with its sort key, as without a filter,
        so the next page starts after the last job returned)."""
        if not query.states:
            return self._list_jobs_page(query)
        wanted = set(query.states)
        batch = max(query.page_size, LIST_SCAN_BATCH)
        scan = JobQuery(**{**vars(query), "states": (), "page_size": batch})
        kept: list[tuple[pb.Job, tuple[Any, ...]]] = []
        while len(kept) < query.page_size:
            found = self._list_jobs_page(scan)
            kept += [(job, key) for job, key in found if summary_state(job.state) in wanted]
            if len(found) < batch:
                break
            scan.after = found[-1][1]
        return kept[: query.page_size]

    def _list_jobs_page(self, query: JobQuery) -> list[tuple[pb.Job, tuple[Any, ...]]]:
        where: list[str] = []
        args: list[Any] = []
        if query.client_id:
            where.append("client_id = ?")
            args.append(query.client_id)
        if query.id_prefix:
            where.append("id >= ? AND id < ?")
            args += [query.id_prefix, query.id_prefix + "\U0010ffff"]
        if query.include_tags:
            marks = ", ".join("?" * len(query.include_tags))
            where.append(f"EXISTS (SELECT 1 FROM job_tags t WHERE t.job_id = jobs.id AND t.tag IN ({marks}))")
            args += list(query.include_tags)
        if query.exclude_tags:
            marks = ", ".join("?" * len(query.exclude_tags))
            where.append(
                f"NOT EXISTS (SELECT 1 FROM job_tags t WHERE t.job_id = jobs.id AND t.tag IN ({marks}))"
            )
            args += list(query.exclude_tags)
        direction = "DESC" if query.reverse else "ASC"
        compare = "<" if query.reverse else ">"
        if query.sort_by == "id":
            order = f"id {direction}"
            if query.after is not None:
                where.append(f"id {compare} ?")
                args.append(query.after[0])
        elif query.sort_by == "created_at":
            order = f"created_at_us {direction}, id {direction}"
            if query.after is not None:
                where.append(f"(created_at_us, id) {compare} (?, ?)")
                args += [query.after[0], query.after[1]]
        else:
            raise InvalidArgumentError(f"cannot sort by {query.sort_by!r}", field="sort_by")
        sql = "SELECT id, created_at_us, job FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order} LIMIT ?"
        args.append(query.page_size)
        found = self._db.execute(sql, args).fetchall()
        if not found:
            return []
        jobs = {job_id: pb.Job.FromString(blob) for job_id, _, blob in found}
        for job_id, blob in self._rows_of(list(jobs)):
            row = pb.JobShardState.FromString(blob)
            jobs[job_id].state.nodes[row.node_id].shards[row.shard_index].CopyFrom(row)
        return [
            (jobs[job_id], (job_id,) if query.sort_by == "id" else (created, job_id))
            for job_id, created, _ in found
        ]

    def _rows_of(self, job_ids: list[str]) -> Iterable[tuple[str, bytes]]:
        for start in range(0, len(job_ids), 500):
            chunk = job_ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            yield from self._db.execute(
                f"SELECT job_id, row FROM shard_rows WHERE job_id IN ({marks})", chunk
            )

    def list_events(self, job_id: str, offset: int, limit: int) -> list[pb.JobEvent]:
        return [
            pb.JobEvent.FromString(blob)
            for (blob,) in self._db.execute(
                "SELECT event FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (job_id, offset, limit),
            )
        ]


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=True)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=10000")
    db.execute("PRAGMA foreign_keys=OFF")
    return db
