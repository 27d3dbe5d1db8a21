"""Submission: a signed job becomes a job with its shards, once validated, within the limits, and
durable before the client hears of it. A client-chosen submission ID makes a retried submission return
the job its first attempt made (`submissions.py`); concurrent twins make one job.

A mixin of `Requester` (`lifecycle.py`): the state it uses is set by the orchestrator, declared below.
"""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bacalhau_grpc.common import failpoints
from bacalhau_grpc.common.content.archive import ArchiveError
from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from bacalhau_grpc.common.metrics import Metrics
from bacalhau_grpc.common.model import pb, sharding
from bacalhau_grpc.requester.domain import events as ev
from bacalhau_grpc.requester.domain.dispatch import SpanFactory
from bacalhau_grpc.requester.domain.fair_share import ClientCounts
from bacalhau_grpc.requester.domain.nodes import NodeRegistry
from bacalhau_grpc.requester.domain.ports import JobStore, JobTrace, JobTracing, SubmissionRecord
from bacalhau_grpc.requester.domain.records import JobRecord
from bacalhau_grpc.requester.domain.shard_fsm import ShardFSM, Transition
from bacalhau_grpc.requester.domain.submissions import SubmissionKey, Submissions, submission_digest
from bacalhau_grpc.requester.domain.validation import SubmissionLimits, build_job, validate_submission

# The lifecycle's logger: these records kept their logger name when this part moved out of lifecycle.py.
log = logging.getLogger("bacalhau_grpc.requester.domain.lifecycle")

# The entries of an IPFS input's content in walk order (see `common.content.listing`), for sharding;
# NotFoundError when the content cannot be listed here.
InputListing = Callable[[pb.StorageSpec], Awaitable[sharding.Listing]]


class JobSubmission:
    """Submitting jobs (mixed into `Requester`)."""

    # Set by `Requester.__init__`.
    node_id: str
    store: JobStore
    nodes: NodeRegistry
    limits: SubmissionLimits
    content: ContentStore | None
    listing: InputListing
    max_active_jobs: int
    default_job_timeout: float
    negotiation_timeout: float
    submitted: int
    metrics: Metrics
    waiting_submissions: int
    _client_jobs: ClientCounts
    _submissions: Submissions
    _active: dict[str, JobRecord]
    _job_ended: asyncio.Event
    _clock: Callable[[], float]
    _rng: random.Random
    _span: SpanFactory
    _traces: JobTracing | None

    if TYPE_CHECKING:

        def _lookup(self, job_id: str) -> JobRecord | None: ...  # queries.py

        def _fill_state(self, job: pb.Job, record: JobRecord) -> None: ...  # queries.py

        async def _durable(self) -> None: ...  # dispatch.py

        def _record_event(self, record: JobRecord, event: pb.JobEvent) -> None: ...  # lifecycle.py

        def _apply(
            self, record: JobRecord, shard: ShardFSM, transition: Transition
        ) -> None: ...  # lifecycle.py

    async def submit(self, payload: pb.JobCreatePayload) -> pb.Job:
        """Create the job a valid submission asks for; return it (with its state) once it is durable.

        With a submission ID (domain/submissions.py): the job this client's submission with that ID made
        already, when there is one (nothing is created, and the client's active-jobs limit does not
        apply), or AlreadyExistsError when that submission's payload was another. A submission with the
        same (client, ID) still in progress is waited for first, so concurrent twins make one job."""
        validate_submission(payload, self.limits)
        # The job's owner (as build_job sets it).
        client_id = payload.client_id or payload.job.client_id
        if not payload.submission_id:
            self._client_jobs.check(client_id)  # a client at its limit is refused before any work
            return await self._create(payload, client_id)
        key = (client_id, payload.submission_id)
        digest = submission_digest(payload)
        while (running := self._submissions.in_progress(key)) is not None:
            await running.wait()  # its outcome: a job (answered below) or an error (then this one goes on)
        made = self._submissions.find(key)
        existing = None if made is None else self._made_by(key, made, digest)
        if existing is not None:
            if existing.written > self.store.committed_generation:
                await self._durable()  # its first submission may have left before its commit (cancelled)
            result = pb.Job()
            result.CopyFrom(existing.job)
            self._fill_state(result, existing)
            return result
        self._client_jobs.check(client_id)
        # Held from here (no await since the key was seen free) until the job is durable or refused.
        with self._submissions.reserved(key):
            return await self._create(payload, client_id, (key, digest))

    def _made_by(self, key: SubmissionKey, made: SubmissionRecord, digest: str) -> JobRecord | None:
        """The job an earlier submission with this key made; AlreadyExistsError when that submission's
        payload was another; None when the job is gone (a new one is made)."""
        submission_id = key[1]
        if made.digest != digest:
            raise AlreadyExistsError(
                f"submission ID {submission_id!r} was used already for job {made.job_id}, with another "
                "payload: a submission ID names one job (choose a new ID to submit another job)"
            )
        record = self._lookup(made.job_id)
        if record is None:  # pragma: no cover - a job and its submission record are committed together
            log.warning(
                "submission %r names job %s, which is not stored: making a new job",
                submission_id,
                made.job_id,
                extra={"node_id": self.node_id},
            )
            return None
        log.debug(
            "submission %r made this job already: returned again",
            submission_id,
            extra={"job_id": made.job_id, "node_id": self.node_id},
        )
        return record

    async def _create(
        self,
        payload: pb.JobCreatePayload,
        client_id: str,
        submission: tuple[SubmissionKey, str] | None = None,
    ) -> pb.Job:
        """Make the job (after `submit`'s checks); `submission`: its (client, submission ID) key and the
        payload's digest, recorded in the store batch of the job."""
        total_shards = await self._shards_total(payload.job.spec)
        context_cid = await self._store_context(payload.context) if payload.context else ""
        while len(self._active) >= self.max_active_jobs:  # back-pressure: wait for a job to end
            self.waiting_submissions += 1
            try:
                await self._job_ended.wait()
            finally:
                self.waiting_submissions -= 1
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
            # The job's first span started its trace: kept with the job (GetJob answers its ID).
            ids = None if self._traces is None else self._traces.trace_ids(job.id)
            record = JobRecord(job=job, trace=None if ids is None else JobTrace(*ids))
            self._active[job.id] = record
            self._client_jobs.add(job.client_id)
            self.store.add_job(job, record.trace)
            if submission is not None:  # in the job's batch: a crash leaves both or neither
                key, digest = submission
                self._submissions.record(key, SubmissionRecord(job_id=job.id, digest=digest))
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
        self.metrics.job_submitted()
        log.debug("job submitted", extra={"job_id": job.id, "node_id": self.node_id})
        await self._durable()  # the client gets the job's ID once a restart cannot lose the job
        failpoints.hit("submit-after-commit")  # tests only: die before the client hears of its job
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
