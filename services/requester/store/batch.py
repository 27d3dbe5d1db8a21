"""The writes the requester store queued since its last commit (`RequesterStore`), committed as one
transaction."""

import json
from dataclasses import dataclass, field
from typing import Any

from bacalhau_grpc.requester.store.schema import TERMINAL_PHASES


@dataclass
class Batch:
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

    def absorb_newer(self, newer: "Batch") -> None:
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
