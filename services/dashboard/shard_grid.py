"""One job's shard-by-node grid as the dashboard's job page shows it, kept up to date from the job's events
without re-reading the job: each (node, shard) cell's state and status, counts per state, how many shards
completed, and which cells changed since the page was last sent an update.

The grid starts from the job's state rows (a snapshot read page by page) and then takes the job's events
in order, by the rules of the requester's state projection: an event moves the row of its target node
(else its source node) and shard to the state the event stands for; a row never moves back to a lower
state; the status is replaced only by an event that carries one. Events the snapshot already holds
change nothing but, briefly, the status text of a row whose state they share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bacalhau_grpc.common.model import enums, pb, states

S = pb.JobStateType
COMPLETED = S.JOB_STATE_TYPE_COMPLETED
# Every state a cell can be in, by number: the page gets this table once and cells as numbers.
STATE_NAMES = ["Pending"] + [
    enums.JOB_STATE_TYPE.name(value) for value in sorted(pb.JobStateType.values()) if value
]


@dataclass
class ShardGrid:
    """The cells of one job with `total_shards` shards."""

    total_shards: int
    nodes: list[str] = field(default_factory=list)
    _node_index: dict[str, int] = field(default_factory=dict)
    _cells: dict[tuple[int, int], tuple[int, str]] = field(default_factory=dict)
    _counts: dict[int, int] = field(default_factory=dict)
    _completed: dict[int, int] = field(default_factory=dict)  # shard -> its Completed cells
    _changed: set[tuple[int, int]] = field(default_factory=set)
    _nodes_sent: int = 0

    def put(self, node_id: str, shard_index: int, state: int, status: str) -> None:
        """Sets a cell as the job's state row says (the snapshot)."""
        self._set(self._node(node_id), shard_index, state, status)

    def apply(self, event_name: int, node_id: str, shard_index: int, status: str) -> bool:
        """Applies one event (its type, the row's node, its shard, its status); True when a cell changed."""
        state = states.state_from_event(event_name)
        if state == S.JOB_STATE_TYPE_UNSPECIFIED or not node_id:
            return False
        key = (self._node(node_id), shard_index)
        current = self._cells.get(key)
        if current is not None:
            if state < current[0]:
                return False
            if not status:
                status = current[1]
            if (state, status) == current:
                return False
        self._set(*key, state, status)
        return True

    def summary(self) -> dict[str, Any]:
        """The job's state (its highest row state, Pending without rows), shards done and total, and how
        many cells are in each state."""
        highest = max((s for s, n in self._counts.items() if n), default=0)
        return {
            "State": STATE_NAMES[highest] if highest < len(STATE_NAMES) else str(highest),
            "ShardsDone": sum(1 for n in self._completed.values() if n),
            "ShardsTotal": max(self.total_shards, 1),
            "Counts": {STATE_NAMES[s]: n for s, n in sorted(self._counts.items()) if n},
        }

    def snapshot(self) -> dict[str, Any]:
        """Every cell, for a page that has none: nodes by index, cells as [node, shard, state, status]."""
        self._changed.clear()
        self._nodes_sent = len(self.nodes)
        return {
            "nodes": list(self.nodes),
            "shards": max(self.total_shards, 1),
            "cells": [[n, s, state, status] for (n, s), (state, status) in sorted(self._cells.items())],
            "summary": self.summary(),
        }

    def changes(self) -> dict[str, Any] | None:
        """The cells changed since the last snapshot or changes (None when none): the nodes list when it
        grew, and the changed cells as in `snapshot`."""
        if not self._changed:
            return None
        changed = sorted(self._changed)
        self._changed.clear()
        update: dict[str, Any] = {
            "cells": [[n, s, *self._cells[(n, s)]] for n, s in changed],
            "summary": self.summary(),
        }
        if len(self.nodes) != self._nodes_sent:
            update["nodes"] = list(self.nodes)
            self._nodes_sent = len(self.nodes)
        return update

    def _node(self, node_id: str) -> int:
        index = self._node_index.get(node_id)
        if index is None:
            index = self._node_index[node_id] = len(self.nodes)
            self.nodes.append(node_id)
        return index

    def _set(self, node: int, shard_index: int, state: int, status: str) -> None:
        key = (node, shard_index)
        old = self._cells.get(key)
        if old is not None:
            self._counts[old[0]] -= 1
            if old[0] == COMPLETED:
                self._completed[shard_index] -= 1
        self._cells[key] = (state, status)
        self._counts[state] = self._counts.get(state, 0) + 1
        if state == COMPLETED:
            self._completed[shard_index] = self._completed.get(shard_index, 0) + 1
        self._changed.add(key)
