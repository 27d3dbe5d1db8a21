"""Running a coroutine now and every `interval` seconds in the background until stopped (collectors and
other housekeeping). A run that fails is logged and the next one comes all the same."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any


class Periodic:
    def __init__(
        self,
        name: str,
        interval: float,
        action: Callable[[], Awaitable[Any]],
        *,
        logger: logging.Logger,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self._action = action
        self._log = logger
        self._extra = extra or {}
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        """Run the action now and every `interval` seconds until `stop()` (once started, a no-op)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            try:
                await self._action()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("%s: a run failed", self.name, extra=self._extra)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
