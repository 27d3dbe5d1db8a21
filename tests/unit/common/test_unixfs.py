"""unixfs.folder_cid: the known CIDs of empty UnixFS directories, and the CID aleph-cid gives any folder
without empty subfolders (tests/integration/ipfs compares it with a real IPFS node)."""

import os
import tempfile
from pathlib import Path

import aleph_cid
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bacalhau_grpc.common.content.unixfs import folder_cid

CHUNK = 256 * 1024
# The empty UnixFS directory, by CID version.
EMPTY_FOLDER = {
    0: "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn",
    1: "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354",
}
# A directory whose only entry is an empty directory "y": the dag-pb node
# {Links: [{Hash: EMPTY_FOLDER[1], Name: "y", Tsize: 4}], Data: UnixFS Directory}, hashed by hand.
FOLDER_OF_EMPTY_Y = "bafybeigf3egd4hiu3wc3o4fqlpd6synfsirzltntenkhysyufpiipavyty"
PATTERN = bytes(range(256))
BOTH = pytest.mark.parametrize("cid_version", [1, 0], ids=["v1", "v0"])


def write_tree(root: Path, files: dict[str, bytes], empty_dirs: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    for name in empty_dirs:
        (root / name).mkdir(parents=True, exist_ok=True)
    return root


def of_size(size: int) -> bytes:
    return PATTERN * (size // 256) + PATTERN[: size % 256]


def assert_as_aleph_cid(folder: Path, cid_version: int) -> None:
    assert folder_cid(folder, cid_version=cid_version) == aleph_cid.hash_folder(
        folder, cid_version=cid_version
    )


# -- empty folders ------------------------------------------------------------------------------------


@BOTH
def test_an_empty_folder_is_the_empty_unixfs_directory(tmp_path, cid_version):
    assert folder_cid(tmp_path, cid_version=cid_version) == EMPTY_FOLDER[cid_version]


def test_an_empty_subfolder_is_linked_as_the_empty_directory(tmp_path):
    assert folder_cid(write_tree(tmp_path / "folder", {}, empty_dirs=("y",))) == FOLDER_OF_EMPTY_Y


@BOTH
def test_an_empty_subfolder_changes_the_cid(tmp_path, cid_version):
    files = {"a.txt": b"a"}
    without = folder_cid(write_tree(tmp_path / "without", files), cid_version=cid_version)
    with_outputs = write_tree(tmp_path / "with", files, empty_dirs=("outputs",))
    assert folder_cid(with_outputs, cid_version=cid_version) != without


# -- folders without empty subfolders: as aleph-cid ----------------------------------------------------


@BOTH
@pytest.mark.parametrize(
    "files",
    [
        {"a.txt": b"hello\n"},
        {"empty": b"", "main.py": b"print(1)\n", "lib/util.py": b"X = 1\n", "lib/deep/er/data": b"d"},
        {
            "Zebra": b"Z",
            "apple": b"a",
            "é.txt": b"e",
            "with space + %25": b"s",
            ".hidden": b"h",
            "日本": b"j",
        },
        {"one-chunk": of_size(CHUNK), "two-chunks": of_size(CHUNK + 1), "sub/1.5MiB": of_size(3 * CHUNK * 2)},
    ],
    ids=["one-file", "nested", "names", "chunks"],
)
def test_a_folder_has_the_cid_aleph_cid_gives_it(tmp_path, files, cid_version):
    assert_as_aleph_cid(write_tree(tmp_path / "folder", files), cid_version)


@BOTH
def test_a_file_of_more_than_174_chunks_has_two_layers_of_nodes(tmp_path, cid_version):
    files = {"big": of_size(175 * CHUNK + 3), "full": of_size(174 * CHUNK), "small": b"s"}
    assert_as_aleph_cid(write_tree(tmp_path / "folder", files), cid_version)


@pytest.fixture(scope="module")
def wide_folder(tmp_path_factory) -> Path:
    """6,300 entries of 8-character names: 6,300 * (8 + 34 or 36 CID bytes) > 256 KiB, a HAMT shard."""
    folder = tmp_path_factory.mktemp("wide")
    for i in range(6300):
        (folder / f"{i:08}").write_bytes(str(i % 7).encode())
    write_tree(folder / "sub", {"x": b"x"})
    return folder


@BOTH
def test_a_folder_of_many_entries_is_a_hamt_shard_as_in_aleph_cid(wide_folder, cid_version):
    assert_as_aleph_cid(wide_folder, cid_version)


@settings(max_examples=40)
@given(
    st.dictionaries(
        st.lists(st.sampled_from(["a", "B", "c", "é", "d.txt"]), min_size=1, max_size=3).map("/".join),
        st.integers(0, 2 * CHUNK + 5),
        min_size=1,
        max_size=6,
    )
)
def test_any_tree_of_files_has_the_cid_aleph_cid_gives_it(sizes):
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        for name, size in sizes.items():
            path = root / name
            if any(parent.is_file() for parent in path.parents) or path.is_dir():
                continue  # a name both a file and a folder: keep the first
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(of_size(size))
        for cid_version in (1, 0):
            assert_as_aleph_cid(root, cid_version)


# -- symlinks, odd entries ---------------------------------------------------------------------------


@BOTH
def test_links_and_fifos_are_left_out_never_followed(tmp_path, cid_version):
    """The CID of a folder holding links and a fifo is that of the same folder without them (what kubo
    gives it once they are removed), and nothing the links point at is read."""
    other = write_tree(tmp_path / "other", {"z": b"z", "deep/y": b"y"})
    plain = write_tree(tmp_path / "plain", {"f": b"f", "sub/g": b"g"})
    folder = write_tree(tmp_path / "folder", {"f": b"f", "sub/g": b"g"})
    (folder / "to-file").symlink_to("f")
    (folder / "sub" / "to-folder").symlink_to(other)
    (folder / "to-etc").symlink_to("/etc")
    (folder / "dangling").symlink_to("nowhere")
    (folder / "sub" / "up").symlink_to("..")
    os.mkfifo(folder / "fifo")
    assert folder_cid(folder, cid_version=cid_version) == folder_cid(plain, cid_version=cid_version)
    assert_as_aleph_cid(plain, cid_version)


def test_a_name_that_is_not_utf8_is_refused(tmp_path):
    (tmp_path / os.fsdecode(b"\xff")).write_bytes(b"x")
    with pytest.raises(ValueError, match="not UTF-8"):
        folder_cid(tmp_path)


def test_only_cid_versions_0_and_1(tmp_path):
    with pytest.raises(ValueError, match="cid_version"):
        folder_cid(tmp_path, cid_version=2)
