"""Coalescing many small calls to one peer into few batch calls, without delaying a lone call.

`Coalescer.submit(key, item)` (or `submit_many(key, items)`) sends `item` at once while fewer than
`max_in_flight` batches for `key` are out; otherwise it waits with every other item submitted meanwhile
for the same key, and they leave together as the next batch (at most `max_items` items of at most
`max_bytes` in all). An idle peer sees one call per item; a busy one sees a few large calls instead of
thousands of small ones. This is how the requester, its compute nodes and its verifier keep up with a
job of 10,000 shards: one unary gRPC call costs about as much as handling a hundred items in a batch.

A batch call runs in the context of the call that started it (its trace, when tracing is on).

`send(key, items)` performs one batch call and returns one result per item, in order: a value, or a
`BacalhauError` for an item that failed on its own. When the whole call fails, every item of the
batch gets that error.
"""

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - item
R = TypeVar("R")

DEFAULT_MAX_IN_FLIGHT = 2
DEFAULT_MAX_ITEMS = 256
DEFAULT_MAX_BYTES = 1 << 20


@dataclass
class _Lane(Generic[I]):
    waiting: deque[tuple[I, asyncio.Future[Any]]] = field(default_factory=deque)
    in_flight: int = 0


class Coalescer(Generic[K, I, R]):
    def __init__(
        self,
        send: Callable[[K, list[I]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_items: int = DEFAULT_MAX_ITEMS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        size: Callable[[I], int] | None = None,
    ) -> None:
        if max_in_flight < 1 or max_items < 1:
            raise ValueError("max_in_flight and max_items must be at least 1")
        self._send = send
        self.max_in_flight = max_in_flight
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._size = size
        self._lanes: dict[K, _Lane[I]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # batch calls sent, for debugging and benchmarks
        self.items = 0

    async def submit(self, key: K, item: I) -> R:
        """The item's result; raises its error (or the failed batch call's)."""
        (result,) = await self.submit_many(key, [item])
        if isinstance(result, BaseException):
            raise result
        return result

    async def submit_many(self, key: K, items: Sequence[I]) -> list[R | BaseException]:
        """Each item's result or error, in order; the items leave together (as far as the limits allow)
        with any others waiting for the same key."""
        loop = asyncio.get_running_loop()
        lane = self._lanes.setdefault(key, _Lane())
        futures: list[asyncio.Future[Any]] = []
        for item in items:
            future = loop.create_future()
            lane.waiting.append((item, future))
            futures.append(future)
        while lane.waiting and lane.in_flight < self.max_in_flight:
            self._start(key, lane)
        return list(await asyncio.gather(*futures, return_exceptions=True))

    def _start(self, key: K, lane: _Lane[I]) -> None:
        batch = self._take(lane)
        lane.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(key, lane, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take(self, lane: _Lane[I]) -> list[tuple[I, asyncio.Future[Any]]]:
        """The next batch: waiting items (cancelled callers left out), within the count and size limits."""
        batch: list[tuple[I, asyncio.Future[Any]]] = []
        total = 0
        waiting = lane.waiting
        while waiting and len(batch) < self.max_items:
            item, future = waiting[0]
            if future.done():  # its caller gave up
                waiting.popleft()
                continue
            if self._size is not None:
                total += self._size(item)
                if batch and total > self.max_bytes:
                    break
            batch.append(waiting.popleft())
        return batch

    async def _run(self, key: K, lane: _Lane[I], batch: list[tuple[I, asyncio.Future[Any]]]) -> None:
        try:
            if batch:
                self.batches += 1
                self.items += len(batch)
                await self._deliver(key, batch)
        finally:
            lane.in_flight -= 1
            if lane.waiting:
                self._start(key, lane)
            elif lane.in_flight == 0 and self._lanes.get(key) is lane:
                del self._lanes[key]

    async def _deliver(self, key: K, batch: list[tuple[I, asyncio.Future[Any]]]) -> None:
        try:
            results: Sequence[Any] = await self._send(key, [item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} items got {len(results)} results")
        except asyncio.CancelledError:
            for _, future in batch:
                if not future.done():
                    future.cancel()
            raise
        except Exception as exc:  # the batch call's error is every item's error
            results = [exc] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def close(self) -> None:
        """Cancel the batches still out (their callers see CancelledError)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
