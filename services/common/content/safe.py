"""The one walk of a result folder: folders and regular files only, never through a link.

A job writes its result folder, so anything in it may be hostile: a symbolic link to `/etc`, a hard link
to a file of another folder, a fifo that blocks a reader, a device. Results keep only folders and
regular files with a single link (`prune` removes everything else once the run is over and says what it
removed); everything that reads a result folder afterwards (the proposal's hash, the CID, the content
store, the archive sent to a client, the IPFS upload) walks it with `walk` and opens files with
`open_file`, which never follow a symbolic link either. The CID of a folder is then the one kubo gives
the same folder without the entries left out.

Downloads check every path component that comes from the network with `check_component` and every path
they write with `check_inside`.
"""

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

# The longest path component accepted from the network (Linux's NAME_MAX).
MAX_COMPONENT_BYTES = 255


class UnsafePathError(ValueError):
    """A path from the network could land outside its folder; the text says which and why."""


def walk(root: Path, *, recursive: bool = True) -> Iterator[tuple[str, Path, bool]]:
    """Every folder and regular file below `root` (only its own entries unless `recursive`), as (path
    relative to `root` with "/", path, is_dir): each folder's entries sorted by the bytes of their
    names, a folder's content right after it. Symbolic links, fifos, sockets and devices are skipped; a
    link to a folder is never entered."""
    with os.scandir(root) as scan:
        entries = sorted(scan, key=lambda entry: os.fsencode(entry.name))
    for entry in entries:
        is_dir = entry.is_dir(follow_symlinks=False)
        if not is_dir and not entry.is_file(follow_symlinks=False):
            continue
        yield entry.name, Path(entry.path), is_dir
        if is_dir and recursive:
            for relative, path, child_is_dir in walk(Path(entry.path)):
                yield f"{entry.name}/{relative}", path, child_is_dir


def files(root: Path) -> Iterator[tuple[str, Path]]:
    """The regular files of `walk(root)`."""
    return ((relative, path) for relative, path, is_dir in walk(root) if not is_dir)


def open_file(path: Path) -> IO[bytes]:
    """`path` opened for reading, refusing (OSError) a symbolic link or anything but a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: Path) -> bytes:
    with open_file(path) as f:
        return f.read()


def prune(root: Path) -> list[str]:
    """Removes from the folder `root` every entry results may not hold - symbolic links, hard links (a
    regular file with more than one link: its other name may be outside), fifos, sockets, devices - and
    returns their paths relative to `root`, sorted. Never follows a link."""
    # Every entry is looked at before any is removed: removing one name of a hard link must not make
    # the other look like a file of its own.
    dropped: list[tuple[str, str]] = []
    _unsafe(root, "", dropped)
    for _, path in dropped:
        os.unlink(path)
    return sorted(relative for relative, _ in dropped)


def _unsafe(folder: Path, prefix: str, dropped: list[tuple[str, str]]) -> None:
    with os.scandir(folder) as scan:
        entries = list(scan)
    for entry in entries:
        relative = prefix + entry.name
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            _unsafe(Path(entry.path), relative + "/", dropped)
        elif not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            dropped.append((relative, entry.path))


# The most removed paths a note names (a job may make millions of links; the note goes into an event).
MAX_NAMED = 20


def describe_dropped(dropped: list[str]) -> str:
    """The note for the job's events naming what `prune` removed ("" when nothing): the first MAX_NAMED
    paths (each cut to 100 characters) and how many more."""
    if not dropped:
        return ""
    named = ", ".join(path if len(path) <= 100 else path[:97] + "..." for path in dropped[:MAX_NAMED])
    more = f" and {len(dropped) - MAX_NAMED} more" if len(dropped) > MAX_NAMED else ""
    return f"left out of the results (links and special files are never kept): {named}{more}"


def check_component(value: str, *, what: str) -> str:
    """`value` when it is a safe single path component: not empty, not "." or "..", no "/" or NUL, at
    most MAX_COMPONENT_BYTES bytes of UTF-8. UnsafePathError naming `what` otherwise."""
    problem = ""
    if not value:
        problem = "it is empty"
    elif value in (".", ".."):
        problem = f"it is {value!r}"
    elif "/" in value or "\0" in value or "\\" in value:
        problem = "it holds a '/', '\\' or NUL"
    elif len(value.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
        problem = f"it is longer than {MAX_COMPONENT_BYTES} bytes"
    if problem:
        raise UnsafePathError(f"{what} {value[:80]!r} cannot be a file name: {problem}")
    return value


def check_inside(path: Path, folder: Path) -> Path:
    """`path` when it resolves inside `folder` (links resolved); UnsafePathError otherwise."""
    resolved = path.resolve()
    base = folder.resolve()
    if resolved != base and not resolved.is_relative_to(base):
        raise UnsafePathError(f"{path} would land outside {folder}")
    return path
