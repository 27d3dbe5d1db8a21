"""The requester's job queries: finding a job (by ID or unique prefix, from memory or the store, as the
job visibility lets the caller read it), reading it (GetJob, job state, results), listing jobs and a job's
events page by page, and following its events (WatchJobEvents).

A mixin of `Requester` (`lifecycle.py`): it reads the orchestrator's job tables and store, declared below.
"""

import bisect
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from bacalhau_grpc.common.errors import InvalidArgumentError, NotFoundError, UnavailableError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.fair_share import ClientCounts
from bacalhau_grpc.requester.domain.page_tokens import decode_token, encode_token
from bacalhau_grpc.requester.domain.ports import JobQuery, JobStore, StoredJob, summary_state
from bacalhau_grpc.requester.domain.records import JobRecord
from bacalhau_grpc.requester.domain.shard_fsm import ShardFSM
from bacalhau_grpc.requester.domain.visibility import reader_scope

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
DEFAULT_EVENTS_PAGE_SIZE = 1000
MAX_EVENTS_PAGE_SIZE = 1000
DEFAULT_SHARDS_PAGE_SIZE = 1000
MAX_SHARDS_PAGE_SIZE = 1000
SORT_KEYS = ("created_at", "id")


class JobQueries:
    """Reading jobs: lookups, pages and followers (mixed into `Requester`)."""

    # Set by `Requester.__init__`.
    job_visibility: str
    store: JobStore
    _active: dict[str, JobRecord]
    _recent: OrderedDict[str, JobRecord]
    _recent_limit: int
    _client_jobs: ClientCounts
    _followers: ClientCounts
    _watches_closed: bool
    # The retention collector, when one runs (domain/retention.py; it sets itself here): reads of a job it
    # removed answer that the job expired.
    retention: Any = None

    if TYPE_CHECKING:

        def _address(self, node_id: str) -> str: ...  # dispatch.py

    async def get_job(
        self,
        job_id: str,
        *,
        caller: str | None = None,
        events: bool = True,
        shard_states: bool = True,
    ) -> pb.JobWithInfo:
        """The job with its state and events, for `caller` (the verified ClientID; None: anonymous).
        `events=False` leaves out its events and local events (`list_job_events` pages them);
        `shard_states=False` its state rows (`list_job_shards` pages them). `trace_id`: the job's trace,
        when the requester traced its creation, and `event_count` (in either case)."""
        record = await self._readable(job_id, caller)
        info = pb.JobWithInfo()
        info.job.CopyFrom(record.job)
        if shard_states:
            self._fill_state(info.job, record)
            info.job_state.CopyFrom(info.job.state)
        else:
            info.job.ClearField("state")
        if events:
            info.job_events.extend(record.events)
            info.job_local_events.extend(record.local_events)
        if record.trace is not None:
            info.trace_id = record.trace.trace_id
        info.event_count = len(record.events)
        return info

    async def job_state(self, job_id: str) -> pb.JobState:
        record = await self._resolve(job_id)
        state = pb.JobState()
        state.CopyFrom(record.state)
        return state

    async def list_jobs(
        self,
        *,
        client_id: str = "",
        id_prefix: str = "",
        include_tags: Iterable[str] = (),
        exclude_tags: Iterable[str] = (),
        sort_by: str = "created_at",
        reverse: bool = False,
        page_size: int = 0,
        page_token: str = "",
        states: Iterable[int] = (),
        caller: str | None = None,
    ) -> tuple[list[pb.Job], str]:
        """A page of jobs, with their state rows and without events, and the token of the next page.
        `client_id` filters by owner; when jobs are visible to their owners only, `caller`'s are listed
        (another client's ID lists nothing). `states`: only jobs whose summary state (`summary_state`,
        the STATE column of `bacalhau-grpc list`) is one of them."""
        scope = reader_scope(self.job_visibility, caller)
        if scope is not None:
            if client_id and client_id != scope:
                return [], ""
            client_id = scope
        if sort_by not in SORT_KEYS:
            raise InvalidArgumentError(
                f"cannot sort by {sort_by!r}; use one of {', '.join(SORT_KEYS)}", field="sort_by"
            )
        if page_size < 0:
            raise InvalidArgumentError(
                f"page_size must be >= 0 (0 means {DEFAULT_PAGE_SIZE})", field="page_size"
            )
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        wanted = sorted(set(states))
        for state in wanted:
            if state not in pb.JobStateType.values():
                raise InvalidArgumentError(f"unknown job state {state}", field="states")
        query = JobQuery(
            client_id=client_id,
            id_prefix=id_prefix,
            include_tags=sorted(set(include_tags)),
            exclude_tags=sorted(set(exclude_tags)),
            sort_by=sort_by,
            reverse=reverse,
            page_size=size + 1,
            states=wanted,
        )
        listing = self._listing_fingerprint(query)
        if page_token:
            token = decode_token(page_token)
            if token.get("l") != listing or not isinstance(token.get("k"), list):
                raise InvalidArgumentError(
                    "this page token belongs to another listing: "
                    "pass the same filters and sort as the first page",
                    field="page_token",
                )
            query.after = tuple(token["k"])
        await self.store.flush()
        found = self.store.list_jobs(query)
        next_token = ""
        if len(found) > size:
            found = found[:size]
            next_token = encode_token({"l": listing, "k": list(found[-1][1])})
        jobs = []
        for job, _key in found:
            record = self._active.get(job.id) or self._recent.get(job.id)
            if record is not None:  # fresher than the store while writes are queued
                job.ClearField("state")
                self._fill_state(job, record)
                if wanted and summary_state(job.state) not in wanted:
                    continue  # it moved on since the last commit (the page may come out shorter)
            jobs.append(job)
        return jobs, next_token

    @staticmethod
    def _listing_fingerprint(query: JobQuery) -> str:
        parts = [
            query.client_id,
            query.id_prefix,
            ",".join(query.include_tags),
            ",".join(query.exclude_tags),
            query.sort_by,
            "r" if query.reverse else "",
        ]
        if query.states:  # listings without a state filter keep their tokens
            parts.append(",".join(str(state) for state in query.states))
        return format(hash_text("\x00".join(parts)), "x")

    async def list_job_events(
        self, job_id: str, *, page_size: int = 0, page_token: str = "", caller: str | None = None
    ) -> tuple[list[pb.JobEvent], str]:
        record = await self._readable(job_id, caller)
        if page_size < 0:
            raise InvalidArgumentError(
                f"page_size must be >= 0 (0 means {DEFAULT_EVENTS_PAGE_SIZE})", field="page_size"
            )
        size = min(page_size or DEFAULT_EVENTS_PAGE_SIZE, MAX_EVENTS_PAGE_SIZE)
        offset = 0
        if page_token:
            token = decode_token(page_token)
            offset = token.get("o", -1)
            if token.get("j") != record.id or not isinstance(offset, int) or offset < 0:
                raise InvalidArgumentError(
                    "this page token belongs to another job's events: pass the same job_id as the first page",
                    field="page_token",
                )
        committed = record.committed_events
        page = record.events[offset : min(offset + size, committed)]
        end = offset + len(page)
        next_token = encode_token({"j": record.id, "o": end}) if end < committed else ""
        return list(page), next_token

    async def list_job_shards(
        self, job_id: str, *, page_size: int = 0, page_token: str = "", caller: str | None = None
    ) -> tuple[list[pb.JobShardState], str]:
        """A page of the job's state rows, ordered by node ID then shard index, and the next page's token.

        The token holds the last row's (node ID, shard index): a row added since the previous page before
        that point is not listed; none is listed twice."""
        record = await self._readable(job_id, caller)
        if page_size < 0:
            raise InvalidArgumentError(
                f"page_size must be >= 0 (0 means {DEFAULT_SHARDS_PAGE_SIZE})", field="page_size"
            )
        size = min(page_size or DEFAULT_SHARDS_PAGE_SIZE, MAX_SHARDS_PAGE_SIZE)
        after: tuple[str, int] | None = None
        if page_token:
            token = decode_token(page_token)
            node, shard = token.get("n"), token.get("s")
            if (
                token.get("j") != record.id
                or not isinstance(node, str)
                or not isinstance(shard, int)
                or isinstance(shard, bool)
            ):
                raise InvalidArgumentError(
                    "this page token belongs to another job's shards: pass the same job_id as the first page",
                    field="page_token",
                )
            after = (node, shard)
        page: list[tuple[str, int, pb.JobShardState]] = []
        more = False
        nodes = sorted(record.state.nodes)
        for node_id in nodes[bisect.bisect_left(nodes, after[0]) if after else 0 :]:
            shards = record.state.nodes[node_id].shards
            indexes = sorted(shards)
            start = bisect.bisect_right(indexes, after[1]) if after and node_id == after[0] else 0
            for shard_index in indexes[start:]:
                if len(page) == size:
                    more = True
                    break
                row = pb.JobShardState()
                row.CopyFrom(shards[shard_index])
                page.append((node_id, shard_index, row))
            if more:
                break
        next_token = ""
        if more:
            next_token = encode_token({"j": record.id, "n": page[-1][0], "s": page[-1][1]})
        return [row for _, _, row in page], next_token

    async def watch_job_events(
        self, job_id: str, *, after_sequence: int = 0, caller: str | None = None
    ) -> AsyncIterator[tuple[int, pb.JobEvent]]:
        """The job's events from `after_sequence` on (sequence numbers from 1), then each new one as it is
        recorded, until every shard of the job has ended (or the requester stops)."""
        if after_sequence < 0:
            raise InvalidArgumentError("after_sequence must be >= 0", field="after_sequence")
        record = await self._readable(job_id, caller)
        return self._watch(record, after_sequence, caller)

    async def _watch(
        self, record: JobRecord, after: int, caller: str | None = None
    ) -> AsyncIterator[tuple[int, pb.JobEvent]]:
        with self._followers.held(caller):  # counted while it follows (fair share)
            sent = after
            while True:
                while sent < record.committed_events:
                    event = record.events[sent]
                    sent += 1
                    yield sent, event
                if record.finished and sent >= len(record.events):
                    return
                if self._watches_closed:
                    raise UnavailableError(
                        f"the requester is shutting down: watch job {record.id} again "
                        f"with after_sequence={sent}"
                    )
                waiter = record.changed
                await waiter.wait()

    async def get_job_results(self, job_id: str, *, caller: str | None = None) -> list[pb.PublishedResult]:
        """Where each Completed row's results were published (its last ResultsPublished event)."""
        record = await self._readable(job_id, caller)
        published: dict[tuple[str, int], pb.StorageSpec] = {}
        for event in record.events:
            if event.event_name == pb.JobEventType.JOB_EVENT_TYPE_RESULTS_PUBLISHED:
                published[(event.source_node_id, event.shard_index)] = event.published_result
        results = []
        for node_id, node in sorted(record.state.nodes.items()):
            for shard_index, row in sorted(node.shards.items()):
                spec = published.get((node_id, shard_index))
                if row.state == pb.JobStateType.JOB_STATE_TYPE_COMPLETED and spec is not None:
                    result = pb.PublishedResult(node_id=node_id, shard_index=shard_index)
                    result.data.CopyFrom(spec)
                    results.append(result)
        return results

    # ------------------------------------------------------------------------------------------
    # finding jobs
    # ------------------------------------------------------------------------------------------

    def _lookup(self, job_id: str) -> JobRecord | None:
        """The job with exactly this ID: from memory, else from the store (then cached)."""
        record = self._active.get(job_id)
        if record is not None:
            return record
        record = self._recent.get(job_id)
        if record is not None:
            self._recent.move_to_end(job_id)
            return record
        stored = self.store.load_job(job_id)
        if stored is None:
            return None
        record = self._record_from_store(stored)
        if record.finished:
            self._remember(record)
        else:  # pragma: no cover - active jobs are always in memory
            self._active[job_id] = record
            self._client_jobs.add(record.job.client_id)
        return record

    async def _readable(self, job_id: str, caller: str | None) -> JobRecord:
        """The job `caller` asks for, when the job visibility lets it read it (see domain/visibility.py)."""
        return await self._resolve(job_id, owner=reader_scope(self.job_visibility, caller))

    async def _resolve(self, job_id: str, *, owner: str | None = None) -> JobRecord:
        """The job with this ID, or the only job whose ID starts with it; with `owner`, among that
        client's jobs only (another's is not found, and prefixes match only its own)."""
        if not job_id:
            raise InvalidArgumentError("a job ID (or a unique prefix of one) is required", field="job_id")
        record = self._lookup(job_id)
        if record is not None and (owner is None or record.job.client_id == owner):
            return record
        await self.store.flush()
        matches = self.store.find_job_ids(job_id, limit=6, client_id=owner or "")
        if not matches:
            expired = None if self.retention is None else self.retention.expired_message(job_id)
            raise NotFoundError(expired or f"job {job_id} not found")
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise InvalidArgumentError(
                f"job ID prefix {job_id!r} matches more than one job ({shown}): give more of the ID",
                field="job_id",
            )
        record = self._lookup(matches[0])
        if record is None:  # pragma: no cover - just listed
            raise NotFoundError(f"job {job_id} not found")
        return record

    def forget_job(self, job_id: str) -> None:
        """Drop a finished job from the in-memory cache (retention removed it from the store)."""
        self._recent.pop(job_id, None)

    def in_memory_jobs(self) -> list[JobRecord]:
        """The jobs held in memory: active ones and the recently finished cache."""
        return [*self._active.values(), *self._recent.values()]

    def _remember(self, record: JobRecord) -> None:
        """Keep a finished job in the small in-memory cache; drop the oldest ones already committed."""
        self._recent[record.id] = record
        self._recent.move_to_end(record.id)
        if len(self._recent) <= self._recent_limit:
            return
        committed = self.store.committed_generation
        while len(self._recent) > self._recent_limit:
            job_id, old = next(iter(self._recent.items()))
            if old.written > committed:
                break  # not in the database yet: kept until a later commit
            del self._recent[job_id]

    def _record_from_store(self, stored: StoredJob) -> JobRecord:
        record = JobRecord(
            job=stored.job,
            events=stored.events,
            local_events=stored.local_events,
            trace=stored.trace,
            committed_events=len(stored.events),
        )
        for row in stored.rows:
            record.state.nodes[row.node_id].shards[row.shard_index].CopyFrom(row)
        record.shards = [ShardFSM.from_dict(stored.fsms[i]) for i in sorted(stored.fsms)]
        record.written = self.store.committed_generation
        return record

    @staticmethod
    def _fill_state(job: pb.Job, record: JobRecord) -> None:
        job.state.CopyFrom(record.state)

    # ------------------------------------------------------------------------------------------
    # for readers that follow a job's executions (domain/logs.py)
    # ------------------------------------------------------------------------------------------

    async def job_record(self, job_id: str, *, caller: str | None = None) -> JobRecord:
        """The job with this ID (or the only one starting with it) as `caller` may read it: its shard
        machines, kept up to date while it runs (`changed` is set at every change, `finished` once every
        shard ended). Read only."""
        return await self._readable(job_id, caller)

    def node_address(self, node_id: str) -> str:
        """Where a registered compute node listens; UnavailableError when it is not registered."""
        return self._address(node_id)

    def follower(self, caller: str | None) -> contextlib.AbstractContextManager[None]:
        """Counts a stream following a job for `caller` while it is entered; ResourceExhaustedError
        when the caller follows max_followers_per_client jobs already (see `_followers`)."""
        return self._followers.held(caller)

    def client_active_jobs(self, client_id: str | None) -> int:
        """How many jobs in progress the client has (the per-client count fair share uses)."""
        return self._client_jobs.count(client_id)

    def client_followers(self, client_id: str | None) -> int:
        return self._followers.count(client_id)

    @property
    def watches_closed(self) -> bool:
        """True once the requester is shutting down: followers end (see `close_watches`)."""
        return self._watches_closed


def hash_text(text: str) -> int:
    """A stable 64-bit FNV-1a hash (Python's `hash` of str changes between processes)."""
    value = 0xCBF29CE484222325
    for byte in text.encode():
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value
