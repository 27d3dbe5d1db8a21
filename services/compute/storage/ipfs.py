"""IPFS volumes through an IPFS daemon (a node started with `--ipfs-connect`; v0.3's api-copy driver).

`prepare` looks the CID up (a file or a directory; `files/stat`, the client's timeout) and downloads it
into the node's IPFS cache, `<cache_dir>/<CID>`, which later runs reuse: each CID is fetched once, even
when several executions ask for it at the same time. The download lands in a staging name and is moved
into place whole, so the cache never holds half a CID.

`is_local` is True when the node's cache holds the CID, or else when the daemon's own repo holds every
block of it (`refs -r --offline`, a few seconds at most; nothing is fetched). v0.3 asked whether the
node's peer ID was among the DHT providers, which amounts to the latter for a node that announces
what it holds.
"""

import asyncio
import re
from pathlib import Path

from bacalhau_grpc.common.ipfs import IpfsClient, IpfsError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.ports import StorageError

DEFAULT_MAX_BYTES = 10 * 1024**3
DEFAULT_LOCAL_TIMEOUT = 3.0
# Any multibase CID string (base58 v0, base32/base36/base58 v1): letters and digits only, so it is a
# safe folder name.
_CID = re.compile(r"[A-Za-z0-9]{8,200}")


class IpfsSource:
    source = pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS

    def __init__(
        self,
        client: IpfsClient,
        cache_dir: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        local_timeout: float = DEFAULT_LOCAL_TIMEOUT,
    ) -> None:
        self.client = client
        self.cache_dir = Path(cache_dir)
        self.max_bytes = max_bytes
        self.local_timeout = local_timeout
        self._fetching: dict[str, asyncio.Future[Path]] = {}

    async def close(self) -> None:
        """Closes the client (its HTTP session)."""
        await self.client.close()

    def cached(self, cid: str) -> Path | None:
        """The CID's folder or file in the cache, if it is there."""
        path = self.cache_dir / cid
        return path if _CID.fullmatch(cid) and path.exists() else None

    async def is_local(self, volume: pb.StorageSpec) -> bool:
        if not _CID.fullmatch(volume.cid):
            return False
        if self.cached(volume.cid) is not None:
            return True
        return await self.client.has_locally(volume.cid, timeout=self.local_timeout)

    async def prepare(self, volume: pb.StorageSpec, scratch: Path) -> Path:
        cid = volume.cid
        if not _CID.fullmatch(cid):
            raise StorageError(f"{cid!r} is not a CID")
        path = self.cached(cid)
        if path is not None:
            return path
        pending = self._fetching.get(cid)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(cid))
            self._fetching[cid] = pending
        return await asyncio.shield(pending)

    async def _fetch(self, cid: str) -> Path:
        try:
            await asyncio.to_thread(self.cache_dir.mkdir, parents=True, exist_ok=True)
            return await self.client.get(cid, self.cache_dir / cid, max_bytes=self.max_bytes)
        except (IpfsError, OSError) as exc:
            raise StorageError(f"could not fetch {cid} from IPFS: {exc}") from exc
        finally:
            self._fetching.pop(cid, None)
