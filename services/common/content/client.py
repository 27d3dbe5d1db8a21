"""Fetching content from another node's ContentService into the local content store."""

import asyncio
from pathlib import Path

import grpc

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.pb.content.v1 import content_service_pb2 as cpb
from bacalhau_grpc.pb.content.v1 import content_service_pb2_grpc as cgrpc

DEFAULT_FETCH_TIMEOUT = 300.0


async def fetch_content(
    channel: grpc.aio.Channel,
    cid: str,
    store: ContentStore,
    *,
    max_bytes: int,
    timeout: float = DEFAULT_FETCH_TIMEOUT,
) -> Path:
    """The local path of the content, fetched from the node behind `channel` unless the store has it.

    Raises NotFoundError when that node does not hold it, DeadlineExceededError past `timeout`,
    ContentError when what arrived does not match the CID, ArchiveError when it is too large.
    """
    if store.has(cid):
        return store.path(cid)
    stub = cgrpc.ContentServiceStub(channel)
    with store.temporary_file() as tar:
        async for response in channels.stream(
            stub.FetchContent, cpb.FetchContentRequest(cid=cid), timeout=timeout
        ):
            await asyncio.to_thread(tar.write, response.chunk)
        tar.flush()
        return await asyncio.to_thread(store.import_archive, cid, Path(tar.name), max_bytes=max_bytes)
