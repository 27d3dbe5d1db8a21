"""Sharding (as Bacalhau v0.3 shards): which of a job's inputs each shard gets. Pure: the listings come
from the caller.

1. Explode every input into atoms. An IPFS input gives one atom per entry of its content, root included,
   in walk order (see `content.listing`); any other input (a URL, an unsealed path, ...) is one atom,
   the volume itself. An atom's path is where the job sees it: for an IPFS entry the input's path joined
   with the entry's relative path, e.g. `/inputs/a/3.txt`; for a URL the file it becomes,
   `<Path>/<name from the URL>` (`checks.mount_path`: named from the URL alone, so the requester, which
   downloads nothing, and every compute node name it alike); for any other input its path.
2. Keep the atoms whose path matches `Spec.Sharding.GlobPattern` with doublestar semantics, relative to
   `GlobPatternBasePath` (see `compile_glob` and `matches`).
3. Group them into batches of `BatchSize` in order (<= 0 means 1); the last batch may be smaller.

The requester counts the batches at submission (`ExecutionPlan.ShardsTotal`); a compute node derives
the same plan from the same content on its own disk and mounts the atoms of its shard at their paths.
An empty pattern means one shard with every input as it is.

Everything is linear in the number of atoms (10,000 atoms take milliseconds): one compiled regular
expression, one match per atom.
"""

import functools
import re
from collections.abc import Sequence
from typing import NamedTuple

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import checks, pb

GLOB_FIELD = "Spec.Sharding.GlobPattern"

# One entry of an input's content: its path relative to the input ("" is the input itself; "/"
# separates folders) and whether it is a folder.
Entry = tuple[str, bool]
# An input's entries in walk order, the root ("") first.
Listing = Sequence[Entry]


class Atom(NamedTuple):
    """The smallest unit of input a shard gets (a named tuple: 10,000 of them are made in milliseconds)."""

    # Which input (index into Spec.inputs) it comes from.
    volume_index: int
    # Where it lies inside that input; "" for the input itself.
    sub_path: str
    # The absolute path the job sees it at: the input's mount path joined with sub_path.
    path: str


def needs_listing(volume: pb.StorageSpec) -> bool:
    """Whether the volume explodes into its entries (IPFS content); other volumes are one atom."""
    return volume.storage_source == pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS


def _with_slash(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _root_path(volume_path: str) -> str:
    """The input's path as atoms are named under it: a leading "/" and no trailing one."""
    return _with_slash(volume_path.strip("/"))


def _whole(index: int, volume: pb.StorageSpec) -> Atom:
    """The atom that is input `index` itself, at its mount path; InvalidArgumentError naming the input
    for a URL that names no file (the requester refuses those at submission)."""
    try:
        return Atom(index, "", _with_slash(checks.mount_path(volume)))
    except ValueError as exc:
        raise InvalidArgumentError(str(exc), field=f"Spec.inputs[{index}].URL") from None


def explode(volumes: Sequence[pb.StorageSpec], listings: Sequence[Listing | None]) -> list[Atom]:
    """Every input's atoms, input after input. `listings[i]` is input i's listing, or None for an input
    that is one atom (see `needs_listing`). Paths seen twice within one input count once."""
    atoms: list[Atom] = []
    for index, volume in enumerate(volumes):
        listing = listings[index] if index < len(listings) else None
        if listing is None:
            atoms.append(_whole(index, volume))
            continue
        root = _root_path(volume.path)
        prefix = "" if root == "/" else root
        seen: set[str] = set()
        for sub_path, _is_dir in listing:
            sub_path = sub_path.strip("/")
            if sub_path in seen:
                continue
            seen.add(sub_path)
            atoms.append(Atom(index, sub_path, f"{prefix}/{sub_path}" if sub_path else root))
    return atoms


def matches(atoms: Sequence[Atom], pattern: str, base_path: str = "") -> list[Atom]:
    """The atoms whose path matches `pattern`, in order. The pattern and the paths get a leading "/";
    the base path (a trailing "/" ignored) is removed first from the paths under it, so `*.mp4` with
    the base path `/inputs` matches `/inputs/a b.mp4`. Paths outside the base path are matched whole
    (v0.3 removed the base path as a string prefix: `/inputs2/x` became `2/x`, which matched nothing)."""
    glob = compile_glob(pattern)
    base = _with_slash(base_path).rstrip("/") if base_path else ""
    under = base + "/"
    kept = []
    for atom in atoms:
        path = _with_slash(atom.path)
        if base and (path == base or path.startswith(under)):
            path = path[len(base) :]
        if glob.fullmatch(path):
            kept.append(atom)
    return kept


def batches(atoms: Sequence[Atom], batch_size: int) -> list[list[Atom]]:
    """The atoms in consecutive groups of `batch_size` (<= 0 means 1); the last group may be smaller."""
    size = batch_size if batch_size > 0 else 1
    return [list(atoms[start : start + size]) for start in range(0, len(atoms), size)]


def plan(spec: pb.Spec, listings: Sequence[Listing | None]) -> list[list[Atom]]:
    """Each shard's atoms. Without a glob pattern: one shard with every input as it is. With one and no
    atom matching it: InvalidArgumentError "no sharding atoms found for glob pattern …"."""
    sharding = spec.sharding
    if not sharding.glob_pattern:
        return [[_whole(i, v) for i, v in enumerate(spec.inputs)]]
    matched = matches(explode(spec.inputs, listings), sharding.glob_pattern, sharding.base_path)
    if not matched:
        raise InvalidArgumentError(
            f"no sharding atoms found for glob pattern {sharding.glob_pattern}", field=GLOB_FIELD
        )
    return batches(matched, sharding.batch_size)


def shard_of(shards: Sequence[Sequence[Atom]], shard_index: int) -> Sequence[Atom]:
    """The atoms of one shard; InvalidArgumentError when the plan has no such shard."""
    if not 0 <= shard_index < len(shards):
        raise InvalidArgumentError(
            f"shard {shard_index} is out of range (the job has {len(shards)})", field="shard_index"
        )
    return shards[shard_index]


# ------------------------------------------------------------------------------------------------
# Doublestar glob patterns (github.com/bmatcuk/doublestar/v4, which v0.3 used), as regular expressions
# ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """The doublestar pattern (a leading "/" added) as a regular expression to `fullmatch` paths with.

    `*` matches within one path segment, `?` one character of a segment, `[abc]`, `[a-z]` and `[!x]`
    (or `[^x]`) one character of a class, `{a,b}` either alternative, `\\c` the character c. `**` as a
    whole segment matches zero or more folders (`/**/*.txt` matches `/a.txt` and `/a/b/c.txt`); a
    trailing `/**` also matches the folder itself; `**` inside a segment is a `*`.
    InvalidArgumentError (Spec.Sharding.GlobPattern) for a malformed pattern."""
    try:
        return re.compile(_Translator(_with_slash(pattern)).regex(), re.DOTALL)
    except (_BadPattern, re.error) as exc:
        raise InvalidArgumentError(f"bad glob pattern {pattern!r}: {exc}", field=GLOB_FIELD) from None


class _BadPattern(ValueError):
    pass


class _Translator:
    """One pass over a doublestar pattern, writing the equivalent regular expression."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.i = 0
        self.out: list[str] = []
        # Whether the next character starts a path segment (`**` is a doublestar only there).
        self.segment_start = True
        # For each open `{`: whether a segment started at it (each alternative starts the same way).
        self.alternatives: list[bool] = []

    def regex(self) -> str:
        pattern = self.pattern
        while self.i < len(pattern):
            char = pattern[self.i]
            if char == "/" and pattern[self.i :] == "/**" and not self.alternatives:
                self._emit("(?:/.*)?", 3)  # the folder itself or anything below it
            elif char == "*":
                self._star()
            elif char == "?":
                self._emit("[^/]", 1)
            elif char == "[":
                self._char_class()
            elif char == "{":
                self.alternatives.append(self.segment_start)
                self._emit("(?:", 1, segment_start=self.segment_start)
            elif char == "," and self.alternatives:
                self._emit("|", 1, segment_start=self.alternatives[-1])
            elif char == "}" and self.alternatives:
                self.alternatives.pop()
                self._emit(")", 1)
            elif char == "\\":
                if self.i + 1 >= len(pattern):
                    raise _BadPattern("it ends with an escaping backslash")
                self._emit(re.escape(pattern[self.i + 1]), 2, segment_start=pattern[self.i + 1] == "/")
            else:
                self._emit(re.escape(char), 1, segment_start=char == "/")
        if self.alternatives:
            raise _BadPattern("a '{' is never closed")
        return "".join(self.out)

    def _emit(self, regex: str, length: int, *, segment_start: bool = False) -> None:
        self.out.append(regex)
        self.i += length
        self.segment_start = segment_start

    def _star(self) -> None:
        rest = self.pattern[self.i :]
        if self.segment_start and rest.startswith("**"):
            if rest == "**":
                self._emit(".*", 2)
                return
            if rest.startswith("**/"):
                self._emit("(?:[^/]*/)*", 3, segment_start=True)  # zero or more folders
                return
        stars = len(rest) - len(rest.lstrip("*"))
        self._emit("[^/]*", stars)

    def _char_class(self) -> None:
        pattern = self.pattern
        i = self.i + 1
        negate = i < len(pattern) and pattern[i] in "!^"
        if negate:
            i += 1
        items: list[str] = []
        while i < len(pattern) and pattern[i] != "]":
            low, i = self._class_char(i)
            if i + 1 < len(pattern) and pattern[i] == "-" and pattern[i + 1] != "]":
                high, i = self._class_char(i + 1)
                items.append(f"{re.escape(low)}-{re.escape(high)}")
            else:
                items.append(re.escape(low))
        if i >= len(pattern):
            raise _BadPattern("a '[' is never closed")
        if not items:
            raise _BadPattern("a character class is empty")
        self.out.append("[" + ("^" if negate else "") + "".join(items) + "]")
        self.i = i + 1
        self.segment_start = False

    def _class_char(self, i: int) -> tuple[str, int]:
        """The class character at i (an escaped one too) and the index after it."""
        if self.pattern[i] == "\\":
            if i + 1 >= len(self.pattern):
                raise _BadPattern("it ends with an escaping backslash")
            return self.pattern[i + 1], i + 2
        return self.pattern[i], i + 1
