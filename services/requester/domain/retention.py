"""Retention: the requester's history does not grow forever.

A collector, run every `interval` seconds by the requester's app (`JobRetention.start`), removes:

- finished jobs (every shard ended) whose last event is older than `job_retention`, with everything kept
  about them (events, local events, state rows, shard machines, tags, submission IDs), a batch per
  transaction, and from the in-memory cache; each leaves a small expiry record, so reading it answers
  NOT_FOUND saying it expired (`expired_message`); the records go after another `job_retention`;
- content in the requester's content store (uploaded contexts, content fetched from nodes) older than
  `job_retention` that no kept job names;
- compute nodes lost (silent) for longer than `node_timeout + node_retention`, from the registry and the
  node table.

A retention of 0 keeps forever. Running jobs are never touched. `collect()` is one pass, with the clock
given at construction, so tests drive it without waiting.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.periodic import Periodic
from bacalhau_grpc.requester.domain.ports import RetentionStore

if TYPE_CHECKING:
    from bacalhau_grpc.requester.domain.lifecycle import Requester

log = logging.getLogger(__name__)

DEFAULT_JOB_RETENTION = 7 * 86_400.0
DEFAULT_NODE_RETENTION = 86_400.0
DEFAULT_RETENTION_INTERVAL = 60.0
# Jobs removed per transaction.
BATCH = 500


def describe_duration(seconds: float) -> str:
    """A duration as people write it: 7d, 1d12h, 90m -> 1h30m, 2s, 0.5s."""
    if seconds < 60 and not float(seconds).is_integer():
        return f"{seconds:g}s"
    total = round(seconds)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def expired_message(job_id: str, kept_for: float) -> str:
    return f"job {job_id} expired: finished jobs are kept for {describe_duration(kept_for)} (job_retention)"


@dataclass
class RetentionReport:
    """What one pass removed."""

    jobs: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)


class JobRetention:
    def __init__(
        self,
        requester: "Requester",
        store: RetentionStore,
        *,
        job_retention: float = DEFAULT_JOB_RETENTION,
        node_retention: float = DEFAULT_NODE_RETENTION,
        interval: float = DEFAULT_RETENTION_INTERVAL,
        content: ContentStore | None = None,
        clock: Callable[[], float] = time.time,
        batch: int = BATCH,
    ) -> None:
        self.requester = requester
        self.store = store
        self.job_retention = job_retention
        self.node_retention = node_retention
        self.interval = interval
        self.content = content
        self.clock = clock
        self.batch = batch
        self.removed_jobs = 0
        self.removed_nodes = 0
        self.removed_content = 0
        self._content_checked = False
        self._periodic = Periodic(
            "requester-retention",
            interval,
            self.collect,
            logger=log,
            extra={"node_id": self.requester.node_id},
        )
        # Reads of an expired job say so (queries.py).
        requester.retention = self

    def expired_message(self, job_id: str) -> str | None:
        """Why a job ID that is not found is gone, when retention removed it."""
        expired = self.store.expired_job(job_id)
        return None if expired is None else expired_message(job_id, expired[1])

    async def collect(self) -> RetentionReport:
        """One pass: expired jobs, then content nothing names any more, then nodes lost for too long."""
        report = RetentionReport()
        now = self.clock()
        if self.job_retention > 0:
            cutoff = now - self.job_retention
            while True:
                removed = await self.store.expire_finished_jobs(cutoff, now, self.job_retention, self.batch)
                for job_id in removed:
                    self.requester.forget_job(job_id)
                report.jobs += removed
                if len(removed) < self.batch:
                    break
            if self.content is not None and (report.jobs or not self._content_checked):
                self._content_checked = True
                referenced = await self.store.referenced_cids()
                for record in self.requester.in_memory_jobs():  # not yet committed: named all the same
                    spec = record.job.spec
                    referenced.update(v.cid for v in (*spec.contexts, *spec.inputs) if v.cid)
                report.content = await asyncio.to_thread(self.content.remove_unreferenced, referenced, cutoff)
        if self.node_retention > 0:
            report.nodes = await self._remove_lost_nodes(now)
        self.removed_jobs += len(report.jobs)
        self.removed_content += len(report.content)
        self.removed_nodes += len(report.nodes)
        if report.jobs or report.content or report.nodes:
            log.info(
                "retention removed %d finished jobs, %d content entries, %d lost nodes",
                len(report.jobs),
                len(report.content),
                len(report.nodes),
                extra={"node_id": self.requester.node_id},
            )
        return report

    async def _remove_lost_nodes(self, now: float) -> list[str]:
        gone = self.requester.forget_lost_nodes(now, self.node_retention)
        if not gone:
            return []
        await self.store.remove_nodes(gone)
        return gone

    # -- the loop ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Run `collect()` now and every `interval` seconds until `stop()`."""
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
