"""The content store, the ContentService over a real gRPC server, and the compute node's volume
preparation on top of them (uploaded contexts, unsealed paths)."""

import asyncio
import io
import shutil
import tarfile
from pathlib import Path

import pytest

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.content.archive import ArchiveError, make_tar_gz, unpack
from bacalhau_grpc.common.content.client import fetch_content
from bacalhau_grpc.common.content.service import SERVICE_NAME, ContentServiceServicer
from bacalhau_grpc.common.content.store import ContentError, ContentStore, folder_cid
from bacalhau_grpc.common.errors import InvalidArgumentError, NotFoundError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.server import ServiceBinding, start_server
from bacalhau_grpc.compute.domain.ports import StorageError
from bacalhau_grpc.compute.storage.content import ContentSource
from bacalhau_grpc.compute.storage.local_path import UnsealedPathSource
from bacalhau_grpc.compute.storage.volumes import Volumes
from bacalhau_grpc.pb.content.v1 import content_service_pb2 as cpb
from bacalhau_grpc.pb.content.v1 import content_service_pb2_grpc as cgrpc

FILES = {"main.py": b"print('hello')\n", "lib/util.py": b"X = 1\n"}
IPFS = pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS


def tar_with(add) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        add(archive)
    return buffer.getvalue()


def test_an_uploaded_archive_is_kept_under_the_cid_of_its_files(tmp_path):
    store = ContentStore(tmp_path / "store")
    cid = store.add_archive(make_tar_gz(FILES))
    assert cid.startswith("bafy")
    plain = tmp_path / "plain"
    (plain / "lib").mkdir(parents=True)
    for name, data in FILES.items():
        (plain / name).write_bytes(data)
    assert folder_cid(plain) == cid
    assert (store.path(cid) / "lib" / "util.py").read_bytes() == b"X = 1\n"
    assert store.add_archive(make_tar_gz(FILES)) == cid  # idempotent
    stat = store.stat(cid)
    assert (stat.is_directory, stat.file_count, stat.size) == (True, 2, sum(map(len, FILES.values())))
    assert list((tmp_path / "store" / ".staging").iterdir()) == []


def symlink_archive(archive: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("link")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    archive.addfile(info)


def escaping_archive(archive: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("../escape.txt")
    info.size = 2
    archive.addfile(info, io.BytesIO(b"hi"))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"this is not an archive", "not a readable tar"),
        (make_tar_gz({"big.bin": b"x" * 2048}), "more than 1024 bytes"),
        (tar_with(symlink_archive), "'link' is a link or a special file"),
        (tar_with(escaping_archive), "'../escape.txt' would land outside the destination folder"),
        (tar_with(lambda archive: None), "holds no file"),
    ],
)
def test_a_bad_archive_is_refused_with_the_reason_and_nothing_is_kept(tmp_path, data, words):
    store = ContentStore(tmp_path / "store")
    with pytest.raises(ArchiveError, match=words):
        store.add_archive(data, max_bytes=1024)
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [".staging"]
    assert list((tmp_path / "store" / ".staging").iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


@pytest.fixture
async def served(tmp_path):
    """A content store served by a real ContentService on 127.0.0.1:0, and a channel to it."""
    store = ContentStore(tmp_path / "served")
    server = await start_server(
        component="content-test",
        node_id="server",
        services=[
            ServiceBinding(
                cgrpc.add_ContentServiceServicer_to_server, ContentServiceServicer(store), SERVICE_NAME
            )
        ],
        host="127.0.0.1",
        port=0,
    )
    channel = channels.open_channel(server.address)
    yield store, channel
    await channel.close()
    await server.stop(0)


async def test_content_is_fetched_from_another_node_and_checked(served, tmp_path):
    remote, channel = served
    cid = remote.add_archive(make_tar_gz(FILES))
    local = ContentStore(tmp_path / "local")
    path = await fetch_content(channel, cid, local, max_bytes=1 << 20)
    assert path == local.path(cid)
    assert {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()} == FILES
    stat = await channels.call(cgrpc.ContentServiceStub(channel).StatContent, cpb.StatContentRequest(cid=cid))
    assert (stat.cid, stat.is_directory, stat.file_count) == (cid, True, 2)


async def test_unknown_content_and_bad_cids_are_clear_errors(served, tmp_path):
    _, channel = served
    local = ContentStore(tmp_path / "local")
    missing = ContentStore(tmp_path / "other").add_archive(make_tar_gz({"x": b"never served"}))
    with pytest.raises(NotFoundError, match=f"content {missing} is not held"):
        await fetch_content(channel, missing, local, max_bytes=1 << 20)
    with pytest.raises(InvalidArgumentError, match="is not a CID"):
        await channels.call(
            cgrpc.ContentServiceStub(channel).StatContent, cpb.StatContentRequest(cid="../etc")
        )


async def test_content_corrupted_on_the_serving_node_is_refused(served, tmp_path):
    remote, channel = served
    cid = remote.add_archive(make_tar_gz(FILES))
    (remote.path(cid) / "main.py").write_bytes(b"print('tampered')\n")
    local = ContentStore(tmp_path / "local")
    with pytest.raises(ContentError, match=f"received for {cid} has CID .*: it was corrupted"):
        await fetch_content(channel, cid, local, max_bytes=1 << 20)
    assert not local.has(cid)


async def test_volumes_fetch_each_cid_once_and_mount_read_only_at_their_paths(served, tmp_path):
    remote, channel = served
    cid = remote.add_archive(make_tar_gz(FILES))
    local = ContentStore(tmp_path / "local")
    fetches: list[str] = []

    async def fetch(wanted: str) -> Path:
        fetches.append(wanted)
        return await fetch_content(channel, wanted, local, max_bytes=1 << 20)

    volumes = Volumes([ContentSource(local, fetch)])
    spec = pb.StorageSpec(storage_source=IPFS, cid=cid, path="/job")
    assert not await volumes.is_local(spec)
    first, second = await asyncio.gather(
        volumes.prepare([spec], field="Spec.Contexts", scratch=tmp_path / "a"),
        volumes.prepare([spec], field="Spec.inputs", scratch=tmp_path / "b"),
    )
    assert first == second
    (mount,) = first
    assert (mount.source, mount.target, mount.read_only) == (local.path(cid), "/job", True)
    assert fetches == [cid]
    assert await volumes.is_local(spec)


async def test_a_volume_that_cannot_be_had_names_itself(served, tmp_path):
    _, channel = served
    local = ContentStore(tmp_path / "local")
    missing = ContentStore(tmp_path / "other").add_archive(make_tar_gz({"x": b"y"}))
    volumes = Volumes(
        [ContentSource(local, lambda cid: fetch_content(channel, cid, local, max_bytes=1 << 20))]
    )
    good_but_unserved = pb.StorageSpec(storage_source=IPFS, cid=missing, path="/data")
    with pytest.raises(
        StorageError, match=rf"^Spec.inputs\[0\] \(IPFS {missing}\): could not fetch {missing}: "
    ):
        await volumes.prepare([good_but_unserved], field="Spec.inputs", scratch=tmp_path / "s")
    url = pb.StorageSpec(
        storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD, url="http://x/y", path="/d"
    )
    with pytest.raises(StorageError, match="no storage provider for URLDownload"):
        await volumes.prepare([url], field="Spec.inputs", scratch=tmp_path / "s")


async def test_unsealed_paths_are_local_when_the_data_is_there(tmp_path):
    (tmp_path / "unsealed" / "QmData").mkdir(parents=True)
    source = UnsealedPathSource(str(tmp_path / "unsealed" / "{{.CID}}"))
    kind = pb.StorageSourceType.STORAGE_SOURCE_TYPE_FILECOIN_UNSEALED
    present = pb.StorageSpec(storage_source=kind, cid="QmData", path="/in")
    absent = pb.StorageSpec(storage_source=kind, cid="QmNope", path="/in")
    assert await source.is_local(present) and not await source.is_local(absent)
    assert await source.prepare(present, tmp_path) == tmp_path / "unsealed" / "QmData"
    with pytest.raises(StorageError, match="unsealed data for QmNope is not at"):
        await source.prepare(absent, tmp_path)
    with pytest.raises(ValueError, match="has no"):
        UnsealedPathSource("/data/fixed")


def test_the_same_archive_again_is_not_unpacked_again(tmp_path):
    store = ContentStore(tmp_path / "store")
    data = make_tar_gz(FILES)
    cid = store.add_archive(data)
    staging = tmp_path / "store" / ".staging"
    staging.rmdir()
    staging.write_text("unpacking anything now would fail")
    assert store.add_archive(data) == cid
    staging.unlink()
    staging.mkdir()
    shutil.rmtree(store.path(cid))  # the content went away meanwhile: the archive is unpacked again
    assert store.add_archive(data) == cid and (store.path(cid) / "main.py").exists()


def test_without_pythons_data_filter_files_get_plain_permissions(tmp_path, monkeypatch):
    # Python before 3.11.4 (Debian bookworm's 3.11.2, the container image's) has no extraction filters.
    monkeypatch.delattr(tarfile, "data_filter")

    def setuid_file(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("tool")
        info.size, info.mode = 2, 0o4777
        archive.addfile(info, io.BytesIO(b"hi"))

    dest = tmp_path / "dest"
    dest.mkdir()
    unpack(tar_with(setuid_file), dest, max_bytes=1024)
    assert (dest / "tool").read_bytes() == b"hi"
    assert (dest / "tool").stat().st_mode & 0o7777 == 0o755
    with pytest.raises(ArchiveError, match="would land outside"):
        unpack(tar_with(escaping_archive), tmp_path / "other", max_bytes=1024)
    assert not (tmp_path / "escape.txt").exists()
