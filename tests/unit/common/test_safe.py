"""common.content.safe: the one walk of result folders (never through a link), pruning what results may
not hold, and the checks of path components from the network."""

import io
import os
import tarfile
from pathlib import Path

import pytest

from bacalhau_grpc.common.content import archive, safe
from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.content.unixfs import folder_cid
from bacalhau_grpc.compute.domain.proposals import folder_hash


def hostile_folder(root: Path, outside: Path) -> Path:
    """A result folder with a plain file and subfolder, plus links (to a file and a folder outside,
    inside, dangling, up), a hard link to a file outside and a fifo."""
    outside.mkdir()
    (outside / "secret").write_text("secret")
    (outside / "deep").mkdir()
    (outside / "deep" / "more").write_text("more secret")
    (root / "outputs" / "sub").mkdir(parents=True)
    (root / "stdout").write_text("out")
    (root / "outputs" / "ok.txt").write_text("ok")
    (root / "outputs" / "sub" / "x").write_text("x")
    (root / "outputs" / "etc").symlink_to(outside)
    (root / "outputs" / "secret").symlink_to(outside / "secret")
    (root / "outputs" / "inside").symlink_to("ok.txt")
    (root / "outputs" / "dangling").symlink_to("nowhere")
    (root / "outputs" / "sub" / "up").symlink_to("..")
    os.link(outside / "secret", root / "outputs" / "hard")
    os.mkfifo(root / "outputs" / "fifo")
    return root


def plain_folder(root: Path) -> Path:
    (root / "outputs" / "sub").mkdir(parents=True)
    (root / "stdout").write_text("out")
    (root / "outputs" / "ok.txt").write_text("ok")
    (root / "outputs" / "sub" / "x").write_text("x")
    return root


DROPPED = [
    "outputs/dangling",
    "outputs/etc",
    "outputs/fifo",
    "outputs/hard",
    "outputs/inside",
    "outputs/secret",
    "outputs/sub/up",
]


def test_walk_sees_folders_and_regular_files_only_never_through_a_link(tmp_path):
    folder = hostile_folder(tmp_path / "r", tmp_path / "outside")
    assert [(rel, is_dir) for rel, _, is_dir in safe.walk(folder)] == [
        ("outputs", True),
        ("outputs/hard", False),  # a regular file: walk lists it, prune removes it
        ("outputs/ok.txt", False),
        ("outputs/sub", True),
        ("outputs/sub/x", False),
        ("stdout", False),
    ]


def test_prune_removes_links_hard_links_and_special_files_and_names_them(tmp_path):
    folder = hostile_folder(tmp_path / "r", tmp_path / "outside")
    assert safe.prune(folder) == DROPPED
    assert sorted(rel for rel, _, _ in safe.walk(folder)) == [
        "outputs",
        "outputs/ok.txt",
        "outputs/sub",
        "outputs/sub/x",
        "stdout",
    ]
    assert (tmp_path / "outside" / "secret").read_text() == "secret"  # the link's target is untouched
    assert "outputs/etc" in safe.describe_dropped(DROPPED)
    assert safe.describe_dropped([]) == ""


def test_the_cid_and_hash_of_a_folder_with_links_are_those_of_the_folder_without_them(tmp_path):
    hostile = hostile_folder(tmp_path / "r", tmp_path / "outside")
    os.unlink(hostile / "outputs" / "hard")  # the only entry walk keeps that prune would not
    plain = plain_folder(tmp_path / "plain")
    assert folder_cid(hostile) == folder_cid(plain)
    assert folder_cid(hostile, cid_version=0) == folder_cid(plain, cid_version=0)
    assert folder_hash(hostile) == folder_hash(plain)


def test_the_store_and_archives_never_follow_links(tmp_path):
    hostile = hostile_folder(tmp_path / "r", tmp_path / "outside")
    safe.prune(hostile)
    (hostile / "outputs" / "etc").symlink_to(tmp_path / "outside")  # even if one came back
    store = ContentStore(tmp_path / "store")
    cid = store.add_folder(hostile)
    assert cid == folder_cid(plain_folder(tmp_path / "plain"))
    buffer = io.BytesIO()
    store.write_archive(cid, buffer)
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as tar:
        assert sorted(m.name for m in tar.getmembers()) == [
            "outputs",
            "outputs/ok.txt",
            "outputs/sub",
            "outputs/sub/x",
            "stdout",
        ]
        assert all(m.isfile() or m.isdir() for m in tar.getmembers())
    buffer = io.BytesIO()
    archive.pack(hostile, buffer, file_name="x")
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as tar:
        assert "outputs/etc" not in tar.getnames()


def test_open_file_refuses_links_and_fifos(tmp_path):
    (tmp_path / "f").write_text("f")
    (tmp_path / "l").symlink_to("f")
    os.mkfifo(tmp_path / "p")
    assert safe.read_bytes(tmp_path / "f") == b"f"
    with pytest.raises(OSError):
        safe.open_file(tmp_path / "l")
    with pytest.raises(OSError, match="not a regular file"):
        safe.open_file(tmp_path / "p")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "empty"),
        (".", "is '.'"),
        ("..", "is '..'"),
        ("a/b", "'/'"),
        ("/", "'/'"),
        ("a\0b", "NUL"),
        ("a\\b", "'\\\\'"),
        ("x" * 256, "longer than 255"),
        ("é" * 128, "longer than 255"),
    ],
)
def test_check_component_refuses_what_is_not_one_safe_name(value, words):
    with pytest.raises(safe.UnsafePathError, match=words):
        safe.check_component(value, what="the node ID")


@pytest.mark.parametrize("value", ["node-1", "x" * 255, "QmAbc", "a..b", "...", ".hidden"])
def test_check_component_accepts_plain_names(value):
    assert safe.check_component(value, what="x") == value


def test_check_inside(tmp_path):
    (tmp_path / "out").mkdir()
    assert safe.check_inside(tmp_path / "out" / "a", tmp_path / "out") == tmp_path / "out" / "a"
    with pytest.raises(safe.UnsafePathError, match="outside"):
        safe.check_inside(tmp_path / "out" / ".." / "x", tmp_path / "out")
    (tmp_path / "out" / "l").symlink_to(tmp_path)
    with pytest.raises(safe.UnsafePathError, match="outside"):
        safe.check_inside(tmp_path / "out" / "l" / "x", tmp_path / "out")


def test_the_note_of_what_was_left_out_is_bounded():
    note = safe.describe_dropped([f"outputs/link-{i}" for i in range(100_000)])
    assert note.startswith("left out of the results (links and special files are never kept): ")
    assert "outputs/link-0, outputs/link-1, " in note
    assert note.endswith("outputs/link-19 and 99980 more") and len(note) < 1000
    assert safe.describe_dropped(["x" * 500]).endswith("x" * 97 + "...")
