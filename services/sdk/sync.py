"""`SyncClient`: the SDK's `Client` for code without an event loop. Each method blocks until its result
is there; the streaming ones (`list`, `events`, `logs`) return plain iterators.

    with SyncClient("127.0.0.1:1234") as client:
        job = client.submit(job)
        for event in client.events(job.id, follow=True):
            print(event.event_name)

The client runs its own event loop in a background thread, so it also works inside a program that has
one (e.g. a notebook) — call it from any thread but the loop's own. `on_retry` (see `Client`) is called on
that loop's thread.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import threading
from collections.abc import AsyncGenerator, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import bacalhau_grpc.sdk.types.bacalhau.model.v1beta1 as sdk_types
import bacalhau_grpc.sdk.types.bacalhau.requester.v1 as sdk_requester
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.sdk.client import (
    DEFAULT_DOWNLOAD_TIMEOUT,
    DEFAULT_RETRY_TIMEOUT,
    DEFAULT_TIMEOUT,
    LIST_PAGE_SIZE,
    Client,
    JobPage,
    OnEvent,
    OnRetry,
)
from bacalhau_grpc.sdk.download import MAX_DOWNLOAD_BYTES, OnProgress, Progress
from bacalhau_grpc.sdk.tls import ClientTls, PemSource

T = TypeVar("T")


class SyncClient:
    """Blocking twin of `Client`: the same arguments and methods."""

    def __init__(
        self,
        address: str | None = None,
        *,
        key: ClientKey | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        tls: bool | ClientTls | None = None,
        ca_cert: PemSource | None = None,
        client_cert: PemSource | None = None,
        client_key: PemSource | None = None,
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT,
        on_retry: OnRetry | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bacalhau-sdk", daemon=True)
        self._thread.start()
        try:
            self._client: Client = self._run(
                _make(
                    address,
                    key=key,
                    timeout=timeout,
                    tls=tls,
                    ca_cert=ca_cert,
                    client_cert=client_cert,
                    client_key=client_key,
                    retry_timeout=retry_timeout,
                    on_retry=on_retry,
                )
            )
        except BaseException:  # e.g. bad TLS arguments: leave no thread behind
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            raise

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
    def retry_timeout(self) -> float:
        return self._client.retry_timeout

    @property
    def client_id(self) -> str:
        return self._client.client_id

    def submit(
        self,
        job: sdk_types.Job,
        *,
        context: bytes = b"",
        submission_id: str | None = None,
        on_progress: OnProgress | None = None,
    ) -> sdk_types.Job:
        """`Client.submit`, blocking."""
        return self._run(
            self._client.submit(job, context=context, submission_id=submission_id, on_progress=on_progress)
        )

    def get(self, job_id: str, *, events: bool = True, shard_states: bool = True) -> sdk_types.JobWithInfo:
        """`Client.get`, blocking."""
        return self._run(self._client.get(job_id, events=events, shard_states=shard_states))

    def shards(self, job_id: str) -> Iterator[sdk_types.JobShardState]:
        """`Client.shards` as a plain iterator."""
        return self._iterate(self._client.shards(job_id))

    def shard_rows(self, job_id: str) -> Iterator[pb.JobShardState]:
        """`Client.shard_rows` as a plain iterator."""
        return self._iterate(self._client.shard_rows(job_id))

    def list(
        self,
        *,
        all_clients: bool = False,
        client_id: str | None = None,
        id_prefix: str = "",
        include_tags: Iterable[str] = (),
        exclude_tags: Iterable[str] = (),
        sort_by: str = "created_at",
        reverse: bool = True,
        limit: int | None = None,
        page_size: int = LIST_PAGE_SIZE,
        states: Iterable[sdk_types.JobStateType] = (),
    ) -> Iterator[sdk_types.Job]:
        """`Client.list` as a plain iterator."""
        return self._iterate(
            self._client.list(
                all_clients=all_clients,
                client_id=client_id,
                id_prefix=id_prefix,
                include_tags=include_tags,
                exclude_tags=exclude_tags,
                sort_by=sort_by,
                reverse=reverse,
                limit=limit,
                page_size=page_size,
                states=states,
            )
        )

    def list_page(
        self,
        *,
        all_clients: bool = False,
        client_id: str | None = None,
        id_prefix: str = "",
        include_tags: Iterable[str] = (),
        exclude_tags: Iterable[str] = (),
        sort_by: str = "created_at",
        reverse: bool = True,
        page_size: int = LIST_PAGE_SIZE,
        states: Iterable[sdk_types.JobStateType] = (),
        page_token: str = "",
    ) -> JobPage:
        """`Client.list_page`."""
        return self._run(
            self._client.list_page(
                all_clients=all_clients,
                client_id=client_id,
                id_prefix=id_prefix,
                include_tags=include_tags,
                exclude_tags=exclude_tags,
                sort_by=sort_by,
                reverse=reverse,
                page_size=page_size,
                states=states,
                page_token=page_token,
            )
        )

    def wait(
        self, job_id: str, *, timeout: float | None = None, on_event: OnEvent | None = None
    ) -> sdk_types.JobWithInfo:
        """`Client.wait`, blocking (`on_event` is called on the client's loop thread)."""
        return self._run(self._client.wait(job_id, timeout=timeout, on_event=on_event))

    def nodes(self, *, page_size: int = LIST_PAGE_SIZE) -> Iterator[sdk_requester.Node]:
        """`Client.nodes` as a plain iterator."""
        return self._iterate(self._client.nodes(page_size=page_size))

    def node(self, node_id: str) -> sdk_requester.Node:
        """`Client.node`, blocking."""
        return self._run(self._client.node(node_id))

    def cancel(self, job_id: str, *, reason: str = "") -> sdk_types.Job:
        """`Client.cancel`, blocking."""
        return self._run(self._client.cancel(job_id, reason=reason))

    def events(self, job_id: str, *, follow: bool = False, after: int = 0) -> Iterator[sdk_types.JobEvent]:
        """`Client.events` as a plain iterator."""
        return self._iterate(self._client.events(job_id, follow=follow, after=after))

    def logs(
        self, job_id: str, *, shard_index: int | None = None, node_id: str = "", follow: bool = False
    ) -> Iterator[sdk_requester.StreamJobLogsResponse]:
        """`Client.logs` as a plain iterator."""
        return self._iterate(
            self._client.logs(job_id, shard_index=shard_index, node_id=node_id, follow=follow)
        )

    def results(self, job_id: str) -> builtins.list[sdk_types.PublishedResult]:
        """`Client.results`, blocking."""
        return self._run(self._client.results(job_id))

    def download(
        self,
        job_id: str,
        output_dir: str | os.PathLike[str],
        *,
        timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
        progress: Progress | None = None,
        on_progress: OnProgress | None = None,
        max_bytes: int = MAX_DOWNLOAD_BYTES,
    ) -> Path:
        """`Client.download`, blocking (`progress` and `on_progress` are called on the client's loop
        thread)."""
        return self._run(
            self._client.download(
                job_id,
                output_dir,
                timeout=timeout,
                progress=progress,
                on_progress=on_progress,
                max_bytes=max_bytes,
            )
        )

    def version(self) -> sdk_types.BuildVersionInfo:
        """`Client.version`, blocking."""
        return self._run(self._client.version())

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _iterate(self, items: AsyncGenerator[T, None]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(_next(items))
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed():
                self._run(_close(items))


async def _make(address: str | None, **kwargs: Any) -> Client:
    return Client(address, **kwargs)  # made on the loop: its channel belongs to that loop


async def _next(items: AsyncGenerator[T, None]) -> T:
    return await items.__anext__()


async def _close(items: AsyncGenerator[Any, None]) -> None:
    await items.aclose()
