"""content.listing: `first_listing` tries its listings in order, falling through on NotFoundError only,
and `walk_order` puts entries in the order `list_tree` walks the same content on disk."""

import random
from pathlib import Path

import pytest

from bacalhau_grpc.common.content.archive import make_tar_gz
from bacalhau_grpc.common.content.listing import first_listing, list_tree, store_listing, walk_order
from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.errors import NotFoundError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.model.sharding import Entry

IPFS = pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS
FILES = {"b.txt": b"b", "a/1.txt": b"1"}
HELD_LISTING = [("", True), ("a", True), ("a/1.txt", False), ("b.txt", False)]
# Names whose walk order differs from a sort of whole paths ("a b" and "a.txt" sort before "a/…" as
# strings, but come after folder "a"'s entries), and from UTF-16 order (U+FF21 before U+1F600 by code
# point; in UTF-16 the surrogate pair of U+1F600 sorts first).
TRICKY = (
    "B",
    "Z",
    "a b",
    "a-b",
    "a.txt",
    "a/B/c",
    "a/b.txt",
    "a/é/x",
    "a0",
    "e",
    "é",
    "\uff21",
    "\U0001f600",
)


def volume(cid: str) -> pb.StorageSpec:
    return pb.StorageSpec(storage_source=IPFS, cid=cid, path="/inputs")


def answering(entries: list[Entry], calls: list[str]):
    """A listing that answers `entries` for every volume, noting the CIDs it is asked for."""

    async def listing(spec: pb.StorageSpec) -> list[Entry]:
        calls.append(spec.cid)
        return entries

    return listing


def failing(error: Exception, calls: list[str]):
    """A listing that raises `error`, noting the CIDs it is asked for."""

    async def listing(spec: pb.StorageSpec) -> list[Entry]:
        calls.append(spec.cid)
        raise error

    return listing


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "store")


async def test_the_first_listing_that_can_answers_and_the_rest_are_not_asked(store):
    cid = store.add_archive(make_tar_gz(FILES))
    later: list[str] = []
    listing = first_listing(store_listing(store, holder="the requester"), answering([("", False)], later))
    assert await listing(volume(cid)) == HELD_LISTING
    assert later == []


async def test_not_found_falls_through_to_the_next_listing(store):
    calls: list[str] = []
    missing = "bafkreiabsent"
    listing = first_listing(store_listing(store, holder="the requester"), answering(HELD_LISTING, calls))
    assert await listing(volume(missing)) == HELD_LISTING
    assert calls == [missing]


async def test_when_none_can_the_error_gives_every_reason_in_order(store):
    calls: list[str] = []
    listing = first_listing(
        store_listing(store, holder="the requester"),
        failing(NotFoundError("the IPFS daemon at http://127.0.0.1:5001 cannot find it"), calls),
        failing(NotFoundError("third reason"), calls),
    )
    with pytest.raises(NotFoundError) as raised:
        await listing(volume("bafkreiabsent"))
    assert str(raised.value) == (
        "content bafkreiabsent is not held by the requester; "
        "the IPFS daemon at http://127.0.0.1:5001 cannot find it; third reason"
    )
    assert calls == ["bafkreiabsent", "bafkreiabsent"]


async def test_other_errors_are_not_taken_for_content_that_is_elsewhere(store):
    later: list[str] = []
    listing = first_listing(failing(OSError("disk unreadable"), []), answering(HELD_LISTING, later))
    with pytest.raises(OSError, match="disk unreadable"):
        await listing(volume("bafkreiabsent"))
    assert later == []


async def test_a_single_listing_raises_its_own_error(store):
    listing = first_listing(store_listing(store, holder="the requester"))
    with pytest.raises(NotFoundError) as raised:
        await listing(volume("bafkreiabsent"))
    assert str(raised.value) == "content bafkreiabsent is not held by the requester"


def test_first_listing_needs_a_listing():
    with pytest.raises(ValueError, match="at least one listing"):
        first_listing()


def test_walk_order_is_the_order_list_tree_walks_the_disk_in(tmp_path):
    root = tmp_path / "folder"
    for name in TRICKY:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    (root / "a" / "empty").mkdir()
    on_disk = list_tree(root)[1:]
    shuffled = on_disk.copy()
    random.Random(7).shuffle(shuffled)
    assert walk_order(shuffled) == on_disk
    paths = [path for path, _ in on_disk]
    # Not a sort of whole paths: "a b" and "a.txt" come after everything in folder "a".
    assert paths != sorted(paths)
    assert paths.index("a/é/x") < paths.index("a b") < paths.index("a.txt") < paths.index("a0")
    # Names by code point (UTF-8 bytes), not UTF-16 units: U+FF21 before U+1F600, "é" after "e".
    assert paths[-4:] == ["e", "é", "\uff21", "\U0001f600"]
