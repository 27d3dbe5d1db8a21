"""Retrying an operation that failed for a passing reason, with full-jitter exponential back-off bounded by
a time budget. Transport-free: the caller says which errors are worth another attempt; the clock, the
sleep and the random source can be replaced (tests).

    budget = Backoff().budget(30.0)               # 30 s from now
    while True:
        try:
            return await operation()
        except UnavailableError as error:
            delay = budget.next_delay()           # None: the budget is spent
            if delay is None:
                raise
            await asyncio.sleep(delay)

or, the same in one call: `await retry(operation, timeout=30.0, retryable=lambda e: ...)`.

The n-th pause (from 0) is drawn uniformly from [0, min(maximum, initial * multiplier**n)] ("full jitter":
many clients that lost the same server do not come back in step), and never reaches past the budget: the
last attempt starts at the latest when the budget ends. A budget of 0 (or less) allows no retry.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

Clock = Callable[[], float]
Uniform = Callable[[float, float], float]


@dataclass(frozen=True)
class Backoff:
    """The pauses between attempts: the n-th is at most min(maximum, initial * multiplier**n) seconds."""

    initial: float = 0.1
    maximum: float = 2.0
    multiplier: float = 2.0

    def ceiling(self, attempt: int) -> float:
        """The longest pause after the `attempt`-th failure (0 for the first)."""
        if attempt >= 64:  # past any sensible maximum; keeps the power finite
            return self.maximum
        return min(self.maximum, self.initial * self.multiplier**attempt)

    def budget(
        self, timeout: float, *, clock: Clock = time.monotonic, uniform: Uniform = random.uniform
    ) -> RetryBudget:
        """A budget of `timeout` seconds from now."""
        return RetryBudget(self, timeout, clock=clock, uniform=uniform)


DEFAULT_BACKOFF = Backoff()


class RetryBudget:
    """The retries of one operation: `next_delay()` after each failed attempt says how long to pause
    before the next one, or None once `timeout` seconds have passed since the budget was made."""

    def __init__(
        self,
        backoff: Backoff,
        timeout: float,
        *,
        clock: Clock = time.monotonic,
        uniform: Uniform = random.uniform,
    ) -> None:
        self.backoff = backoff
        self.timeout = max(timeout, 0.0)
        self._clock = clock
        self._uniform = uniform
        self.started = clock()
        self.retries = 0

    @property
    def remaining(self) -> float:
        """Seconds left in the budget (0 when spent)."""
        return max(self.started + self.timeout - self._clock(), 0.0)

    def next_delay(self) -> float | None:
        """The pause before the next attempt (jittered, at most what is left of the budget), or None: no
        more attempts."""
        remaining = self.remaining
        if remaining <= 0:
            return None
        delay = self._uniform(0.0, self.backoff.ceiling(self.retries))
        self.retries += 1
        return min(max(delay, 0.0), remaining)


async def retry(
    operation: Callable[[], Awaitable[T]],
    *,
    timeout: float,
    retryable: Callable[[Exception], bool],
    on_retry: Callable[[Exception, float], None] | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
    clock: Clock = time.monotonic,
    uniform: Uniform = random.uniform,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """`await operation()`, again after each failure `retryable` accepts, pausing as `backoff` says, until
    `timeout` seconds have passed since the first attempt; then the last error is raised. An error
    `retryable` refuses is raised at once. `on_retry(error, delay)` is called before each pause."""
    budget = backoff.budget(timeout, clock=clock, uniform=uniform)
    while True:
        try:
            return await operation()
        except Exception as error:
            if not retryable(error):
                raise
            delay = budget.next_delay()
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(error, delay)
            await sleep(delay)
