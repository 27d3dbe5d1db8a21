"""The live view's batching: whatever arrived, at most one list per interval, an empty list when the
producer is quiet, the producer's error at the end, and the producer stopped when the reader goes."""

import asyncio

import pytest

from bacalhau_grpc.dashboard.live import batches


class Producer:
    """Yields what the test puts in, in order; `None` ends it, an exception is raised."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.closed = asyncio.Event()

    async def items(self):
        try:
            while (item := await self.queue.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed.set()


async def test_items_come_in_lists_an_empty_one_when_quiet_then_the_end():
    producer = Producer()
    reader = batches(producer.items(), seconds=0.0, quiet=0.01)
    producer.queue.put_nowait(1)
    assert await anext(reader) == [1]
    assert await anext(reader) == []  # nothing for `quiet` seconds
    for item in (2, 3, 4):
        producer.queue.put_nowait(item)
    got: list[int] = []
    while len(got) < 3:
        got += await anext(reader)
    assert got == [2, 3, 4]
    producer.queue.put_nowait(None)
    rest = [batch async for batch in reader]
    assert all(batch == [] for batch in rest)


async def test_what_arrives_together_is_one_list():
    producer = Producer()
    for item in range(5):
        producer.queue.put_nowait(item)
    producer.queue.put_nowait(None)
    assert [batch async for batch in batches(producer.items(), seconds=0.0, quiet=10)] == [[0, 1, 2, 3, 4]]


async def test_the_producers_error_ends_the_batches():
    producer = Producer()
    producer.queue.put_nowait(1)
    producer.queue.put_nowait(RuntimeError("the stream broke"))
    reader = batches(producer.items(), seconds=0.0, quiet=10)
    assert await anext(reader) == [1]
    with pytest.raises(RuntimeError, match="the stream broke"):
        await anext(reader)


async def test_closing_the_reader_stops_the_producer():
    producer = Producer()
    producer.queue.put_nowait(1)
    reader = batches(producer.items(), seconds=0.0, quiet=10)
    assert await anext(reader) == [1]
    await reader.aclose()
    await asyncio.wait_for(producer.closed.wait(), 5)
