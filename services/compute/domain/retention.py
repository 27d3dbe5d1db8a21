"""Retention on a compute node: bids do not wait forever, history does not grow forever.

A collector, run every `interval` seconds by the node's app (`ExecutionRetention.start`):

- expires bids never accepted nor rejected: executions still Created `bid_expiry` seconds after the bid
  are cancelled with the reason "bid expired" (`ComputeNode.expire_bids`); keep `bid_expiry` equal to
  the requester's `negotiation_timeout`, after which the requester no longer accepts them anyway;
- removes ended executions (Completed, Failed, Cancelled) last changed more than `execution_retention`
  seconds ago: their rows and history, and their folder under the node's work root if one is left;
- then removes content in the node's content store (published results, fetched contexts) older than
  `execution_retention` that no kept execution published or needs.

A value of 0 turns a part off (keep forever / never expire). `collect()` is one pass, with the clock given
at construction, so tests drive it without waiting.
"""

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.periodic import Periodic
from bacalhau_grpc.compute.domain.node import ComputeNode

log = logging.getLogger(__name__)

DEFAULT_EXECUTION_RETENTION = 7 * 86_400.0
# The requester's default negotiation_timeout: keep the two equal.
DEFAULT_BID_EXPIRY = 120.0
DEFAULT_RETENTION_INTERVAL = 60.0
BATCH = 500


class RetentionStore(Protocol):
    async def remove_ended(self, before: float, limit: int) -> list[str]:
        """Remove up to `limit` ended executions last changed before `before`; their IDs."""
        ...

    async def published_cids(self) -> set[str]:
        """The CIDs the kept executions published their results under."""
        ...


@dataclass
class ComputeRetentionReport:
    expired_bids: list[str] = field(default_factory=list)
    executions: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)


class ExecutionRetention:
    def __init__(
        self,
        node: ComputeNode,
        store: RetentionStore,
        *,
        execution_retention: float = DEFAULT_EXECUTION_RETENTION,
        bid_expiry: float = DEFAULT_BID_EXPIRY,
        interval: float = DEFAULT_RETENTION_INTERVAL,
        content: ContentStore | None = None,
        clock: Callable[[], float] = time.time,
        batch: int = BATCH,
    ) -> None:
        self.node = node
        self.store = store
        self.execution_retention = execution_retention
        self.bid_expiry = bid_expiry
        self.interval = interval
        self.content = content
        self.clock = clock
        self.batch = batch
        self._content_checked = False
        self._periodic = Periodic(
            "compute-retention", interval, self.collect, logger=log, extra={"node_id": self.node.node_id}
        )

    async def collect(self) -> ComputeRetentionReport:
        report = ComputeRetentionReport()
        now = self.clock()
        if self.bid_expiry > 0:
            report.expired_bids = [e.id for e in self.node.expire_bids(now, self.bid_expiry)]
        if self.execution_retention > 0:
            cutoff = now - self.execution_retention
            while True:
                removed = await self.store.remove_ended(cutoff, self.batch)
                report.executions += removed
                if len(removed) < self.batch:
                    break
            folders = [self.node.work_root / execution_id for execution_id in report.executions]
            await asyncio.to_thread(_remove_folders, folders)
            if self.content is not None and (report.executions or not self._content_checked):
                self._content_checked = True
                referenced = await self.store.published_cids()
                for execution in self.node.store.active():  # their inputs may come from the store
                    spec = execution.job.spec
                    referenced.update(v.cid for v in (*spec.contexts, *spec.inputs) if v.cid)
                report.content = await asyncio.to_thread(self.content.remove_unreferenced, referenced, cutoff)
        if report.expired_bids or report.executions or report.content:
            log.info(
                "retention: %d bids expired, %d ended executions and %d content entries removed",
                len(report.expired_bids),
                len(report.executions),
                len(report.content),
                extra={"node_id": self.node.node_id},
            )
        return report

    def start(self) -> None:
        """Run `collect()` now and every `interval` seconds until `stop()`."""
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()


def _remove_folders(folders: list[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
