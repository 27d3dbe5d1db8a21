"""Tar archives of content: unpacking an uploaded or fetched archive safely, and packing content.

`unpack` refuses what could escape or exhaust the destination: absolute names, `..`, links, devices,
more than `max_bytes` of file data or `max_files` entries in all; files get plain permissions (Python's
"data" extraction filter where it exists, from 3.11.4; the same by hand before, e.g. on Debian bookworm's
3.11.2). Every refusal is an `ArchiveError` saying what was wrong.
"""

import gzip
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from bacalhau_grpc.common.content import safe

CHUNK_BYTES = 256 * 1024


class ArchiveError(ValueError):
    """The archive cannot be unpacked; the text says why."""


def unpack(source: bytes | Path, dest: Path, *, max_bytes: int, max_files: int = 10_000) -> None:
    """Unpacks a tar archive (gzip-compressed or not) into the existing empty folder `dest`."""
    try:
        with _open(source) as archive:
            members = _checked_members(archive, max_bytes=max_bytes, max_files=max_files)
            _extract(archive, dest, members)
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ArchiveError(f"not a readable tar or tar.gz archive: {exc}") from None


def _extract(archive: tarfile.TarFile, dest: Path, members: list[tarfile.TarInfo]) -> None:
    if hasattr(tarfile, "data_filter"):
        archive.extractall(dest, members=members, filter="data")
        return
    for member in members:  # what the data filter does to what `_check` lets through
        member.mode = 0o755 if member.isdir() else (member.mode | 0o600) & 0o755
        member.uid = member.gid = 0
        member.uname = member.gname = ""
    archive.extractall(dest, members=members)


def _open(source: bytes | Path) -> tarfile.TarFile:
    if isinstance(source, bytes):
        return tarfile.open(fileobj=io.BytesIO(source), mode="r:*")
    return tarfile.open(source, mode="r:*")


def _checked_members(archive: tarfile.TarFile, *, max_bytes: int, max_files: int) -> list[tarfile.TarInfo]:
    """The archive's entries, each checked as it is read: reading stops at the first entry past
    `max_files` or `max_bytes`, so an archive bomb costs no more than the limits allow."""
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in archive:
        if len(members) == max_files:
            raise ArchiveError(f"the archive holds more than the {max_files} entries allowed")
        members.append(member)
        parts = member.name.replace("\\", "/").split("/")
        if member.name.startswith("/") or ".." in parts:
            raise ArchiveError(f"{member.name!r} would land outside the destination folder")
        if not (member.isfile() or member.isdir()):
            raise ArchiveError(
                f"{member.name!r} is a link or a special file: only files and folders are allowed"
            )
        total += member.size
        if total > max_bytes:
            raise ArchiveError(f"the archive unpacks to more than {max_bytes} bytes")
    if not any(member.isfile() for member in members):
        raise ArchiveError("the archive holds no file")
    return members


def pack(root: Path, out: IO[bytes], *, file_name: str) -> None:
    """Writes an uncompressed tar of `root`: a folder's entries relative to it, or a single file as
    `file_name`. Only folders and regular files, links never followed (`safe.walk`)."""
    with tarfile.open(fileobj=out, mode="w") as archive:
        if root.is_dir() and not root.is_symlink():
            for relative, path, is_dir in safe.walk(root):
                _add(archive, path, relative, is_dir)
        else:
            _add(archive, root, file_name, False)


def _add(archive: tarfile.TarFile, path: Path, name: str, is_dir: bool) -> None:
    info = archive.gettarinfo(path, arcname=name)
    if is_dir:
        archive.addfile(info)
        return
    with safe.open_file(path) as f:
        info.type = tarfile.REGTYPE  # a file with several links is still sent whole
        info.size = os.fstat(f.fileno()).st_size
        archive.addfile(info, f)


def chunks(f: IO[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk


def make_tar_gz(files: dict[str, bytes]) -> bytes:
    """A tar.gz holding `files` (relative name → content): how a client ships a job's context. The same
    files give the same bytes (no time in the gzip header), so a resubmission has the same payload."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as packed,
        tarfile.open(fileobj=packed, mode="w") as archive,
    ):
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
