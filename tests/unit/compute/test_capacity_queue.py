"""The run queue of CapacityTracker, driven by real asyncio tasks: at most what fits runs at once, later
small executions may overtake a big one only for a while, cancellation leaves the queue."""

import asyncio

import pytest

from bacalhau_grpc.common.errors import ResourceExhaustedError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.capacity import CapacityTracker

GiB = 1024**3
MiB = 1024**2
ONE = pb.ResourceUsageData(cpu=1.0, memory=500 * MiB)
TWO = pb.ResourceUsageData(cpu=2.0, memory=GiB)


async def until_queued(tracker: CapacityTracker, count: int) -> None:
    """Lets the tasks just created run their first step until `count` executions wait in the queue."""
    for _ in range(100):
        if tracker.queue_length() >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{tracker.queue_length()} queued, expected {count}")


async def test_four_one_cpu_jobs_on_two_cpus_run_at_most_two_at_a_time():
    tracker = CapacityTracker(TWO)
    running: set[str] = set()
    peak = 0
    started: asyncio.Queue[str] = asyncio.Queue()
    finish = {name: asyncio.Event() for name in "abcd"}

    async def job(name: str) -> None:
        nonlocal peak
        async with tracker.holding_for(name, ONE):
            running.add(name)
            peak = max(peak, len(running))
            started.put_nowait(name)
            await finish[name].wait()
            running.discard(name)

    tasks = [asyncio.create_task(job(name)) for name in "abcd"]
    assert {await started.get(), await started.get()} == {"a", "b"}
    await until_queued(tracker, 2)
    assert running == {"a", "b"} and tracker.available().cpu == 0
    finish["a"].set()
    assert await started.get() == "c"
    assert running == {"b", "c"} and tracker.queue_length() == 1
    finish["b"].set()
    assert await started.get() == "d"
    finish["c"].set()
    finish["d"].set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert peak == 2
    assert tracker.running == pb.ResourceUsageData() and tracker.queue_length() == 0


async def test_a_big_job_is_not_starved_by_a_stream_of_small_ones():
    tracker = CapacityTracker(TWO, max_overtakes=3)
    assert tracker.try_reserve("s0", ONE) and tracker.try_reserve("s1", ONE)
    big = asyncio.create_task(tracker.reserve("big", TWO))
    await until_queued(tracker, 1)
    running = ["s0", "s1"]
    for i in range(2, 5):  # while one small job ends, the next arrives and overtakes the big one
        tracker.release(running.pop(0))
        assert tracker.try_reserve(f"s{i}", ONE), f"s{i}"
        running.append(f"s{i}")
    tracker.release(running.pop(0))
    # s5 would fit beside the last small job, but the big one has been overtaken 3 times: s5 queues.
    assert not tracker.try_reserve("s5", ONE)
    s5 = asyncio.create_task(tracker.reserve("s5", ONE))
    await until_queued(tracker, 2)
    tracker.release(running.pop(0))  # the last small job ends: the big one starts, before s5
    await asyncio.wait_for(big, 5)
    assert tracker.holding("big") and not s5.done() and tracker.queue_length() == 1
    tracker.release("big")
    await asyncio.wait_for(s5, 5)
    assert tracker.holding("s5")


async def test_queued_small_jobs_overtake_only_while_the_head_allows():
    tracker = CapacityTracker(TWO, max_overtakes=1)
    assert tracker.try_reserve("a", ONE) and tracker.try_reserve("b", ONE)
    big = asyncio.create_task(tracker.reserve("big", TWO))
    await until_queued(tracker, 1)
    small = [asyncio.create_task(tracker.reserve(name, ONE)) for name in ("s1", "s2")]
    await until_queued(tracker, 3)
    tracker.release("a")  # 1 CPU free: s1 overtakes the big job (its one allowed overtake)
    await asyncio.wait_for(small[0], 5)
    tracker.release("b")  # 1 CPU free again, but s2 may not overtake any more
    assert not tracker.holding("s2") and tracker.queue_length() == 2
    tracker.release("s1")  # 2 CPU free: the big job, then s2 once it is done
    await asyncio.wait_for(big, 5)
    assert not small[1].done()
    tracker.release("big")
    await asyncio.wait_for(small[1], 5)


async def test_overtaking_stops_once_the_head_has_waited_long_enough():
    now = [100.0]
    tracker = CapacityTracker(TWO, max_overtakes=1000, max_wait=10.0, clock=lambda: now[0])
    assert tracker.try_reserve("a", ONE)
    big = asyncio.create_task(tracker.reserve("big", TWO))
    await until_queued(tracker, 1)
    now[0] = 109.0
    assert tracker.try_reserve("early", ONE)  # the big job has waited 9 s: overtaking is fine
    tracker.release("early")
    now[0] = 110.0
    assert not tracker.try_reserve("late", ONE)  # 10 s: nothing starts before it any more
    tracker.release("a")
    await asyncio.wait_for(big, 5)


async def test_cancelling_the_waiting_head_lets_the_next_one_start():
    tracker = CapacityTracker(TWO, max_overtakes=0)
    assert tracker.try_reserve("a", ONE)
    big = asyncio.create_task(tracker.reserve("big", TWO))
    await until_queued(tracker, 1)
    small = asyncio.create_task(tracker.reserve("small", ONE))  # fits, but may not overtake
    await until_queued(tracker, 2)
    big.cancel()
    with pytest.raises(asyncio.CancelledError):
        await big
    await asyncio.wait_for(small, 5)
    assert tracker.holding("small") and tracker.queue_length() == 0
    assert tracker.queued == pb.ResourceUsageData()


async def test_releasing_a_queued_execution_ends_its_wait():
    tracker = CapacityTracker(TWO)
    assert tracker.try_reserve("a", TWO)
    waiting = asyncio.create_task(tracker.reserve("b", ONE))
    await until_queued(tracker, 1)
    tracker.release("b")
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, 5)
    assert tracker.queue_length() == 0 and tracker.unclaimed() == pb.ResourceUsageData()


async def test_an_execution_larger_than_the_total_is_refused_instead_of_waiting_forever():
    tracker = CapacityTracker(TWO)
    with pytest.raises(ResourceExhaustedError, match="not enough capacity to run job"):
        await tracker.reserve("huge", pb.ResourceUsageData(cpu=3.0))
    assert tracker.queue_length() == 0
