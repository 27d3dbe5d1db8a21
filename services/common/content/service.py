"""ContentService over gRPC: serves a node's content store (StatContent, FetchContent).

FetchContent packs the content into a temporary tar file off the event loop, then streams it in
256 KiB chunks.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from bacalhau_grpc.common.content import archive
from bacalhau_grpc.common.content.store import ContentStore, check_cid
from bacalhau_grpc.pb.content.v1 import content_service_pb2 as cpb
from bacalhau_grpc.pb.content.v1 import content_service_pb2_grpc as cgrpc

SERVICE_NAME = "bacalhau.content.v1.ContentService"


class ContentServiceServicer(cgrpc.ContentServiceServicer):
    """Serves `store`; content it does not hold is asked of `fallback` first (the requester fetches it
    from compute nodes), when there is one."""

    def __init__(self, store: ContentStore, fallback: Callable[[str], Awaitable[Path]] | None = None) -> None:
        self.store = store
        self.fallback = fallback

    async def _held(self, cid: str) -> None:
        check_cid(cid)
        if not self.store.has(cid) and self.fallback is not None:
            await self.fallback(cid)
        self.store.path(cid)  # NOT_FOUND when it is still not here

    async def StatContent(self, request: cpb.StatContentRequest, context: object) -> cpb.StatContentResponse:
        await self._held(request.cid)
        stat = await asyncio.to_thread(self.store.stat, request.cid)
        return cpb.StatContentResponse(
            cid=stat.cid, is_directory=stat.is_directory, size=stat.size, file_count=stat.file_count
        )

    async def FetchContent(
        self, request: cpb.FetchContentRequest, context: object
    ) -> AsyncIterator[cpb.FetchContentResponse]:
        await self._held(request.cid)  # NOT_FOUND before the stream starts
        with self.store.temporary_file() as tar:
            await asyncio.to_thread(self.store.write_archive, request.cid, tar)
            tar.seek(0)
            while chunk := await asyncio.to_thread(tar.read, archive.CHUNK_BYTES):
                yield cpb.FetchContentResponse(chunk=chunk)
