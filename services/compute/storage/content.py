"""IPFS volumes without an IPFS daemon: content by CID from the node's own content store, fetched from
the requester's ContentService when it is not there yet (this is where uploaded job contexts live).

The CIDs are kubo's, so the same volumes work against a real IPFS node once one is configured.
"""

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from bacalhau_grpc.common.content.archive import ArchiveError
from bacalhau_grpc.common.content.store import ContentError, ContentStore
from bacalhau_grpc.common.errors import BacalhauError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.ports import StorageError

# Fetches `cid` into the store from elsewhere; returns its local path.
Fetch = Callable[[str], Awaitable[Path]]


class ContentSource:
    source = pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS

    def __init__(self, store: ContentStore, fetch: Fetch) -> None:
        self.store = store
        self._fetch = fetch
        # One fetch per CID at a time: concurrent shards needing the same content share it.
        self._fetching: dict[str, asyncio.Future[Path]] = {}

    async def is_local(self, volume: pb.StorageSpec) -> bool:
        return self.store.has(volume.cid)

    async def prepare(self, volume: pb.StorageSpec, scratch: Path) -> Path:
        cid = volume.cid
        if self.store.has(cid):
            return self.store.path(cid)
        pending = self._fetching.get(cid)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_once(cid))
            self._fetching[cid] = pending
        return await asyncio.shield(pending)

    async def _fetch_once(self, cid: str) -> Path:
        try:
            return await self._fetch(cid)
        except (BacalhauError, ContentError, ArchiveError, OSError) as exc:
            raise StorageError(f"could not fetch {cid}: {exc}") from exc
        finally:
            self._fetching.pop(cid, None)
