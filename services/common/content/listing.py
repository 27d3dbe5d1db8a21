"""Listing content on a local disk in the order sharding explodes it (see `common.model.sharding`).

The requester lists content it holds at submission and a compute node lists the same content once it is
on its disk: both walk it the same way, so both derive the same shards.

Walk order: the root first (relative path ""), then each folder's entries sorted by name (code point
order, which is the byte order of their UTF-8 names, as UnixFS orders a folder's links), each folder's
own entries right after it (depth first). A single file lists as [("", False)]. Symbolic links are
listed as files and not followed.

Limit: the requester lists what it can reach at submission: the content in its own content store
(contexts and content uploaded to it, `store_listing`) and, when it is started with `--ipfs-connect`,
then the content its IPFS daemon can find (`ipfs_listing`, tried second through `first_listing`).
The daemon's answer is put in the walk order above whatever order it comes in (kubo's HAMT-sharded
big folders list in the order of their hash buckets), so it equals `list_tree` of the same content
once a compute node has fetched it. Content neither holds - for the daemon, content it cannot find
within the listing's timeout - is a NotFoundError naming each place looked in, and the requester
refuses the sharded job at submission.
"""

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.errors import NotFoundError
from bacalhau_grpc.common.ipfs import IpfsClient, IpfsError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.model.sharding import Entry

# How a volume's content is listed: its entries in walk order, NotFoundError when it cannot be here.
Listing = Callable[[pb.StorageSpec], Awaitable[list[Entry]]]
# How long the daemon may take to answer each call of a listing (seconds): finding the CID and listing
# each folder. Below the CLI's default submission deadline (10s), so a client asking for content no
# reachable node has hears why its job is refused.
DEFAULT_IPFS_LISTING_TIMEOUT = 5.0


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


def store_listing(store: ContentStore, *, holder: str) -> Listing:
    """Lists an IPFS volume's content from `store` (off the event loop); NotFoundError "content <cid> is
    not held by <holder>" when the store does not have it."""

    async def listing(volume: pb.StorageSpec) -> list[Entry]:
        if not store.has(volume.cid):
            raise NotFoundError(f"content {volume.cid} is not held by {holder}")
        return await asyncio.to_thread(list_tree, store.path(volume.cid))

    return listing


def ipfs_listing(client: IpfsClient, *, timeout: float = DEFAULT_IPFS_LISTING_TIMEOUT) -> Listing:
    """Lists an IPFS volume's CID through the daemon `client` talks to: [("", False)] for a file, else
    [("", True)] and every entry below the folder, in walk order (as `list_tree` lists the same content
    on disk). `timeout` bounds each call to the daemon (the lookup, then each folder's listing).
    NotFoundError naming the CID and the daemon when the daemon cannot find or list it in time, or
    answers with an error (a malformed CID, a daemon that cannot be reached)."""

    async def listing(volume: pb.StorageSpec) -> list[Entry]:
        cid = volume.cid
        try:
            stat = await client.stat(cid, timeout=timeout)
            if not stat.is_directory:
                return [("", False)]
            found = await client.ls(cid, timeout=timeout)
        except IpfsError as exc:
            raise NotFoundError(
                f"content {cid} cannot be listed by the IPFS daemon at {client.url}: {exc}"
            ) from None
        return [("", True), *walk_order((entry.path, entry.is_directory) for entry in found)]

    return listing


def walk_order(entries: Iterable[Entry]) -> list[Entry]:
    """Entries below a folder (relative paths with "/") in walk order: each folder's entries sorted by
    name, right after the folder. Sorting the paths by their components gives exactly that order."""
    return sorted(entries, key=lambda entry: entry[0].split("/"))


def first_listing(*listings: Listing) -> Listing:
    """Lists a volume with the first of `listings` that can: one raising NotFoundError passes it on to
    the next. When none can, NotFoundError with every listing's reason, in order ("; "-separated)."""
    if not listings:
        raise ValueError("first_listing needs at least one listing")

    async def listing(volume: pb.StorageSpec) -> list[Entry]:
        reasons: list[str] = []
        for candidate in listings:
            try:
                return await candidate(volume)
            except NotFoundError as exc:
                reasons.append(str(exc))
        raise NotFoundError("; ".join(reasons))

    return listing
