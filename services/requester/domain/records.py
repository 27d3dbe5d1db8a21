"""What the requester keeps in memory for each job it accepted (`JobRecord`), shared by the lifecycle
(`lifecycle.py`) and its parts (`queries.py`, `liveness.py`, `reports.py`, `dispatch.py`)."""

import asyncio
from dataclasses import dataclass, field

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.ports import JobTrace
from bacalhau_grpc.requester.domain.shard_fsm import ShardFSM


@dataclass
class JobRecord:
    """One job in memory: the job itself (no state or events), its state rows, events and shards."""

    job: pb.Job
    state: pb.JobState = field(default_factory=pb.JobState)
    events: list[pb.JobEvent] = field(default_factory=list)
    local_events: list[pb.JobLocalEvent] = field(default_factory=list)
    shards: list[ShardFSM] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # The job's trace, when the requester traced its creation (GetJob's trace_id).
    trace: JobTrace | None = None
    # The store generation of this job's last queued write.
    written: int = 0
    # How many of `events` the store has committed: what WatchJobEvents and ListJobEvents show, so a
    # client never sees an event that a crash of the requester could take back (or record again).
    committed_events: int = 0
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
