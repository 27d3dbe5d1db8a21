"""The back-off schedule of `common.retrying`: jittered pauses under an exponential ceiling capped at the
maximum, never past the budget, none at all with a budget of 0; `retry` stops at the budget with the last
error and never retries what it is told not to. A fake clock that the fake sleep moves forward: no real
waiting."""

import asyncio
import random

import pytest

from bacalhau_grpc.common.errors import NotFoundError, UnavailableError
from bacalhau_grpc.common.retrying import Backoff, retry


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def upper(low: float, high: float) -> float:
    """A "random" draw that always takes the top of the range: the ceilings themselves."""
    return high


def test_ceilings_double_from_the_initial_pause_up_to_the_maximum():
    backoff = Backoff(initial=0.1, maximum=2.0)
    assert [backoff.ceiling(n) for n in range(7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert backoff.ceiling(10_000) == 2.0


def test_pauses_are_jittered_below_their_ceiling():
    fake = FakeTime()
    budget = Backoff().budget(1000.0, clock=fake.clock, uniform=random.Random(7).uniform)
    delays = [budget.next_delay() for _ in range(50)]
    assert all(d is not None for d in delays)
    ceilings = [Backoff().ceiling(n) for n in range(50)]
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))  # type: ignore[operator]
    assert len(set(delays)) > 40  # drawn, not fixed
    assert max(delays) <= 2.0  # type: ignore[type-var]


def test_the_budget_ends_the_schedule_and_no_pause_reaches_past_it():
    fake = FakeTime()
    budget = Backoff().budget(5.0, clock=fake.clock, uniform=upper)
    delays = []
    while (delay := budget.next_delay()) is not None:
        delays.append(delay)
        fake.now += delay  # the pause, then an attempt that fails at once
    assert delays[:5] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])
    assert sum(delays) == pytest.approx(5.0)  # the last pause is cut to what was left
    assert fake.now == pytest.approx(105.0)
    assert budget.next_delay() is None


def test_a_budget_of_zero_allows_no_retry():
    fake = FakeTime()
    assert Backoff().budget(0.0, clock=fake.clock).next_delay() is None
    assert Backoff().budget(-1.0, clock=fake.clock).next_delay() is None


def test_retry_rides_through_passing_failures():
    fake = FakeTime()
    attempts = []
    notified = []

    async def flaky() -> str:
        attempts.append(fake.now)
        if len(attempts) < 4:
            raise UnavailableError("down")
        return "answer"

    result = asyncio.run(
        retry(
            flaky,
            timeout=30.0,
            retryable=lambda e: isinstance(e, UnavailableError),
            on_retry=lambda e, d: notified.append((str(e), d)),
            clock=fake.clock,
            uniform=upper,
            sleep=fake.sleep,
        )
    )
    assert result == "answer"
    assert len(attempts) == 4
    assert fake.slept == pytest.approx([0.1, 0.2, 0.4])
    assert notified == [("down", d) for d in fake.slept]


def test_retry_stops_at_the_budget_with_the_last_error():
    fake = FakeTime()
    count = 0

    async def down() -> None:
        nonlocal count
        count += 1
        raise UnavailableError(f"down {count}")

    with pytest.raises(UnavailableError, match="down") as raised:
        asyncio.run(
            retry(
                down,
                timeout=3.0,
                retryable=lambda e: True,
                clock=fake.clock,
                uniform=upper,
                sleep=fake.sleep,
            )
        )
    assert str(raised.value) == f"down {count}"  # the last attempt's error
    assert fake.now == pytest.approx(103.0)
    assert count == len(fake.slept) + 1


def test_an_error_not_worth_retrying_is_raised_at_once():
    fake = FakeTime()
    calls = 0

    async def missing() -> None:
        nonlocal calls
        calls += 1
        raise NotFoundError("no such job")

    with pytest.raises(NotFoundError):
        asyncio.run(
            retry(
                missing,
                timeout=30.0,
                retryable=lambda e: isinstance(e, UnavailableError),
                clock=fake.clock,
                sleep=fake.sleep,
            )
        )
    assert calls == 1 and fake.slept == []
