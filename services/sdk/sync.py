"""`SyncClient`: the SDK's `Client` for code without an event loop. Each method blocks until its result
is there; the streaming ones (`list`, `events`, `logs`) return plain iterators.

    with SyncClient("127.0.0.1:1234") as client:
        job = client.submit(job)
        for event in client.events(job.id, follow=True):
            print(event.event_name)

The client runs its own event loop in a background thread, so it also works inside a program that has
one (e.g. a notebook) — call it from any thread but the loop's own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

from bacalhau_grpc.sdk.client import Client

T = TypeVar("T")


class SyncClient:
    """Blocking twin of `Client`: the same arguments and methods."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bacalhau-sdk", daemon=True)
        self._thread.start()
        self._client: Client = self._run(_make(args, kwargs))

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    @property
    def address(self) -> str:
        return self._client.address

    @property
    def client_id(self) -> str:
        return self._client.client_id

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(self._client.submit(*args, **kwargs))

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(self._client.get(*args, **kwargs))

    def list(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return self._iterate(self._client.list(*args, **kwargs))

    def cancel(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(self._client.cancel(*args, **kwargs))

    def events(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return self._iterate(self._client.events(*args, **kwargs))

    def logs(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return self._iterate(self._client.logs(*args, **kwargs))

    def results(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(self._client.results(*args, **kwargs))

    def download(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(self._client.download(*args, **kwargs))

    def version(self) -> Any:
        return self._run(self._client.version())

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(_next(items))
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed():
                self._run(_close(items))


async def _make(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Client:
    return Client(*args, **kwargs)  # made on the loop: its channel belongs to that loop


async def _next(items: AsyncIterator[T]) -> T:
    return await items.__anext__()


async def _close(items: AsyncIterator[Any]) -> None:
    await items.aclose()  # type: ignore[attr-defined]
