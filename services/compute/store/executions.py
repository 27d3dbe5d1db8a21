"""The compute node's executions in SQLite (WAL, synchronous=NORMAL), written in batches.

Reads are served from memory: every active execution is held in memory (loaded at open), and the most
recent ended ones in a bounded cache; anything older is read from the database. Writes update memory at
once (so compare-and-set sees them immediately) and queue the row; a background task commits the queue
in ONE transaction per batch (under load every `batch_interval` seconds, sooner when `batch_size` rows
wait; an idle store writes a lone change at once) on a
writer thread, so the event loop never waits for the disk. Several updates of one execution within a
batch become one row write; every transition is appended to the history table. `flush` waits until
everything queued so far is committed; `close` flushes.

A crash can lose the last batch (a few milliseconds of updates); callers that must not lose an update
(the servicer before answering the requester) await `flush()`.
"""

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bacalhau_grpc.common.errors import AlreadyExistsError, NotFoundError
from bacalhau_grpc.common.metrics import NO_METRICS, Metrics
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.executions import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    Execution,
    ExecutionState,
    Transition,
    transition,
)

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    shard_index INTEGER NOT NULL,
    requester_node_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    version INTEGER NOT NULL,
    job BLOB NOT NULL,
    usage BLOB NOT NULL,
    run_output BLOB,
    proposal BLOB NOT NULL,
    published_result BLOB,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_state ON executions (state);
CREATE INDEX IF NOT EXISTS executions_by_job ON executions (job_id, shard_index);
CREATE TABLE IF NOT EXISTS execution_history (
    execution_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    from_state INTEGER,
    to_state INTEGER NOT NULL,
    at REAL NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (execution_id, version)
) WITHOUT ROWID;
"""

_COLUMNS = (
    "id, job_id, shard_index, requester_node_id, state, version, job, usage, run_output, proposal, "
    "published_result, status, created_at, updated_at"
)
_INSERT = f"INSERT OR REPLACE INTO executions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
_UPDATE = (
    "UPDATE executions SET state=?, version=?, run_output=?, proposal=?, published_result=?, status=?, "
    "updated_at=? WHERE id=?"
)
_HISTORY = (
    "INSERT OR REPLACE INTO execution_history (execution_id, version, from_state, to_state, at, reason) "
    "VALUES (?,?,?,?,?,?)"
)
_ACTIVE = ",".join(str(int(s)) for s in sorted(ACTIVE_STATES))


def _blob(message: Any) -> bytes | None:
    return None if message is None else message.SerializeToString()


def _full_row(e: Execution) -> tuple[Any, ...]:
    return (
        e.id,
        e.job.id,
        e.shard_index,
        e.job.requester_node_id,
        int(e.state),
        e.version,
        e.job.SerializeToString(),
        e.usage.SerializeToString(),
        _blob(e.run_output),
        e.proposal,
        _blob(e.published_result),
        e.status,
        e.created_at,
        e.updated_at,
    )


def _update_row(e: Execution) -> tuple[Any, ...]:
    return (
        int(e.state),
        e.version,
        _blob(e.run_output),
        e.proposal,
        _blob(e.published_result),
        e.status,
        e.updated_at,
        e.id,
    )


def _history_row(execution_id: str, t: Transition) -> tuple[Any, ...]:
    return (
        execution_id,
        t.version,
        None if t.from_state is None else int(t.from_state),
        int(t.to_state),
        t.at,
        t.reason,
    )


def _parse(message_type: Any, data: bytes | None) -> Any:
    if data is None:
        return None
    message = message_type()
    message.ParseFromString(data)
    return message


def _execution(row: sqlite3.Row, history: list[Transition]) -> Execution:
    return Execution(
        id=row["id"],
        job=_parse(pb.Job, row["job"]),
        shard_index=row["shard_index"],
        usage=_parse(pb.ResourceUsageData, row["usage"]),
        state=ExecutionState(row["state"]),
        run_output=_parse(pb.RunCommandResult, row["run_output"]),
        proposal=bytes(row["proposal"]),
        published_result=_parse(pb.StorageSpec, row["published_result"]),
        status=row["status"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        history=history,
    )


def _transition(row: sqlite3.Row) -> Transition:
    from_state = row["from_state"]
    return Transition(
        version=row["version"],
        from_state=None if from_state is None else ExecutionState(from_state),
        to_state=ExecutionState(row["to_state"]),
        at=row["at"],
        reason=row["reason"],
    )


def _connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=5000")
    return connection


# See SQLiteExecutionStore._last_batch_size.
BUSY_BATCH = 8


class SQLiteExecutionStore:
    """The `ExecutionStore` of a compute node, in one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        batch_interval: float = 0.005,
        batch_size: int = 500,
        ended_cache_size: int = 10_000,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.path = Path(path)
        # Each batch's commit latency (`bacalhau.store.commit.duration`).
        self.metrics = metrics
        self.batch_interval = batch_interval
        self.batch_size = batch_size
        self.ended_cache_size = ended_cache_size
        self._active: dict[str, Execution] = {}
        self._ended: OrderedDict[str, Execution] = OrderedDict()
        self._counts: dict[ExecutionState, int] = dict.fromkeys(ExecutionState, 0)
        # Queued writes: executions whose row is new (INSERT) or changed (UPDATE), and history rows.
        self._new: dict[str, Execution] = {}
        self._changed: dict[str, Execution] = {}
        self._history: list[tuple[Any, ...]] = []
        # Executions of the batch being written, still readable while it is in flight.
        self._in_flight: dict[str, Execution] = {}
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compute-store")
        self._wake = asyncio.Event()
        # The changes the last batch held: the flusher lingers for a batch only after a batch of at least
        # BUSY_BATCH of them (the node is busy: batching pays); a lone change is written at once.
        self._last_batch_size = 0
        self._flusher: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._closed = False
        self.batches_written = 0
        self.rows_written = 0

    # -------------------------------------------------------------------------------------------
    # Open and close
    # -------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Creates the file and tables if needed, loads the active executions and state counts."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._writer = await loop.run_in_executor(self._thread, self._open_writer)
        self._reader = _connect(self.path)
        for row in self._reader.execute("SELECT state, COUNT(*) FROM executions GROUP BY state"):
            self._counts[ExecutionState(row[0])] = row[1]
        histories: dict[str, list[Transition]] = {}
        for row in self._reader.execute(
            "SELECT h.* FROM execution_history h JOIN executions e ON e.id = h.execution_id "
            f"WHERE e.state IN ({_ACTIVE}) ORDER BY h.execution_id, h.version"
        ):
            histories.setdefault(row["execution_id"], []).append(_transition(row))
        for row in self._reader.execute(
            f"SELECT {_COLUMNS} FROM executions WHERE state IN ({_ACTIVE}) ORDER BY created_at"
        ):
            execution = _execution(row, histories.get(row["id"], []))
            self._active[execution.id] = execution
        self._flusher = asyncio.create_task(self._flush_loop(), name="compute-store-flush")

    def _open_writer(self) -> sqlite3.Connection:
        connection = _connect(self.path, check_same_thread=False)
        connection.executescript(SCHEMA)
        return connection

    async def close(self) -> None:
        """Writes everything queued, then closes the database."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
        loop = asyncio.get_running_loop()
        if self._writer is not None:
            await loop.run_in_executor(self._thread, self._writer.close)
        if self._reader is not None:
            self._reader.close()
        self._thread.shutdown(wait=True)

    # -------------------------------------------------------------------------------------------
    # ExecutionStore
    # -------------------------------------------------------------------------------------------

    def create(self, execution: Execution) -> None:
        """Adds a new execution. IDs are fresh UUIDs, so only memory is checked for a duplicate."""
        if execution.id in self._active or execution.id in self._ended or execution.id in self._in_flight:
            raise AlreadyExistsError(f"execution {execution.id} exists already")
        self._remember(execution)
        self._counts[execution.state] += 1
        self._new[execution.id] = execution
        self._history.extend(_history_row(execution.id, t) for t in execution.history)
        self._queued()

    def get(self, execution_id: str) -> Execution:
        execution = self._find(execution_id)
        if execution is None:
            raise NotFoundError(f"execution {execution_id} not found")
        return execution

    def update(
        self,
        execution_id: str,
        to: ExecutionState,
        *,
        expected: ExecutionState | Iterable[ExecutionState],
        expected_version: int | None = None,
        reason: str = "",
        **changes: Any,
    ) -> Execution:
        execution = self.get(execution_id)
        before = execution.state
        record = transition(
            execution, to, expected=expected, expected_version=expected_version, reason=reason, **changes
        )
        self._counts[before] -= 1
        self._counts[to] += 1
        self._remember(execution)
        if execution.id not in self._new:
            self._changed[execution.id] = execution
        self._history.append(_history_row(execution.id, record))
        self._queued()
        return execution

    def active(self) -> list[Execution]:
        return list(self._active.values())

    def counts_by_state(self) -> dict[ExecutionState, int]:
        return dict(self._counts)

    async def flush(self) -> None:
        """Returns once everything queued before the call is committed."""
        async with self._flush_lock:
            await self._write_batch()

    # -------------------------------------------------------------------------------------------
    # Retention (domain/retention.py)
    # -------------------------------------------------------------------------------------------

    async def remove_ended(self, before: float, limit: int) -> list[str]:
        """Remove up to `limit` ended executions (Completed, Failed, Cancelled) last changed before
        `before` (epoch seconds), rows and history, in one transaction; returns their IDs."""
        await self.flush()
        terminal = ",".join(str(int(state)) for state in sorted(TERMINAL_STATES))

        def work() -> list[tuple[str, int]]:
            assert self._writer is not None
            found = [
                (row[0], row[1])
                for row in self._writer.execute(
                    f"SELECT id, state FROM executions WHERE state IN ({terminal})"
                    " AND updated_at < ? LIMIT ?",
                    (before, limit),
                )
            ]
            ids = [execution_id for execution_id, _ in found]
            with self._writer:
                self._writer.execute("BEGIN")
                self._writer.executemany(
                    "DELETE FROM execution_history WHERE execution_id = ?", [(i,) for i in ids]
                )
                self._writer.executemany("DELETE FROM executions WHERE id = ?", [(i,) for i in ids])
            return found

        async with self._flush_lock:
            removed = await asyncio.get_running_loop().run_in_executor(self._thread, work)
        for execution_id, state in removed:
            self._ended.pop(execution_id, None)
            self._counts[ExecutionState(state)] -= 1
        return [execution_id for execution_id, _ in removed]

    async def published_cids(self) -> set[str]:
        """The CIDs the kept executions published their results under."""
        await self.flush()

        def work() -> set[str]:
            assert self._writer is not None
            cids = set()
            for (blob,) in self._writer.execute(
                "SELECT published_result FROM executions WHERE published_result IS NOT NULL"
            ):
                cid = pb.StorageSpec.FromString(blob).cid
                if cid:
                    cids.add(cid)
            return cids

        async with self._flush_lock:
            found: set[str] = await asyncio.get_running_loop().run_in_executor(self._thread, work)
        return found

    # -------------------------------------------------------------------------------------------
    # Internals
    # -------------------------------------------------------------------------------------------

    def _find(self, execution_id: str) -> Execution | None:
        execution = self._active.get(execution_id) or self._ended.get(execution_id)
        if execution is None:
            execution = self._in_flight.get(execution_id) or self._load(execution_id)
            if execution is not None:
                self._remember(execution)
        return execution

    def _load(self, execution_id: str) -> Execution | None:
        if self._reader is None:
            return None
        row = self._reader.execute(
            f"SELECT {_COLUMNS} FROM executions WHERE id=?", (execution_id,)
        ).fetchone()
        if row is None:
            return None
        history = [
            _transition(h)
            for h in self._reader.execute(
                "SELECT * FROM execution_history WHERE execution_id=? ORDER BY version", (execution_id,)
            )
        ]
        return _execution(row, history)

    def _remember(self, execution: Execution) -> None:
        if execution.is_active:
            self._active[execution.id] = execution
            return
        self._active.pop(execution.id, None)
        self._ended[execution.id] = execution
        self._ended.move_to_end(execution.id)
        while len(self._ended) > self.ended_cache_size:
            self._ended.popitem(last=False)

    def _queued(self) -> None:
        self._wake.set()

    def _pending(self) -> int:
        return len(self._new) + len(self._changed) + len(self._history)

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            if self._last_batch_size >= BUSY_BATCH and self._pending() < self.batch_size:
                await asyncio.sleep(self.batch_interval)
            self._wake.clear()
            try:
                async with self._flush_lock:
                    self._last_batch_size = self._pending()
                    await self._write_batch()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not write executions to %s; retrying", self.path)
                await asyncio.sleep(0.5)
                self._wake.set()

    async def _write_batch(self) -> None:
        if not self._pending() or self._writer is None:
            return
        new, changed, history = self._new, self._changed, self._history
        self._new, self._changed, self._history = {}, {}, []
        # Rows are taken now, in the event loop: later updates go into the next batch.
        inserts = [_full_row(e) for e in new.values()]
        updates = [_update_row(e) for e in changed.values()]
        self._in_flight = {**new, **changed}
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._thread, self._write, inserts, updates, history
            )
        except BaseException:
            # Put the batch back (newer updates queued meanwhile win) so the next attempt writes it.
            for eid, execution in new.items():
                self._new.setdefault(eid, execution)
                self._changed.pop(eid, None)
            for eid, execution in changed.items():
                if eid not in self._new:
                    self._changed.setdefault(eid, execution)
            self._history[:0] = history
            raise
        finally:
            self._in_flight = {}
        self.batches_written += 1
        self.rows_written += len(inserts) + len(updates) + len(history)

    def _write(
        self, inserts: list[tuple[Any, ...]], updates: list[tuple[Any, ...]], history: list[tuple[Any, ...]]
    ) -> None:
        assert self._writer is not None
        started = time.perf_counter()
        with self._writer:  # not autocommit inside `with`: one transaction
            self._writer.execute("BEGIN")
            if inserts:
                self._writer.executemany(_INSERT, inserts)
            if updates:
                self._writer.executemany(_UPDATE, updates)
            if history:
                self._writer.executemany(_HISTORY, history)
        elapsed = time.perf_counter() - started
        self.metrics.store_commit("compute", elapsed)
        if elapsed > 0.5:
            log.warning("writing %d execution rows took %.3fs", len(inserts) + len(updates), elapsed)
