"""The requester domain service: jobs from submission to published results.

It owns every job it accepted: their events (the projection keeps each job's state rows), one
`ShardFSM` per shard, the compute nodes that registered, and every shard's deadline in one heap
(`deadlines.py`) with one exact loop timer for the earliest (no ticker; the shards due together time out
in one step). Transitions are synchronous and run on the event loop; the calls they ask for (AskForBid,
BidAccepted, Verify, ...) go out through the ports once committed, and their outcomes come back as new
inputs of the shard's machine.

Active jobs (a shard still running) live in memory; finished ones stay in a small cache and are read
back from the store on demand. Every change is queued to the store (batched commits), and `start()`
reloads the active jobs and re-arms their deadlines, so a restarted requester keeps its jobs.

Crash safety (kill -9 at any point): a call goes out only once the state that asked for it is committed,
and a node's report is answered only once it is committed. So `start()` re-derives from each reloaded
shard the calls that may have been lost (`ShardFSM.resume`) and makes them again; they are idempotent on
the other side, and the repeated reports they bring back change nothing here: no event is lost or recorded
twice. A compute node that registers again (it restarted) is told again what it must still do for its
active executions (`ShardFSM.resume_node`); Verify is retried with back-off while the verifier is away.

The orchestrator is this module; its parts are mixins of `Requester`, one module each: `submitting.py`
(submission, with idempotent submission IDs kept by `submissions.py`), `queries.py` (finding, reading,
listing and following jobs), `liveness.py` (node registration, heartbeats and timeouts), `reports.py` (the
nodes' reports) and `dispatch.py` (the calls transitions ask for). `records.py` holds `JobRecord`, the
in-memory job they share.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.errors import (
    FailedPreconditionError,
    NotFoundError,
    PermissionDeniedError,
)
from bacalhau_grpc.common.metrics import NO_METRICS, Metrics
from bacalhau_grpc.common.model import pb, sharding, version
from bacalhau_grpc.common.telemetry import no_span
from bacalhau_grpc.requester.domain import shard_fsm as fsm_mod
from bacalhau_grpc.requester.domain.deadlines import DeadlineHeap
from bacalhau_grpc.requester.domain.dispatch import EffectDispatch, Outgoing, SpanFactory
from bacalhau_grpc.requester.domain.fair_share import ClientCounts
from bacalhau_grpc.requester.domain.liveness import NodeLiveness
from bacalhau_grpc.requester.domain.nodes import NodeRegistry
from bacalhau_grpc.requester.domain.ports import ComputePort, JobStore, JobTracing, VerifierPort
from bacalhau_grpc.requester.domain.projection import ProjectionRejected, apply_event
from bacalhau_grpc.requester.domain.queries import JobQueries
from bacalhau_grpc.requester.domain.records import JobRecord  # also imported from here (logs.py)
from bacalhau_grpc.requester.domain.reports import NodeReports
from bacalhau_grpc.requester.domain.shard_fsm import Phase, ShardFSM, Transition
from bacalhau_grpc.requester.domain.submissions import Submissions
from bacalhau_grpc.requester.domain.submitting import InputListing, JobSubmission
from bacalhau_grpc.requester.domain.validation import (
    DEFAULT_LIMITS,
    SubmissionLimits,
)
from bacalhau_grpc.requester.domain.visibility import PUBLIC, changer, check_visibility

log = logging.getLogger(__name__)

# How many finished jobs stay in memory for quick reads (older ones are read from the store).
RECENT_JOBS = 256


async def _single_item(volume: pb.StorageSpec) -> sharding.Listing:
    """The input as one item (a requester that cannot look inside content)."""
    return [("", False)]


class Requester(JobSubmission, JobQueries, NodeLiveness, NodeReports, EffectDispatch):
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
        traces: JobTracing | None = None,
        recent_jobs: int = RECENT_JOBS,
        retry_backoff_start: float = 0.1,
        retry_backoff_max: float = 2.0,
        content: ContentStore | None = None,
        listing: InputListing = _single_item,
        job_visibility: str = PUBLIC,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        # Jobs submitted and ended, shard transitions (common/metrics.py; the app reads the gauges).
        self.metrics = metrics
        # Submissions waiting for room (max_active_jobs reached).
        self.waiting_submissions = 0
        # The phase each active shard was last seen in, so each move counts once.
        self._phases: dict[tuple[str, int], str] = {}
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
        # Store generation -> the jobs that recorded events in it, with their event counts then: shown to
        # watchers once that generation is committed (`_show_when_committed`).
        self._event_marks: dict[int, dict[str, tuple[JobRecord, int]]] = {}
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
        # The job traces `span` opens its spans in (None: jobs are not traced): each job's trace is kept
        # with it, answered by GetJob and restored when the requester restarts.
        self._traces = traces
        self._recent_limit = recent_jobs
        self._active: dict[str, JobRecord] = {}
        # Client-chosen submission IDs in progress or not yet committed (domain/submissions.py).
        self._submissions = Submissions(store)
        self._recent: OrderedDict[str, JobRecord] = OrderedDict()
        # Shards still taking bids, in creation order: offered to each node that (re)appears.
        self._bidding: dict[tuple[str, int], None] = {}
        # Nodes some bidding shard holds as busy (refused for want of room): offered again on a heartbeat.
        self._busy_nodes: set[str] = set()
        # When each busy node was last offered its shards again (loop time), and the re-offers put off to
        # keep them REOFFER_GAP apart (`NodeLiveness.heartbeat`).
        self._reoffered_at: dict[str, float] = {}
        self._reoffer_timers: dict[str, asyncio.TimerHandle] = {}
        # Every unfinished shard's next deadline, and the one loop timer armed for the earliest of them.
        self._deadlines: DeadlineHeap[tuple[str, int]] = DeadlineHeap()
        self._deadline_timer: tuple[float, asyncio.TimerHandle] | None = None
        # One liveness timer per known node, due when its node_timeout runs out without a heartbeat.
        self._node_timers: dict[str, asyncio.TimerHandle] = {}
        # Calls waiting for the store to commit the state that asked for them, and calls waiting to be
        # tried again (dispatch.py); the tasks of the batches in flight.
        self._outbox: list[Outgoing] = []
        self._outbox_waits = False
        self._retry_timers: set[asyncio.TimerHandle] = set()
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
            if self._traces is not None and record.trace is not None:
                self._traces.restore(job_id, *record.trace)  # its later spans join its trace
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
        if self._deadline_timer is not None:
            self._deadline_timer[1].cancel()
            self._deadline_timer = None
        self._deadlines.clear()
        for handle in [*self._node_timers.values(), *self._reoffer_timers.values(), *self._retry_timers]:
            handle.cancel()
        self._retry_timers.clear()
        self._node_timers.clear()
        self._reoffer_timers.clear()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while (self._tasks or self._outbox) and (remaining := deadline - loop.time()) > 0:
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=remaining)
                continue
            with contextlib.suppress(TimeoutError):  # calls waiting for a commit leave after it
                await asyncio.wait_for(self._durable(), remaining)
            if not self._tasks:
                break  # the store cannot commit what they wait for: they are not sent
        self._stopping = True
        if self._outbox:
            outbox, self._outbox = self._outbox, []
            self._send(outbox)  # logs each as not sent
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("requester stopping: %d calls cut off", len(pending), extra={"node_id": self.node_id})
            await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------------------------------------
    # submission and cancellation
    # ------------------------------------------------------------------------------------------

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
    # applying transitions
    # ------------------------------------------------------------------------------------------

    def _apply(self, record: JobRecord, shard: ShardFSM, transition: Transition) -> None:
        """Record the transition's events, start its calls, persist the machine, re-arm its deadline."""
        calls: list[Outgoing] = []
        for action in transition.actions:
            match action:
                case fsm_mod.RecordEvent():
                    self._record_event(record, action.event)
                case fsm_mod.RecordLocalEvent():
                    self._record_local_event(record, action.event)
                case _:
                    calls.append(Outgoing(record.id, shard.shard_index, action))
        self.store.put_fsm(record.id, shard.shard_index, shard)
        if calls:
            self._send(calls)  # they leave once the state above is committed
        record.written = self.store.generation
        key = (record.id, shard.shard_index)
        if shard.is_bidding:
            self._bidding[key] = None
            self._busy_nodes.update(shard.busy)
        else:
            self._bidding.pop(key, None)
        self._arm(record.id, shard)
        self._count_transition(record, shard, key)
        if record.finished and record.id in self._active:
            del self._active[record.id]
            self._count_end(record)
            self._client_jobs.remove(record.job.client_id)
            self._job_ended.set()
            self._job_ended = asyncio.Event()
            self._remember(record)
            log.debug("job finished", extra={"job_id": record.id, "node_id": self.node_id})
        record.notify()

    def _count_transition(self, record: JobRecord, shard: ShardFSM, key: tuple[str, int]) -> None:
        phase = str(shard.phase)
        if record.id in self._active and self._phases.get(key) != phase:
            self._phases[key] = phase
            self.metrics.shard_transition(phase)

    def _count_end(self, record: JobRecord) -> None:
        phases = set()
        for shard in record.shards:
            phases.add(str(shard.phase))
            self._phases.pop((record.id, shard.shard_index), None)
        if phases == {Phase.COMPLETED}:
            state = "Completed"
        else:
            state = "Error" if Phase.ERROR in phases else "Cancelled"
        self.metrics.job_ended(state)

    def _record_event(self, record: JobRecord, event: pb.JobEvent) -> None:
        record.events.append(event)
        self.store.add_event(record.id, len(record.events), event)
        self._show_when_committed(record)
        try:
            update = apply_event(record.state, event)
        except ProjectionRejected as rejected:
            log.warning("%s", rejected, extra={"job_id": record.id, "node_id": self.node_id})
            update = None
        if update is not None:
            self.store.put_row(record.id, update.row)
        record.written = self.store.generation

    def _show_when_committed(self, record: JobRecord) -> None:
        """The job's events recorded so far are shown to its watchers once the store has committed them:
        one callback per store generation for every job that recorded events in it."""
        generation = self.store.generation
        shown = self._event_marks.get(generation)
        if shown is None:
            shown = self._event_marks[generation] = {}
            self.store.when_committed(lambda: self._events_committed(generation))
        shown[record.id] = (record, len(record.events))

    def _events_committed(self, generation: int) -> None:
        for record, count in self._event_marks.pop(generation, {}).values():
            # The writer stopping runs the callbacks too: only a real commit shows events.
            if self.store.committed_generation >= generation and count > record.committed_events:
                record.committed_events = count
                record.notify()

    def _record_local_event(self, record: JobRecord, event: pb.JobLocalEvent) -> None:
        record.local_events.append(event)
        self.store.add_local_event(record.id, len(record.local_events), event)
        record.written = self.store.generation

    def _arm(self, job_id: str, shard: ShardFSM) -> None:
        """Keep the shard's next deadline in the heap, and the loop timer armed for the earliest."""
        self._deadlines.set((job_id, shard.shard_index), None if self._draining else shard.next_deadline())
        self._arm_timer()

    def _arm_timer(self) -> None:
        earliest = self._deadlines.earliest()
        armed = self._deadline_timer
        if armed is not None:
            if earliest is not None and armed[0] <= earliest:
                return  # due no later than needed: it fires, handles what is due, and re-arms
            armed[1].cancel()
            self._deadline_timer = None
        if earliest is None:
            return
        loop = self._loop or asyncio.get_running_loop()
        when = loop.time() + max(earliest - self._clock(), 0.0)
        self._deadline_timer = (earliest, loop.call_at(when, self._on_deadlines, earliest))

    def _on_deadlines(self, armed_for: float) -> None:
        """The earliest deadline came: every shard whose deadline is due times out, in one step."""
        self._deadline_timer = None
        # The loop's clock and the wall clock may disagree by a hair: what the timer was armed for is due.
        now = max(self._clock(), armed_for)
        for (job_id, shard_index), deadline in self._deadlines.pop_due(now):
            record = self._lookup(job_id)
            if record is None:
                continue
            shard = record.shards[shard_index]
            transition = shard.on_timeout(max(now, deadline))
            if transition.actions:
                log.info(
                    "shard %s: %s",
                    shard.shard_id,
                    shard.status,
                    extra={"job_id": job_id, "node_id": self.node_id},
                )
            self._apply(record, shard, transition)
        self._arm_timer()

    # ------------------------------------------------------------------------------------------
    # introspection (tests, benchmarks)
    # ------------------------------------------------------------------------------------------

    def shard(self, job_id: str, shard_index: int = 0) -> ShardFSM:
        record = self._lookup(job_id)
        if record is None:
            raise NotFoundError(f"job {job_id} not found")
        return record.shards[shard_index]

    @property
    def active_jobs(self) -> int:
        return len(self._active)

    @property
    def armed_timers(self) -> int:
        """Shards with a deadline armed."""
        return len(self._deadlines)

    @property
    def tasks_in_flight(self) -> int:
        return len(self._tasks)
