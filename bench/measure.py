"""Small measures the benchmarks share: a p99 and a process's resident memory."""

import asyncio
import contextlib
from pathlib import Path


def p99(samples: list[float]) -> float:
    """The 99th percentile of `samples` (the nearest rank at or below it)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def rss(pid: int | None) -> int:
    """The process's resident set size in bytes (VmRSS), 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return 0
    return next((int(line.split()[1]) * 1024 for line in text.splitlines() if line.startswith("VmRSS:")), 0)


class PeakRss:
    """The highest resident set size of a process seen while sampling it every `interval` seconds, as an
    async context manager: `async with PeakRss(pid) as peak: ...`, then `peak.peak` (bytes)."""

    def __init__(self, pid: int | None, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> int:
        now = rss(self.pid)
        self.peak = max(self.peak, now)
        self.samples += 1
        return now

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> "PeakRss":
        self.sample()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()
