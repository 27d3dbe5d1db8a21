"""Coalescer: a lone call goes at once; calls due while the peer is busy go together; every caller gets
its own result or error."""

import asyncio

import pytest

from bacalhau_grpc.common.batching import Coalescer
from bacalhau_grpc.common.errors import NotFoundError, UnavailableError


async def until(condition) -> None:
    """Lets the event loop run until `condition()` holds (no time passes: every task is ready)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def settle() -> None:
    """Lets every ready task run as far as it can."""
    for _ in range(20):
        await asyncio.sleep(0)


class Peer:
    """Records the batches it gets; each batch waits for `release` when `hold` is set."""

    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.hold = hold
        self.release = asyncio.Event()
        self.in_flight = 0
        self.peak = 0
        self.fail_batch: Exception | None = None

    async def send(self, key: str, items: list[int]) -> list[object]:
        self.batches.append((key, list(items)))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.hold:
                await self.release.wait()
            if self.fail_batch is not None:
                raise self.fail_batch
            return [NotFoundError(f"item {i} not found") if i < 0 else i * 10 for i in items]
        finally:
            self.in_flight -= 1


async def test_a_lone_call_is_sent_at_once_as_a_batch_of_one():
    peer = Peer()
    coalescer = Coalescer(peer.send)
    assert await coalescer.submit("n1", 7) == 70
    assert peer.batches == [("n1", [7])]


async def test_calls_due_while_the_peer_is_busy_leave_together_in_order():
    peer = Peer(hold=True)
    coalescer = Coalescer(peer.send, max_in_flight=1)
    first = asyncio.ensure_future(coalescer.submit("n1", 0))
    await until(lambda: peer.in_flight == 1)  # the first batch is out and held
    rest = [asyncio.ensure_future(coalescer.submit("n1", i)) for i in range(1, 6)]
    await settle()
    assert peer.batches == [("n1", [0])]
    peer.release.set()
    assert await asyncio.gather(first, *rest) == [0, 10, 20, 30, 40, 50]
    assert peer.batches == [("n1", [0]), ("n1", [1, 2, 3, 4, 5])]
    assert peer.peak == 1
    assert (coalescer.batches, coalescer.items) == (2, 6)


async def test_keys_are_separate_lanes():
    peer = Peer(hold=True)
    coalescer = Coalescer(peer.send, max_in_flight=1)
    calls = [asyncio.ensure_future(coalescer.submit(key, i)) for i, key in enumerate(["a", "b", "a", "b"])]
    await until(lambda: peer.in_flight == 2)
    await settle()
    assert sorted(peer.batches) == [("a", [0]), ("b", [1])]
    peer.release.set()
    assert await asyncio.gather(*calls) == [0, 10, 20, 30]
    assert sorted(peer.batches) == [("a", [0]), ("a", [2]), ("b", [1]), ("b", [3])]


async def test_batches_keep_to_the_item_and_byte_limits():
    peer = Peer(hold=True)
    coalescer = Coalescer(peer.send, max_in_flight=1, max_items=3, max_bytes=25, size=lambda item: item)
    calls = [asyncio.ensure_future(coalescer.submit("n", i)) for i in [1, 2, 3, 4, 5, 20, 30, 6]]
    await until(lambda: peer.in_flight == 1)
    peer.release.set()
    assert await asyncio.gather(*calls) == [10, 20, 30, 40, 50, 200, 300, 60]
    # 3 items at most; at most 25 "bytes" unless a single item is larger on its own.
    assert [items for _, items in peer.batches] == [[1], [2, 3, 4], [5, 20], [30], [6]]


async def test_an_item_that_fails_fails_only_its_caller():
    peer = Peer()
    coalescer = Coalescer(peer.send, max_in_flight=1)
    results = await asyncio.gather(
        coalescer.submit("n", 1), coalescer.submit("n", -2), coalescer.submit("n", 3), return_exceptions=True
    )
    assert results[0] == 10 and results[2] == 30
    assert isinstance(results[1], NotFoundError) and str(results[1]) == "item -2 not found"


async def test_a_failed_batch_call_fails_every_item_of_that_batch_and_later_batches_still_go():
    peer = Peer()
    peer.fail_batch = UnavailableError("node gone")
    coalescer = Coalescer(peer.send)
    with pytest.raises(UnavailableError, match="node gone"):
        await coalescer.submit("n", 1)
    peer.fail_batch = None
    assert await coalescer.submit("n", 2) == 20


async def test_a_peer_answering_the_wrong_number_of_results_is_an_error_for_every_caller():
    async def short(key: str, items: list[int]) -> list[int]:
        return items[:-1]

    coalescer = Coalescer(short)
    with pytest.raises(RuntimeError, match="a batch of 1 items got 0 results"):
        await coalescer.submit("n", 1)


async def test_a_caller_that_gave_up_is_left_out_of_the_next_batch():
    peer = Peer(hold=True)
    coalescer = Coalescer(peer.send, max_in_flight=1)
    first = asyncio.ensure_future(coalescer.submit("n", 1))
    await until(lambda: peer.in_flight == 1)
    given_up = asyncio.ensure_future(coalescer.submit("n", 2))
    kept = asyncio.ensure_future(coalescer.submit("n", 3))
    await settle()
    given_up.cancel()
    peer.release.set()
    assert await asyncio.gather(first, kept) == [10, 30]
    assert [items for _, items in peer.batches] == [[1], [3]]


async def test_close_cancels_the_batches_still_out():
    peer = Peer(hold=True)
    coalescer = Coalescer(peer.send)
    call = asyncio.ensure_future(coalescer.submit("n", 1))
    await until(lambda: peer.in_flight == 1)
    await coalescer.close()
    with pytest.raises(asyncio.CancelledError):
        await call


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(Peer().send, max_in_flight=0)
