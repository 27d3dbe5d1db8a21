"""Listing content on a local disk in the order sharding explodes it (see `common.model.sharding`).

The requester lists content it holds at submission and a compute node lists the same content once it is
on its disk: both walk it the same way, so both derive the same shards.

Walk order: the root first (relative path ""), then each folder's entries sorted by name (code point
order, which is the byte order of their UTF-8 names, as UnixFS orders a folder's links), each folder's
own entries right after it (depth first). A single file lists as [("", False)]. Symbolic links are
listed as files and not followed.

Limit: the requester lists only content in its own content store (contexts and content uploaded to it);
a sharded job whose IPFS input it does not hold is refused at submission. With an IPFS daemon configured
(`common.ipfs.client.IpfsClient.ls`), the listing can come from the daemon instead, in the same order.
"""

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.errors import NotFoundError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.model.sharding import Entry


def list_tree(root: Path) -> list[Entry]:
    """The entries under `root` in walk order: (path relative to root with "/" separators, is_dir)."""
    if not root.is_dir() or root.is_symlink():
        return [("", False)]
    entries: list[Entry] = [("", True)]
    # Folders still to list, each with the entries of its parent that come after it.
    stack: list[tuple[str, list[os.DirEntry[str]]]] = [("", _sorted_entries(root))]
    while stack:
        prefix, pending = stack[-1]
        if not pending:
            stack.pop()
            continue
        entry = pending.pop()
        relative = f"{prefix}{entry.name}"
        is_dir = entry.is_dir(follow_symlinks=False)
        entries.append((relative, is_dir))
        if is_dir:
            stack.append((relative + "/", _sorted_entries(Path(entry.path))))
    return entries


def _sorted_entries(folder: Path) -> list[os.DirEntry[str]]:
    """The folder's entries, last name first (they are popped from the end)."""
    with os.scandir(folder) as scan:
        return sorted(scan, key=lambda entry: entry.name, reverse=True)


def store_listing(store: ContentStore, *, holder: str) -> Callable[[pb.StorageSpec], Awaitable[list[Entry]]]:
    """Lists an IPFS volume's content from `store` (off the event loop); NotFoundError "content <cid> is
    not held by <holder>" when the store does not have it."""

    async def listing(volume: pb.StorageSpec) -> list[Entry]:
        if not store.has(volume.cid):
            raise NotFoundError(f"content {volume.cid} is not held by {holder}")
        return await asyncio.to_thread(list_tree, store.path(volume.cid))

    return listing
