"""The shards' deadlines in one heap: one entry per shard that has a deadline, so the requester keeps a
single event-loop timer (for the earliest) instead of one timer per shard and step.

Pure data: times are the shards' wall-clock deadlines; nothing here reads a clock. Changing or dropping
a key's deadline leaves its old heap entry behind, skipped when it comes up (lazy deletion); the heap is
rebuilt when stale entries outnumber live ones, so it stays within twice the keys.
"""

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class DeadlineHeap(Generic[K]):
    def __init__(self) -> None:
        self._due: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0  # ties broken by insertion order (keys need not be comparable)

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: K) -> bool:
        return key in self._due

    def get(self, key: K) -> float | None:
        return self._due.get(key)

    def set(self, key: K, deadline: float | None) -> None:
        """Set the key's deadline (None: it has none any more)."""
        if deadline is None:
            self._due.pop(key, None)
            return
        if self._due.get(key) == deadline:
            return
        self._due[key] = deadline
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, key))
        if len(self._heap) > 2 * len(self._due) + 64:
            self._compact()

    def earliest(self) -> float | None:
        """The earliest deadline set, or None when there is none."""
        heap = self._heap
        while heap:
            deadline, _, key = heap[0]
            if self._due.get(key) == deadline:
                return deadline
            heapq.heappop(heap)  # stale: the key's deadline changed or was dropped
        return None

    def pop_due(self, now: float) -> list[tuple[K, float]]:
        """Remove and return every key whose deadline is at or before `now`, earliest first, with it."""
        due: list[tuple[K, float]] = []
        while (earliest := self.earliest()) is not None and earliest <= now:
            deadline, _, key = heapq.heappop(self._heap)
            del self._due[key]
            due.append((key, deadline))
        return due

    def clear(self) -> None:
        self._due.clear()
        self._heap.clear()

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if self._due.get(entry[2]) == entry[0]]
        heapq.heapify(self._heap)
