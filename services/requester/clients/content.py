"""Content the requester does not hold (results published by compute nodes into their own content
stores), fetched from the live compute nodes, each in turn, into the requester's store. This is how a
client downloads any result from the requester alone."""

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import grpc

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.content.archive import ArchiveError
from bacalhau_grpc.common.content.client import fetch_content
from bacalhau_grpc.common.content.store import ContentError, ContentStore
from bacalhau_grpc.common.errors import BacalhauError, NotFoundError

log = logging.getLogger(__name__)

# The most fetched content may unpack to.
MAX_FETCH_BYTES = 10 * 1024**3


class ContentHub:
    def __init__(
        self,
        store: ContentStore,
        addresses: Callable[[], list[str]],
        *,
        timeout: float = 300.0,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.store = store
        self.addresses = addresses
        self.timeout = timeout
        self.credentials = credentials  # TLS (the requester's certificate), or None: plaintext
        self._fetching: dict[str, asyncio.Future[Path]] = {}

    async def fetch(self, cid: str) -> Path:
        """The content's local path; NotFoundError when no live node holds it. One fetch per CID at a time."""
        if self.store.has(cid):
            return self.store.path(cid)
        pending = self._fetching.get(cid)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_from_nodes(cid))
            self._fetching[cid] = pending
            pending.add_done_callback(lambda _: self._fetching.pop(cid, None))
        return await asyncio.shield(pending)

    async def _fetch_from_nodes(self, cid: str) -> Path:
        problems: list[str] = []
        for address in self.addresses():
            channel = channels.open_channel(address, credentials=self.credentials)
            try:
                return await fetch_content(
                    channel, cid, self.store, max_bytes=MAX_FETCH_BYTES, timeout=self.timeout
                )
            except NotFoundError:
                continue
            except (BacalhauError, ContentError, ArchiveError) as exc:
                log.info("could not fetch %s from %s: %s", cid, address, exc)
                problems.append(f"{address}: {exc}")
            finally:
                await channel.close()
        if problems:
            raise NotFoundError(f"content {cid} could not be fetched: {'; '.join(problems)}")
        raise NotFoundError(f"content {cid} is held by no node this requester knows")
