"""The requester domain service: jobs from submission to published results.

It owns every job it accepted: their events (the projection keeps each job's state rows), one
`ShardFSM` per shard, the compute nodes that registered, and an exact timer per shard deadline
(`loop.call_at`, no ticker). Transitions are synchronous and run on the event loop; the calls they ask
for (AskForBid, BidAccepted, Verify, ...) run as tasks through the ports, and their outcomes come back
as new inputs of the shard's machine.

Active jobs (a shard still running) live in memory; finished ones stay in a small cache and are read
back from the store on demand. Every change is queued to the store (batched commits), and `start()`
reloads the active jobs and re-arms their deadlines, so a restarted requester keeps its jobs.

Crash safety (kill -9 at any point): a call goes out only once the state that asked for it is committed,
and a node's report is answered only once it is committed. So `start()` re-derives from each reloaded
shard the calls that may have been lost (`ShardFSM.resume`) and makes them again; they are idempotent on
the other side, and the repeated reports they bring back change nothing here: no event is lost or recorded
twice. A compute node that registers again (it restarted) is told again what it must still do for its
active executions (`ShardFSM.resume_node`); Verify is retried with back-off while the verifier is away.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bacalhau_grpc.common.content.archive import ArchiveError
from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.errors import (
    BacalhauError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from bacalhau_grpc.common.model import pb, sharding, version
from bacalhau_grpc.common.node_ids import check_node_id
from bacalhau_grpc.common.telemetry import no_span
from bacalhau_grpc.requester.domain import events as ev
from bacalhau_grpc.requester.domain import shard_fsm as fsm_mod
from bacalhau_grpc.requester.domain.fair_share import ClientCounts
from bacalhau_grpc.requester.domain.nodes import NodeRegistry
from bacalhau_grpc.requester.domain.page_tokens import decode_token, encode_token
from bacalhau_grpc.requester.domain.ports import ComputePort, JobQuery, JobStore, StoredJob, VerifierPort
from bacalhau_grpc.requester.domain.projection import ProjectionRejected, apply_event
from bacalhau_grpc.requester.domain.shard_fsm import Phase, ShardFSM, Transition
from bacalhau_grpc.requester.domain.validation import (
    DEFAULT_LIMITS,
    SubmissionLimits,
    build_job,
    validate_submission,
)
from bacalhau_grpc.requester.domain.visibility import PUBLIC, changer, check_visibility, reader_scope

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
DEFAULT_EVENTS_PAGE_SIZE = 1000
MAX_EVENTS_PAGE_SIZE = 1000
# How many finished jobs stay in memory for quick reads (older ones are read from the store).
RECENT_JOBS = 256
SORT_KEYS = ("created_at", "id")

SpanFactory = Callable[..., contextlib.AbstractContextManager[Any]]
# The entries of an IPFS input's content in walk order (see `common.content.listing`), for sharding;
# NotFoundError when the content cannot be listed here.
InputListing = Callable[[pb.StorageSpec], Awaitable[sharding.Listing]]


async def _single_item(volume: pb.StorageSpec) -> sharding.Listing:
    """The input as one item (a requester that cannot look inside content)."""
    return [("", False)]


@dataclass
class JobRecord:
    """One job in memory: the job itself (no state or events), its state rows, events and shards."""

    job: pb.Job
    state: pb.JobState = field(default_factory=pb.JobState)
    events: list[pb.JobEvent] = field(default_factory=list)
    local_events: list[pb.JobLocalEvent] = field(default_factory=list)
    shards: list[ShardFSM] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # The store generation of this job's last queued write.
    written: int = 0
    # Every shard before this index has ended (an ended shard stays ended), so `finished`, asked after
    # every change, looks at each shard once in all: O(1) amortised, even for 10,000 shards.
    ended_before: int = field(default=0, repr=False)

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def finished(self) -> bool:
        shards = self.shards
        while self.ended_before < len(shards) and shards[self.ended_before].is_terminal:
            self.ended_before += 1
        return bool(shards) and self.ended_before == len(shards)

    def notify(self) -> None:
        """Wake every watcher (each waits on the event it saw; a fresh one serves the next change)."""
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class Requester:
    def __init__(
        self,
        *,
        node_id: str,
        store: JobStore,
        compute: ComputePort,
        verifier: VerifierPort,
        negotiation_timeout: float = 120.0,
        default_job_timeout: float = 1800.0,
        node_timeout: float = 10.0,
        heartbeat_interval: float = 2.0,
        max_active_jobs: int = 256,
        max_active_jobs_per_client: int | None = None,
        max_followers_per_client: int | None = None,
        limits: SubmissionLimits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        span: SpanFactory = no_span,
        recent_jobs: int = RECENT_JOBS,
        retry_backoff_start: float = 0.1,
        retry_backoff_max: float = 2.0,
        content: ContentStore | None = None,
        listing: InputListing = _single_item,
        job_visibility: str = PUBLIC,
    ) -> None:
        # Who may read a job: anyone ("public") or its owner only ("owner"); see domain/visibility.py.
        self.job_visibility = check_visibility(job_visibility)
        # Where uploaded job contexts are kept (and served to compute nodes from).
        self.content = content
        # How a sharded job's IPFS inputs are listed at submission. It must list content as compute nodes
        # do (`common.content.listing`), or they would derive other shards.
        self.listing = listing
        self.retry_backoff_start = retry_backoff_start
        self.retry_backoff_max = retry_backoff_max
        self.node_id = node_id
        self.store = store
        self.compute = compute
        self.verifier = verifier
        self.negotiation_timeout = negotiation_timeout
        self.default_job_timeout = default_job_timeout
        self.heartbeat_interval = heartbeat_interval
        self.max_active_jobs = max_active_jobs
        # Fair share (domain/fair_share.py): a client at its limit of jobs in progress is refused at once
        # (it never waits for room, so it cannot hold the back-pressure queue), as is one at its limit of
        # concurrent followers (WatchJobEvents, StreamJobLogs with follow). Anonymous callers share one.
        # None: no limit of one's own (the settings give 64 and 32).
        self._client_jobs = ClientCounts(
            max_active_jobs_per_client,
            what="jobs in progress",
            setting="max_active_jobs_per_client",
            until="one of them ends",
        )
        self._followers = ClientCounts(
            max_followers_per_client,
            what="streams following jobs",
            setting="max_followers_per_client",
            until="one of them ends",
        )
        self.limits = limits
        # Set (and replaced) each time a job ends: submissions waiting for room re-check then.
        self._job_ended = asyncio.Event()
        self.nodes = NodeRegistry(node_timeout)
        self._clock = clock
        self._rng = rng or random.Random()
        self._span = span
        self._recent_limit = recent_jobs
        self._active: dict[str, JobRecord] = {}
        self._recent: OrderedDict[str, JobRecord] = OrderedDict()
        # Shards still taking bids, in creation order: offered to each node that (re)appears.
        self._bidding: dict[tuple[str, int], None] = {}
        # Nodes some bidding shard holds as busy (refused for want of room): offered again on a heartbeat.
        self._busy_nodes: set[str] = set()
        self._timers: dict[tuple[str, int], tuple[float, asyncio.TimerHandle]] = {}
        # One liveness timer per known node, due when its node_timeout runs out without a heartbeat.
        self._node_timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False  # no new calls
        self._draining = False  # no deadlines armed
        self._watches_closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.submitted = 0

    # ------------------------------------------------------------------------------------------
    # life
    # ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Reload nodes and active jobs from the store; re-arm deadlines; resume interrupted work."""
        self._loop = asyncio.get_running_loop()
        now = self._clock()
        for info, _registered_at in self.store.load_nodes():
            # Known nodes get one node_timeout to show they are alive (their heartbeats resume).
            self.nodes.register(info, now)
        reloaded = 0
        for job_id in self.store.active_job_ids():
            stored = self.store.load_job(job_id)
            if stored is None:
                continue
            record = self._record_from_store(stored)
            self._active[job_id] = record
            self._client_jobs.add(record.job.client_id)
            reloaded += 1
        live = self.nodes.live_node_ids(now)
        for node_id in live:
            self._watch_node(node_id)
        for record in list(self._active.values()):
            for shard in record.shards:
                if shard.is_terminal:
                    continue
                transition = shard.resume()
                transition.actions += shard.refill(live, now, self._rng).actions
                self._apply(record, shard, transition)
        if reloaded:
            log.info("requester reloaded %d active jobs", reloaded, extra={"node_id": self.node_id})

    def close_watches(self) -> None:
        """End every WatchJobEvents stream (UNAVAILABLE, so clients resume elsewhere or later with
        after_sequence); call before stopping the server so open streams do not hold its grace period."""
        self._watches_closed = True
        for record in (*self._active.values(), *self._recent.values()):
            record.notify()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop: disarm the deadlines (they are kept in the store and re-armed at the next start), let the
        calls in flight and the calls they lead to finish for up to `grace` seconds, cancel the rest.

        Call after the server stopped, so no new work comes in while the calls drain."""
        self.close_watches()
        self._draining = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for handle in self._node_timers.values():
            handle.cancel()
        self._node_timers.clear()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._tasks and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=remaining)
        self._stopping = True
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("requester stopping: %d calls cut off", len(pending), extra={"node_id": self.node_id})
            await asyncio.gather(*pending, return_exceptions=True)

    def _record_from_store(self, stored: StoredJob) -> JobRecord:
        record = JobRecord(job=stored.job, events=stored.events, local_events=stored.local_events)
        for row in stored.rows:
            record.state.nodes[row.node_id].shards[row.shard_index].CopyFrom(row)
        record.shards = [ShardFSM.from_dict(stored.fsms[i]) for i in sorted(stored.fsms)]
        record.written = self.store.committed_generation
        return record

    # ------------------------------------------------------------------------------------------
    # submission and queries
    # ------------------------------------------------------------------------------------------

    async def submit(self, payload: pb.JobCreatePayload) -> pb.Job:
        validate_submission(payload, self.limits)
        # The job's owner (as build_job sets it): a client at its limit is refused before any work.
        client_id = payload.client_id or payload.job.client_id
        self._client_jobs.check(client_id)
        total_shards = await self._shards_total(payload.job.spec)
        context_cid = await self._store_context(payload.context) if payload.context else ""
        while len(self._active) >= self.max_active_jobs:  # back-pressure: wait for a job to end
            await self._job_ended.wait()
            self._client_jobs.check(client_id)  # its other submissions may have been let in meanwhile
        now = self._clock()
        job = build_job(
            payload,
            requester_node_id=self.node_id,
            default_job_timeout=self.default_job_timeout,
            now=now,
            context_cid=context_cid,
            total_shards=total_shards,
        )
        # Checked again with no await until the job counts: concurrent submissions cannot overshoot.
        self._client_jobs.check(job.client_id)
        with self._span("requester.SubmitJob", job_id=job.id, node_id=self.node_id):
            record = JobRecord(job=job)
            self._active[job.id] = record
            self._client_jobs.add(job.client_id)
            self.store.add_job(job)
            self._record_event(record, ev.created_event(job, now=now))
            live = self.nodes.live_node_ids(now)
            for index in range(job.execution_plan.total_shards):
                shard = ShardFSM.create(
                    job_id=job.id,
                    shard_index=index,
                    requester_node_id=self.node_id,
                    client_id=job.client_id,
                    deal=job.deal,
                    timeout=job.spec.timeout,
                    negotiation_timeout=self.negotiation_timeout,
                    now=now,
                )
                record.shards.append(shard)
                self._apply(record, shard, shard.offer(live, self._rng))
        self.submitted += 1
        log.debug("job submitted", extra={"job_id": job.id, "node_id": self.node_id})
        await self._durable()  # the client gets the job's ID once a restart cannot lose the job
        result = pb.Job()
        result.CopyFrom(job)
        self._fill_state(result, record)
        return result

    async def _shards_total(self, spec: pb.Spec) -> int:
        """ExecutionPlan.ShardsTotal: 1 without a glob pattern, else the number of batches of matching
        atoms (InvalidArgumentError when none matches or an IPFS input cannot be listed here)."""
        if not spec.sharding.glob_pattern:
            return 1
        listings: list[sharding.Listing | None] = []
        for index, volume in enumerate(spec.inputs):
            if not sharding.needs_listing(volume):
                listings.append(None)
                continue
            try:
                listings.append(await self.listing(volume))
            except NotFoundError as exc:
                raise InvalidArgumentError(
                    f"cannot shard input Spec.inputs[{index}]: {exc}", field=f"Spec.inputs[{index}].CID"
                ) from None
        # Off the event loop: 10,000 atoms take tens of milliseconds.
        shards = len(await asyncio.to_thread(sharding.plan, spec, listings))
        if shards > self.limits.max_shards:
            raise InvalidArgumentError(
                f"the job's inputs make {shards} shards, more than the {self.limits.max_shards} a job may "
                "have (use a larger --sharding-batch-size or a narrower --sharding-glob-pattern)",
                field="Spec.Sharding",
            )
        return shards

    async def _store_context(self, archive: bytes) -> str:
        """Keeps an uploaded context (tar or tar.gz, at most 10 MiB unpacked) in the content store.
        Returns its CID."""
        if self.content is None:
            raise InvalidArgumentError("this requester keeps no uploaded contexts", field="Context")
        try:
            return await asyncio.to_thread(self.content.add_archive, archive)
        except ArchiveError as exc:
            raise InvalidArgumentError(
                f"the context archive cannot be used: {exc}", field="Context"
            ) from None

    async def get_job(self, job_id: str, *, caller: str | None = None) -> pb.JobWithInfo:
        """The job with its state and events, for `caller` (the verified ClientID; None: anonymous)."""
        record = await self._readable(job_id, caller)
        info = pb.JobWithInfo()
        info.job.CopyFrom(record.job)
        self._fill_state(info.job, record)
        info.job_state.CopyFrom(info.job.state)
        info.job_events.extend(record.events)
        info.job_local_events.extend(record.local_events)
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
        caller: str | None = None,
    ) -> tuple[list[pb.Job], str]:
        """A page of jobs, with their state rows and without events, and the token of the next page.
        `client_id` filters by owner; when jobs are visible to their owners only, `caller`'s are listed
        (another client's ID lists nothing)."""
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
        query = JobQuery(
            client_id=client_id,
            id_prefix=id_prefix,
            include_tags=sorted(set(include_tags)),
            exclude_tags=sorted(set(exclude_tags)),
            sort_by=sort_by,
            reverse=reverse,
            page_size=size + 1,
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
        page = record.events[offset : offset + size]
        end = offset + len(page)
        next_token = encode_token({"j": record.id, "o": end}) if end < len(record.events) else ""
        return list(page), next_token

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
                while sent < len(record.events):
                    event = record.events[sent]
                    sent += 1
                    yield sent, event
                if record.finished:
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

    async def cancel_job(self, job_id: str, *, client_id: str | None = None, reason: str = "") -> pb.Job:
        """Cancel the job for the client that submitted it (`client_id`: the caller's verified ClientID;
        None or empty: anonymous, UnauthenticatedError): every execution still held is cancelled on its
        node and each unfinished shard ends Cancelled. Another client's job is PermissionDeniedError (not
        found when jobs are visible to their owners only). Cancelling a cancelled job again changes
        nothing; a job that ended otherwise (Completed, Error) cannot be cancelled."""
        client_id = changer(client_id)
        record = await self._readable(job_id, client_id)
        if record.job.client_id != client_id:
            raise PermissionDeniedError(
                f"job {record.id} was submitted by another client: only that client can cancel it"
            )
        open_shards = [s for s in record.shards if not s.is_terminal]
        if not open_shards and not any(s.phase == Phase.CANCELLED for s in record.shards):
            ended = Phase.ERROR if any(s.phase == Phase.ERROR for s in record.shards) else Phase.COMPLETED
            raise FailedPreconditionError(
                f"job {record.id} has already ended ({ended}): it cannot be cancelled"
            )
        if open_shards:
            status = f"cancelled by the client: {reason}" if reason else "cancelled by the client"
            now = self._clock()
            with self._span("requester.CancelJob", job_id=record.id, node_id=self.node_id):
                for shard in open_shards:
                    self._apply(record, shard, shard.cancel(status, now))
            log.info("job cancelled: %s", status, extra={"job_id": record.id, "node_id": self.node_id})
        result = pb.Job()
        result.CopyFrom(record.job)
        self._fill_state(result, record)
        return result

    def get_version(self) -> pb.BuildVersionInfo:
        return version.build_version_info()

    # ------------------------------------------------------------------------------------------
    # compute nodes
    # ------------------------------------------------------------------------------------------

    async def register_node(self, info: pb.NodeInfo) -> None:
        check_node_id(info.node_id, field="node.node_id")
        if not info.address:
            raise InvalidArgumentError(
                "the node's compute service address (host:port) is required", field="node.address"
            )
        now = self._clock()
        stored = pb.NodeInfo()
        stored.CopyFrom(info)
        self.nodes.register(stored, now)
        self.store.put_node(stored, now)
        self._watch_node(info.node_id)
        log.info(
            "compute node %s registered at %s", info.node_id, info.address, extra={"node_id": self.node_id}
        )
        self._resume_node(info.node_id)
        self._offer_to(info.node_id)

    def _resume_node(self, node_id: str) -> None:
        """A node (re)registered: repeat what it must still do for the active shards (see
        `ShardFSM.resume_node`); a restarted node may have lost its last updates."""
        for record in list(self._active.values()):
            for shard in record.shards:
                if shard.is_terminal or shard.execution(node_id) is None:
                    continue
                transition = shard.resume_node(node_id)
                if transition.actions:
                    self._apply(record, shard, transition)

    async def heartbeat(self, node_id: str, available: pb.ResourceUsageData | None = None) -> None:
        check_node_id(node_id, field="node_id")
        was_live = self.nodes.heartbeat(node_id, available, self._clock())
        self._watch_node(node_id)
        if not was_live or node_id in self._busy_nodes:
            self._busy_nodes.discard(node_id)
            self._offer_to(node_id)

    def _watch_node(self, node_id: str) -> None:
        """Arm the node's liveness timer (once; it re-arms itself while the node keeps heartbeating)."""
        entry = self.nodes.get(node_id)
        if self._draining or entry is None or node_id in self._node_timers:
            return
        loop = self._loop or asyncio.get_running_loop()
        expires = entry.last_seen + self.nodes.node_timeout
        when = loop.time() + max(expires - self._clock(), 0.0) + 0.01
        self._node_timers[node_id] = loop.call_at(when, self._check_node, node_id)

    def _check_node(self, node_id: str) -> None:
        """The node's timeout ran out: re-arm if it was heard from meanwhile, else replace its executions."""
        self._node_timers.pop(node_id, None)
        entry = self.nodes.get(node_id)
        now = self._clock()
        if entry is None or self._draining:
            return
        if self.nodes.is_live(node_id, now):
            self._watch_node(node_id)
            return
        reason = (
            f"node {node_id} stopped sending heartbeats (silent for {now - entry.last_seen:.1f}s, "
            f"node timeout {self.nodes.node_timeout:g}s)"
        )
        log.warning("%s", reason, extra={"node_id": self.node_id})
        for record in list(self._active.values()):
            for shard in record.shards:
                if shard.is_terminal or shard.execution(node_id) is None:
                    continue
                transition = shard.on_node_lost(node_id, reason, now)
                if transition.actions:
                    self._refill(shard, transition, now)
                    self._apply(record, shard, transition)

    def _refill(self, shard: ShardFSM, transition: Transition, now: float) -> None:
        """After a bid was lost (refused, failed, its node gone): ask other live nodes to fill the slot."""
        if shard.is_bidding and transition.denied is None:
            transition.actions += shard.refill(self.nodes.live_node_ids(now), now, self._rng).actions

    def _offer_to(self, node_id: str) -> None:
        """Offer every bidding shard to a node that (re)appeared or has room again (`offer_again`)."""
        for job_id, shard_index in list(self._bidding):
            record = self._active.get(job_id)
            if record is None:
                continue
            shard = record.shards[shard_index]
            transition = shard.offer_again(node_id, self._rng)
            if transition.actions:
                self._apply(record, shard, transition)

    # ------------------------------------------------------------------------------------------
    # callbacks from compute nodes
    # ------------------------------------------------------------------------------------------

    async def on_run_complete(
        self,
        *,
        job_id: str,
        shard_index: int,
        node_id: str,
        execution_id: str,
        verification_proposal: bytes = b"",
        run_output: pb.RunCommandResult | None = None,
        status: str = "",
    ) -> None:
        record, shard = self._callback_target(job_id, shard_index, node_id, "results")
        with self._span(
            "requester.OnRunComplete", job_id=job_id, node_id=self.node_id, shard_index=shard_index
        ):
            transition = shard.on_run_complete(
                node_id, execution_id, verification_proposal, run_output, self._clock(), status=status
            )
            await self._finish_durably(record, shard, transition)

    async def on_publish_complete(
        self,
        *,
        job_id: str,
        shard_index: int,
        node_id: str,
        execution_id: str,
        published_result: pb.StorageSpec | None = None,
        status: str = "",
    ) -> None:
        record, shard = self._callback_target(job_id, shard_index, node_id, "published results")
        with self._span(
            "requester.OnPublishComplete", job_id=job_id, node_id=self.node_id, shard_index=shard_index
        ):
            transition = shard.on_published(
                node_id, execution_id, published_result, self._clock(), status=status
            )
            await self._finish_durably(record, shard, transition)

    async def on_compute_failure(
        self, *, job_id: str, shard_index: int, node_id: str, execution_id: str, error: str
    ) -> None:
        record, shard = self._callback_target(job_id, shard_index, node_id, "a compute error")
        with self._span(
            "requester.OnComputeFailure", job_id=job_id, node_id=self.node_id, shard_index=shard_index
        ):
            now = self._clock()
            transition = shard.on_compute_failure(
                node_id, execution_id, error or "the node reported a failure without a message", now
            )
            self._refill(shard, transition, now)
            await self._finish_durably(record, shard, transition)

    async def on_cancel_complete(
        self, *, job_id: str, shard_index: int, node_id: str, execution_id: str
    ) -> None:
        record, shard = self._callback_target(job_id, shard_index, node_id, "a cancellation report")
        now = self._clock()
        transition = shard.on_cancel_complete(node_id, execution_id, now)
        self._refill(shard, transition, now)
        await self._finish_durably(record, shard, transition)

    def _callback_target(
        self, job_id: str, shard_index: int, node_id: str, what: str
    ) -> tuple[JobRecord, ShardFSM]:
        if not job_id:
            raise InvalidArgumentError("a job ID is required", field="job_id")
        check_node_id(node_id, field="node_id")
        record = self._lookup(job_id)
        if record is None:
            raise NotFoundError(f"job {job_id} not found")
        if not 0 <= shard_index < len(record.shards):
            # Nobody holds an execution of a shard that does not exist: refused, nothing recorded.
            raise PermissionDeniedError(
                f"{what} received for shard {job_id}:{shard_index}, which does not exist"
            )
        return record, record.shards[shard_index]

    async def _finish_durably(self, record: JobRecord, shard: ShardFSM, transition: Transition) -> None:
        """Apply a node's report and answer only once it is committed: a node that heard OK never has
        to report again, and one that did not (the requester crashed) reports again (or is asked to by
        the calls `resume` repeats) and finds the same report taken once. A report from a node that does
        not hold the execution changes nothing and is refused (PERMISSION_DENIED)."""
        if transition.denied is not None:
            raise PermissionDeniedError(transition.denied)
        self._apply(record, shard, transition)
        await self._durable()
        if transition.invalid is not None:
            raise FailedPreconditionError(transition.invalid)

    # ------------------------------------------------------------------------------------------
    # applying transitions
    # ------------------------------------------------------------------------------------------

    def _apply(self, record: JobRecord, shard: ShardFSM, transition: Transition) -> None:
        """Record the transition's events, start its calls, persist the machine, re-arm its deadline."""
        for action in transition.actions:
            if isinstance(action, fsm_mod.RecordEvent):
                self._record_event(record, action.event)
            elif isinstance(action, fsm_mod.RecordLocalEvent):
                self._record_local_event(record, action.event)
            else:
                self._dispatch(record.id, shard.shard_index, action)
        self.store.put_fsm(record.id, shard.shard_index, shard)
        record.written = self.store.generation
        key = (record.id, shard.shard_index)
        if shard.is_bidding:
            self._bidding[key] = None
            self._busy_nodes.update(shard.busy)
        else:
            self._bidding.pop(key, None)
        self._arm(record.id, shard)
        if record.finished and record.id in self._active:
            del self._active[record.id]
            self._client_jobs.remove(record.job.client_id)
            self._job_ended.set()
            self._job_ended = asyncio.Event()
            self._remember(record)
            log.debug("job finished", extra={"job_id": record.id, "node_id": self.node_id})
        record.notify()

    def _record_event(self, record: JobRecord, event: pb.JobEvent) -> None:
        record.events.append(event)
        self.store.add_event(record.id, len(record.events), event)
        try:
            update = apply_event(record.state, event)
        except ProjectionRejected as rejected:
            log.warning("%s", rejected, extra={"job_id": record.id, "node_id": self.node_id})
            update = None
        if update is not None:
            self.store.put_row(record.id, update.row)
        record.written = self.store.generation

    def _record_local_event(self, record: JobRecord, event: pb.JobLocalEvent) -> None:
        record.local_events.append(event)
        self.store.add_local_event(record.id, len(record.local_events), event)
        record.written = self.store.generation

    def _arm(self, job_id: str, shard: ShardFSM) -> None:
        key = (job_id, shard.shard_index)
        deadline = None if self._draining else shard.next_deadline()
        armed = self._timers.get(key)
        if armed is not None:
            if armed[0] == deadline:
                return
            armed[1].cancel()
            del self._timers[key]
        if deadline is None:
            return
        loop = self._loop or asyncio.get_running_loop()
        when = loop.time() + max(deadline - self._clock(), 0.0)
        self._timers[key] = (
            deadline,
            loop.call_at(when, self._on_deadline, job_id, shard.shard_index, deadline),
        )

    def _on_deadline(self, job_id: str, shard_index: int, deadline: float) -> None:
        key = (job_id, shard_index)
        armed = self._timers.get(key)
        if armed is not None and armed[0] == deadline:
            del self._timers[key]
        record = self._lookup(job_id)
        if record is None:
            return
        shard = record.shards[shard_index]
        # The loop's clock and the wall clock may disagree by a hair: the deadline is due now.
        now = max(self._clock(), deadline)
        transition = shard.on_timeout(now)
        if transition.actions:
            log.info(
                "shard %s: %s",
                shard.shard_id,
                shard.status,
                extra={"job_id": job_id, "node_id": self.node_id},
            )
        self._apply(record, shard, transition)

    # ------------------------------------------------------------------------------------------
    # calls (tasks)
    # ------------------------------------------------------------------------------------------

    def _dispatch(self, job_id: str, shard_index: int, action: Any) -> None:
        if self._stopping:
            log.warning(
                "requester stopping: %s not sent",
                type(action).__name__,
                extra={"job_id": job_id, "node_id": self.node_id},
            )
            return
        task = asyncio.get_running_loop().create_task(self._perform(job_id, shard_index, action))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _address(self, node_id: str) -> str:
        address = self.nodes.address(node_id)
        if not address:
            raise UnavailableError(f"node {node_id} is not registered with this requester")
        return address

    async def _perform(self, job_id: str, shard_index: int, action: Any) -> None:
        node_id = getattr(action, "node_id", "")
        name = type(action).__name__
        try:
            # Write-ahead: the state that asked for this call (and its events) is committed before the
            # call can have an effect elsewhere, so a restart re-derives exactly the calls that may have
            # been lost (`ShardFSM.resume`) and never loses an event whose effect was seen.
            await self._durable()
            with self._span(
                f"requester.{name}", job_id=job_id, node_id=self.node_id, shard_index=shard_index
            ):
                outcome = await self._call_retrying(job_id, shard_index, action)
        except asyncio.CancelledError:
            raise
        except _Abandoned:
            return
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            if not isinstance(exc, BacalhauError):
                log.exception(
                    "%s to %s failed", name, node_id, extra={"job_id": job_id, "node_id": self.node_id}
                )
            outcome = ("failed", error)
        self._after_call(job_id, shard_index, action, outcome)

    async def _call_retrying(self, job_id: str, shard_index: int, action: Any) -> tuple[str, Any]:
        """`_call`; telling a node its bid or its results were accepted is retried with back-off while the
        node cannot be reached but is still taken for alive (it may be restarting: it comes back with its
        node ID, perhaps at a new address) and its execution still waits for the call. Without this a
        compute node's restart would fail the executions it was being told about."""
        delay = self.retry_backoff_start
        while True:
            try:
                return await self._call(job_id, shard_index, action)
            except (UnavailableError, DeadlineExceededError) as exc:
                if type(action) not in _RETRIED or not self._still_waits(job_id, shard_index, action):
                    raise
                if self._draining:  # stopping: the next start tells the node again (`ShardFSM.resume`)
                    raise _Abandoned from exc
                log.info(
                    "%s to node %s failed (%s); retrying in %.1fs",
                    type(action).__name__,
                    action.node_id,
                    exc,
                    delay,
                    extra={"job_id": job_id, "node_id": self.node_id},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_backoff_max)

    def _still_waits(self, job_id: str, shard_index: int, action: Any) -> bool:
        """The node is taken for alive and its execution is still in the state that asked for `action`."""
        record = self._lookup(job_id)
        if record is None or not self.nodes.is_live(action.node_id, self._clock()):
            return False
        execution = record.shards[shard_index].execution(action.node_id)
        wanted = _RETRIED[type(action)]
        return (
            execution is not None
            and execution.execution_id == action.execution_id
            and execution.state == wanted
        )

    async def _durable(self) -> None:
        """Wait until everything queued to the store so far is committed (no-op once the store closed)."""
        if self.store.committed_generation >= self.store.generation:
            return
        try:
            await self.store.flush()
        except RuntimeError as exc:  # the store is closing: the call goes out all the same
            log.warning("%s", exc, extra={"node_id": self.node_id})

    async def _verify(self, job_id: str, shard_index: int, action: fsm_mod.Verify) -> list[Any]:
        """Verify, retried with back-off while the verifier cannot be reached (it may be restarting) and
        the shard still waits for the verdicts within its execution deadline."""
        delay = self.retry_backoff_start
        while True:
            record = self._lookup(job_id)
            if record is None:
                raise NotFoundError(f"job {job_id} not found")
            try:
                return await self.verifier.verify(record.job, shard_index, action.proposals)
            except (UnavailableError, DeadlineExceededError) as exc:
                shard = record.shards[shard_index]
                deadline = shard.execution_deadline
                if self._draining and shard.phase == Phase.VERIFYING_RESULTS:
                    # Stopping: leave the shard verifying; the next start sends Verify again.
                    raise _Abandoned from exc
                if shard.phase != Phase.VERIFYING_RESULTS:
                    raise
                if deadline is not None and self._clock() + delay >= deadline:
                    raise
                log.info(
                    "verifier unreachable (%s); retrying in %.1fs",
                    exc,
                    delay,
                    extra={"job_id": job_id, "node_id": self.node_id},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_backoff_max)

    async def _call(self, job_id: str, shard_index: int, action: Any) -> tuple[str, Any]:
        if isinstance(action, fsm_mod.Verify):
            return ("ok", await self._verify(job_id, shard_index, action))
        address = self._address(action.node_id)
        if isinstance(action, fsm_mod.AskForBid):
            record = self._lookup(job_id)
            if record is None:
                raise NotFoundError(f"job {job_id} not found")
            return ("ok", await self.compute.ask_for_bid(address, record.job, shard_index))
        if isinstance(action, fsm_mod.NotifyBidAccepted):
            await self.compute.bid_accepted(address, action.execution_id)
        elif isinstance(action, fsm_mod.NotifyBidRejected):
            await self.compute.bid_rejected(address, action.execution_id, action.reason)
        elif isinstance(action, fsm_mod.NotifyResultAccepted):
            await self.compute.result_accepted(address, action.execution_id)
        elif isinstance(action, fsm_mod.NotifyResultRejected):
            await self.compute.result_rejected(address, action.execution_id, action.reason)
        elif isinstance(action, fsm_mod.CancelExecution):
            await self.compute.cancel_execution(address, action.execution_id, action.reason)
        else:  # pragma: no cover - every action kind is listed above
            raise TypeError(f"unknown action {action!r}")
        return ("ok", None)

    def _after_call(self, job_id: str, shard_index: int, action: Any, outcome: tuple[str, Any]) -> None:
        """Feed a call's outcome back into its shard's machine (looked up again: it may be reloaded)."""
        kind, value = outcome
        record = self._lookup(job_id)
        if record is None:
            return
        shard = record.shards[shard_index]
        now = self._clock()
        node_id = getattr(action, "node_id", "")
        failed = kind == "failed"
        if isinstance(action, fsm_mod.AskForBid):
            if failed:
                transition = shard.on_ask_failed(node_id, value, now)
            elif value.accepted and value.execution_id:
                transition = shard.on_bid(node_id, value.execution_id, now, self._rng)
            elif value.accepted:
                transition = shard.on_ask_failed(node_id, "the node bid without an execution ID", now)
            else:
                transition = shard.on_bid_declined(node_id, value.reason, now, busy=value.busy)
            # A refusal or failure leaves a bid short: ask another live node.
            self._refill(shard, transition, now)
        elif isinstance(action, fsm_mod.Verify):
            transition = shard.on_verify_failed(value, now) if failed else shard.on_verified(value, now)
        elif failed and isinstance(action, fsm_mod.NotifyBidAccepted):
            transition = shard.on_bid_accept_failed(node_id, action.execution_id, value, now)
            self._refill(shard, transition, now)
        elif failed and isinstance(action, fsm_mod.NotifyResultAccepted):
            transition = shard.on_result_accept_failed(node_id, action.execution_id, value, now)
            self._refill(shard, transition, now)
        else:
            if failed:
                log.warning(
                    "%s to node %s failed: %s",
                    type(action).__name__,
                    node_id,
                    value,
                    extra={"job_id": job_id, "node_id": self.node_id},
                )
            return
        self._apply(record, shard, transition)

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
            raise NotFoundError(f"job {job_id} not found")
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

    # ------------------------------------------------------------------------------------------
    # introspection (tests, benchmarks)
    # ------------------------------------------------------------------------------------------

    def shard(self, job_id: str, shard_index: int = 0) -> ShardFSM:
        record = self._lookup(job_id)
        if record is None:
            raise NotFoundError(f"job {job_id} not found")
        return record.shards[shard_index]

    def live_node_count(self) -> int:
        return len(self.nodes.live_node_ids(self._clock()))

    def live_node_addresses(self) -> list[str]:
        """Where the live compute nodes listen (e.g. to fetch content they hold)."""
        addresses = (self.nodes.address(node_id) for node_id in self.nodes.live_node_ids(self._clock()))
        return [address for address in addresses if address]

    @property
    def active_jobs(self) -> int:
        return len(self._active)

    @property
    def armed_timers(self) -> int:
        return len(self._timers)

    @property
    def tasks_in_flight(self) -> int:
        return len(self._tasks)


# Calls to a node retried while it is unreachable but alive, with the execution state that waits for each.
_RETRIED = {
    fsm_mod.NotifyBidAccepted: fsm_mod.ExecState.ACCEPTED,
    fsm_mod.NotifyResultAccepted: fsm_mod.ExecState.RESULT_ACCEPTED,
}


class _Abandoned(Exception):
    """A call given up because the requester stops: its shard keeps waiting and `resume` redoes it."""


def hash_text(text: str) -> int:
    """A stable 64-bit FNV-1a hash (Python's `hash` of str changes between processes)."""
    value = 0xCBF29CE484222325
    for byte in text.encode():
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value
