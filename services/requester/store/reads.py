"""The requester store's reads (`StoreReads`, mixed into `RequesterStore`): on the caller's thread, on a
connection of their own, they see committed data only."""

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.ports import (
    JobQuery,
    JobTrace,
    StoredJob,
    SubmissionRecord,
    summary_state,
)

# Jobs read per query while filling a page of jobs filtered by state (`list_jobs`; retention's scan too).
LIST_SCAN_BATCH = 500


class StoreReads:
    _reader: sqlite3.Connection | None = None

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

    def expired_job(self, job_id: str) -> tuple[float, float] | None:
        """(when it expired, how long finished jobs were kept then), epoch seconds and seconds, for a job
        removed by retention; None otherwise."""
        row = self._db.execute(
            "SELECT expired_at_us, kept_for FROM expired_jobs WHERE id = ?", (job_id,)
        ).fetchone()
        return None if row is None else (row[0] / 1_000_000, row[1])
