"""A node's content store: folders (and files) kept under their CID, as kubo would name them.

    root/<cid>           the content: a folder, or a single file
    root/.staging/...    content being unpacked or checked, moved into place once complete

CIDs are computed as kubo does (UnixFS, CIDv1 base32: `aleph_cid` for files, `unixfs` for folders), so
content added here has the CID a real IPFS node gives the same files. Adding is idempotent; content
fetched from another node is checked against its CID before it is kept (`import_archive`).
"""

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aleph_cid

from bacalhau_grpc.common.content import archive, safe, unixfs
from bacalhau_grpc.common.errors import InvalidArgumentError, NotFoundError

# A job's inline context may unpack to at most this much (v0.3: 10 MiB).
MAX_CONTEXT_BYTES = 10 * 1024 * 1024
RECENT_ARCHIVES = 10_000
_CID = re.compile(r"(Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{20,})")


class ContentError(Exception):
    """Content could not be added or does not match its CID; the text says why."""


def check_cid(cid: str, *, field: str = "cid") -> str:
    """The CID when it has the shape of a CIDv0 (Qm...) or a base32 CIDv1 (b...); InvalidArgumentError
    naming `field` otherwise."""
    if not _CID.fullmatch(cid):
        raise InvalidArgumentError(f"{cid!r} is not a CID (CIDv0 'Qm…' or base32 CIDv1 'b…')", field=field)
    return cid


def folder_cid(folder: Path) -> str:
    """The CID kubo gives a folder holding these files (and empty subfolders)."""
    return unixfs.folder_cid(folder)


@dataclass(frozen=True, slots=True)
class ContentStat:
    cid: str
    is_directory: bool
    size: int
    file_count: int


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._staging = root / ".staging"
        self._staging.mkdir(parents=True, exist_ok=True)
        # SHA-256 of a recently added archive -> its CID (the most recent RECENT_ARCHIVES).
        self._archives: OrderedDict[str, str] = OrderedDict()

    def has(self, cid: str) -> bool:
        return _CID.fullmatch(cid) is not None and (self.root / cid).exists()

    def path(self, cid: str) -> Path:
        """Where the content lies; NotFoundError when it is not here."""
        if not self.has(cid):
            raise NotFoundError(f"content {cid} is not held by this node")
        return self.root / cid

    def stat(self, cid: str) -> ContentStat:
        path = self.path(cid)
        if path.is_file():
            return ContentStat(cid, False, path.stat().st_size, 1)
        files = [p for _, p in safe.files(path)]
        return ContentStat(cid, True, sum(p.lstat().st_size for p in files), len(files))

    def add_archive(self, data: bytes, *, max_bytes: int = MAX_CONTEXT_BYTES) -> str:
        """Unpacks a tar(.gz) archive as a folder and keeps it under its CID; returns the CID.
        ArchiveError (a ValueError) says what is wrong with a bad archive; nothing is kept then.

        The same archive again (the same bytes: a client resubmitting its code) is recognised by its
        SHA-256 and not unpacked a second time."""
        digest = hashlib.sha256(data).hexdigest()
        known = self._archives.get(digest)
        if known is not None and self.has(known):
            self._archives.move_to_end(digest)
            with contextlib.suppress(OSError):  # added again: young again for `remove_unreferenced`
                os.utime(self.root / known)
            return known
        staging = self._new_staging()
        try:
            archive.unpack(data, staging, max_bytes=max_bytes)
            cid = self._keep(staging, folder_cid(staging))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._archives[digest] = cid
        if len(self._archives) > RECENT_ARCHIVES:
            self._archives.popitem(last=False)
        return cid

    def add_folder(self, folder: Path) -> str:
        """Keeps a copy of `folder` (files hard-linked when the disk allows) under its CID; returns the CID.
        An empty folder cannot be content: ContentError. Only folders and regular files are kept, links
        never followed (`safe.walk`)."""
        if not any(True for _ in safe.files(folder)):
            raise ContentError(f"{folder} holds no file to keep")
        staging = self._new_staging()
        try:
            copy = staging / "content"
            copy.mkdir()
            for relative, path, is_dir in safe.walk(folder):
                if is_dir:
                    (copy / relative).mkdir()
                else:
                    _link_or_copy(path, copy / relative)
            return self._keep(copy, folder_cid(copy))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def import_archive(self, cid: str, tar_path: Path, *, max_bytes: int) -> Path:
        """Unpacks an archive fetched for `cid` (a folder's entries, or one file named `cid`), checks that
        the content has that CID, and keeps it. ContentError when it does not match."""
        check_cid(cid)
        if self.has(cid):
            return self.root / cid
        staging = self._new_staging()
        try:
            archive.unpack(tar_path, staging, max_bytes=max_bytes)
            single = staging / cid
            entries = list(staging.iterdir())
            if entries == [single] and single.is_file():
                actual = aleph_cid.compute_cid(single.read_bytes())
                content = single
            else:
                actual = folder_cid(staging)
                content = staging
            if actual != cid:
                raise ContentError(f"the content received for {cid} has CID {actual}: it was corrupted")
            self._keep(content, cid)
            return self.root / cid
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def write_archive(self, cid: str, out: IO[bytes]) -> None:
        """Writes the uncompressed tar of the content to `out` (see `archive.pack`)."""
        archive.pack(self.path(cid), out, file_name=cid)

    def temporary_file(self) -> IO[bytes]:
        """A temporary file on the store's disk, removed when closed (for archives being received)."""
        return tempfile.NamedTemporaryFile(dir=self._staging, suffix=".tar")

    def remove_unreferenced(self, referenced: set[str], older_than: float) -> list[str]:
        """Remove the content no longer needed (retention): every entry whose CID is not in `referenced`
        and that was added before `older_than` (epoch seconds, its modification time). Each is first
        moved aside (at once out of view), then deleted. Returns the CIDs removed."""
        removed = []
        for entry in sorted(self.root.iterdir()):
            cid = entry.name
            if not _CID.fullmatch(cid) or cid in referenced:
                continue
            try:
                if entry.lstat().st_mtime >= older_than:
                    continue
                aside = self._staging / f"removed-{uuid.uuid4().hex}"
                entry.rename(aside)
            except OSError:
                continue  # gone meanwhile
            if aside.is_dir() and not aside.is_symlink():
                shutil.rmtree(aside, ignore_errors=True)
            else:
                aside.unlink(missing_ok=True)
            removed.append(cid)
        return removed

    def _new_staging(self) -> Path:
        path = self._staging / uuid.uuid4().hex
        path.mkdir()
        return path

    def _keep(self, content: Path, cid: str) -> str:
        target = self.root / cid
        if not target.exists():
            try:
                content.rename(target)
            except OSError:
                if not target.exists():  # another add of the same content won the race otherwise
                    raise
        with contextlib.suppress(OSError):  # kept now: its age (`remove_unreferenced`) starts now
            os.utime(target, follow_symlinks=False)
        return cid


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        with safe.open_file(source) as src, target.open("wb") as out:
            shutil.copyfileobj(src, out)
        shutil.copystat(source, target, follow_symlinks=False)
