"""The IPFS client, the IPFS storage provider and the IPFS publisher against a real IPFS node (js-ipfs,
the `ipfs_daemon` fixture), and the CIDs of the embedded content store (`unixfs.folder_cid`, files hashed
by aleph-cid) against the node's."""

import asyncio
import os
import time
from pathlib import Path

import aleph_cid
import pytest

from bacalhau_grpc.common.content.archive import make_tar_gz
from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.content.unixfs import folder_cid
from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.ipfs import IpfsClient, IpfsError, IpfsTimeoutError, parse_api_address
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.executions import Execution
from bacalhau_grpc.compute.domain.ports import StorageError
from bacalhau_grpc.compute.domain.runs import RunResult
from bacalhau_grpc.compute.publishers.base import PublisherError
from bacalhau_grpc.compute.publishers.ipfs import IpfsPublisher
from bacalhau_grpc.compute.settings import ComputeSettings
from bacalhau_grpc.compute.storage.ipfs import IpfsSource
from bacalhau_grpc.compute.storage.volumes import Volumes

IPFS = pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS
CHUNK = 256 * 1024
# Bigger than one chunk, so the file is a tree of leaves, not a single block.
BIG = bytes(range(256)) * (3 * CHUNK // 256 + 7)
FILES = {
    "main.py": b"print('hello')\n",
    "empty.txt": b"",
    "lib/util.py": b"X = 1\n",
    "lib/deep/er/data.bin": BIG,
    "names/with space + plus %25 é.txt": b"odd names\n",
    "names/Zebra": b"upper case sorts first\n",
}
SHORT = 1.5
# The CIDv1 of an empty UnixFS directory.
EMPTY_FOLDER = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
# A directory whose only entry is an empty directory "y", by hand: sha256 of the dag-pb node
# {Links: [{Hash: EMPTY_FOLDER, Name: "y", Tsize: 4}], Data: UnixFS Directory}.
FOLDER_OF_EMPTY_Y = "bafybeigf3egd4hiu3wc3o4fqlpd6synfsirzltntenkhysyufpiipavyty"


@pytest.fixture
async def client(ipfs_daemon: str):
    async with IpfsClient(ipfs_daemon, timeout=30.0, transfer_timeout=60.0) as client:
        yield client


def write_tree(root: Path, files: dict[str, bytes], empty_dirs: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for name in empty_dirs:
        (root / name).mkdir(parents=True, exist_ok=True)
    return root


def tree_of(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under root, by relative path."""
    return {
        path.relative_to(root).as_posix(): (path.read_bytes() if path.is_file() else None)
        for path in root.rglob("*")
    }


def missing_cid() -> str:
    """The CID of bytes nobody added."""
    return aleph_cid.compute_cid(os.urandom(64))


# -- CIDs: the embedded content store (folder_cid, aleph-cid) and the daemon agree ---------------------


@pytest.mark.parametrize("data", [b"hello\n", b"", BIG], ids=["small", "empty", "multi-chunk"])
async def test_a_single_file_has_the_cid_aleph_cid_computes(client, data):
    assert await client.add_bytes(data) == aleph_cid.compute_cid(data)
    hasher = aleph_cid.CidHasher.for_ipfs_v1_raw_leaves()
    hasher.update(data)
    assert await client.add_bytes(data, cid_version=1) == hasher.finalize()


async def test_a_folder_has_the_cid_of_the_content_store_and_folder_cid(client, tmp_path):
    folder = write_tree(tmp_path / "folder", FILES)
    store_cid = ContentStore(tmp_path / "store").add_archive(make_tar_gz(FILES))
    cid = await client.add_folder(folder)
    assert cid == folder_cid(folder) == store_cid
    assert cid.startswith("bafy")


async def test_empty_subfolders_are_part_of_the_folder(client, tmp_path):
    folder = write_tree(tmp_path / "folder", {"a.txt": b"a"}, empty_dirs=("outputs", "x/y"))
    entries = await client.ls(await client.add_folder(folder))
    assert [(e.path, e.cid) for e in entries if e.is_directory] == [
        ("outputs", EMPTY_FOLDER),
        ("x", FOLDER_OF_EMPTY_Y),
        ("x/y", EMPTY_FOLDER),
    ]


@pytest.mark.parametrize("cid_version", [1, 0], ids=["v1", "v0"])
@pytest.mark.parametrize(
    ("files", "empty_dirs"),
    [
        ({"a.txt": b"a"}, ("outputs",)),
        ({"a.txt": b"a"}, ("x/y",)),
        ({}, ()),
        ({}, ("a", "b/c")),
        (FILES, ("outputs", "lib/deep/empty", "names/x/y/z")),
    ],
    ids=["empty-subfolder", "nested-empty-subfolders", "empty-folder", "only-empty-subfolders", "mixed"],
)
async def test_folder_cid_agrees_on_empty_subfolders(client, tmp_path, files, empty_dirs, cid_version):
    # aleph-cid 0.1.0's hash_folder leaves empty subfolders out (and refuses an empty folder); the daemon
    # links them as empty UnixFS directories, and so does folder_cid.
    folder = write_tree(tmp_path / "folder", files, empty_dirs=empty_dirs)
    cid = await client.add_folder(folder, cid_version=cid_version)
    assert cid == folder_cid(folder, cid_version=cid_version)


async def test_an_empty_subfolder_is_in_the_content_store_cid(client, tmp_path):
    folder = write_tree(tmp_path / "folder", FILES, empty_dirs=("outputs",))
    assert await client.add_folder(folder) == ContentStore(tmp_path / "store").add_folder(folder)


async def test_a_cidv0_folder_matches_too(client, tmp_path):
    folder = write_tree(tmp_path / "folder", FILES)
    assert await client.add_folder(folder, cid_version=0) == folder_cid(folder, cid_version=0)


# -- round trips ---------------------------------------------------------------------------------------


async def test_a_folder_comes_back_as_it_was_added(client, tmp_path):
    folder = write_tree(tmp_path / "folder", FILES, empty_dirs=("outputs",))
    cid = await client.add_folder(folder)
    dest = await client.get(cid, tmp_path / "out" / "copy")
    assert dest == tmp_path / "out" / "copy"
    assert tree_of(dest) == tree_of(folder)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["copy"]  # no staging left


async def test_a_file_comes_back_as_a_file(client, tmp_path):
    cid = await client.add_bytes(BIG)
    dest = await client.get(cid, tmp_path / "file")
    assert dest.read_bytes() == BIG


@pytest.mark.parametrize("empty_dirs", [(), ("a", "b/c")], ids=["empty", "only-empty-subfolders"])
async def test_a_folder_without_files_comes_back_too(client, tmp_path, empty_dirs):
    folder = write_tree(tmp_path / "folder", {}, empty_dirs=empty_dirs)
    cid = await client.add_folder(folder)
    if not empty_dirs:
        assert cid == EMPTY_FOLDER
    dest = await client.get(cid, tmp_path / "copy")
    assert dest.is_dir() and tree_of(dest) == tree_of(folder)


async def test_get_refuses_an_existing_destination(client, tmp_path):
    cid = await client.add_bytes(b"x")
    with pytest.raises(IpfsError, match="exists already"):
        await client.get(cid, tmp_path)


async def test_get_refuses_more_than_max_bytes(client, tmp_path):
    cid = await client.add_bytes(BIG)
    with pytest.raises(IpfsError, match="bytes"):
        await client.get(cid, tmp_path / "big", max_bytes=1000)
    assert not (tmp_path / "big").exists()


async def test_stat_tells_files_from_folders(client, tmp_path):
    folder = write_tree(tmp_path / "folder", FILES)
    folder_stat = await client.stat(await client.add_folder(folder))
    assert folder_stat.is_directory
    assert folder_stat.cumulative_size > sum(len(data) for data in FILES.values())
    file_cid = await client.add_bytes(BIG)
    file_stat = await client.stat(file_cid)
    assert (file_stat.cid, file_stat.is_directory, file_stat.size) == (file_cid, False, len(BIG))
    assert file_stat.cumulative_size > len(BIG)


async def test_ls_walks_the_folder_parents_first(client, tmp_path):
    folder = write_tree(tmp_path / "folder", FILES, empty_dirs=("outputs",))
    entries = await client.ls(await client.add_folder(folder))
    by_path = {entry.path: entry for entry in entries}
    assert set(by_path) == set(tree_of(folder))
    for path, data in tree_of(folder).items():
        assert by_path[path].is_directory == (data is None)
        if data is not None:
            assert by_path[path].size == len(data)
    paths = [entry.path for entry in entries]
    assert paths.index("lib") < paths.index("lib/deep") < paths.index("lib/deep/er/data.bin")
    assert by_path["main.py"].cid == await client.add_bytes(FILES["main.py"], cid_version=1)
    assert await client.ls(by_path["main.py"].cid) == []


async def test_pin_and_id(client):
    cid = await client.add_bytes(b"pin me")
    await client.pin(cid)
    assert (await client.id())["ID"]


# -- a CID no node has -------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["stat", "ls", "pin", "get"])
async def test_a_missing_cid_times_out_naming_the_cid(client, tmp_path, call):
    cid = missing_cid()
    args = (tmp_path / "dest",) if call == "get" else ()
    started = time.monotonic()
    with pytest.raises(IpfsTimeoutError, match=cid) as raised:
        await getattr(client, call)(cid, *args, timeout=SHORT)
    assert time.monotonic() - started < SHORT + 5
    assert "timed out after 1.5s" in str(raised.value)
    assert not (tmp_path / "dest").exists()


async def test_a_daemon_that_is_not_there_is_a_clear_error():
    async with IpfsClient("/ip4/127.0.0.1/tcp/1", timeout=5.0) as client:
        with pytest.raises(IpfsError, match=r"IPFS id: the daemon at http://127.0.0.1:1 cannot be reached"):
            await client.id()


async def test_the_daemon_error_message_is_passed_on(client):
    with pytest.raises(IpfsError, match=r"IPFS files/stat: .*not-a-cid") as raised:
        await client.stat("not-a-cid")
    assert not isinstance(raised.value, IpfsTimeoutError)


# -- addresses ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("http://127.0.0.1:5001", "http://127.0.0.1:5001"),
        ("http://127.0.0.1:5001/", "http://127.0.0.1:5001"),
        ("https://ipfs.example.org", "https://ipfs.example.org"),
        ("/ip4/127.0.0.1/tcp/5001", "http://127.0.0.1:5001"),
        ("/ip4/10.0.0.2/tcp/5001/http", "http://10.0.0.2:5001"),
        ("/ip6/::1/tcp/5001", "http://[::1]:5001"),
        ("/dns4/ipfs.local/tcp/443/https", "https://ipfs.local:443"),
        ("/dns/ipfs/tcp/5001", "http://ipfs:5001"),
    ],
)
def test_the_api_is_a_url_or_a_multiaddr(address, url):
    assert parse_api_address(address) == url
    assert IpfsClient(address).url == url


@pytest.mark.parametrize(
    "address",
    [
        "",
        "127.0.0.1:5001",
        "ftp://127.0.0.1:5001",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:5001/api/v0",
        "/ip4/127.0.0.1",
        "/ip4/300.0.0.1/tcp/5001",
        "/ip4/127.0.0.1/udp/5001",
        "/ip4/127.0.0.1/tcp/0",
        "/ip4/127.0.0.1/tcp/5001/ws",
        "/unix/tmp/ipfs.sock/tcp/1",
    ],
)
def test_anything_else_is_refused_saying_what_is_expected(address):
    with pytest.raises(InvalidArgumentError, match=r"is not an IPFS API address.*multiaddr such as"):
        IpfsClient(address)


def test_the_compute_setting_takes_either_and_names_itself():
    settings = ComputeSettings(requester_address="127.0.0.1:1", ipfs_connect="/ip4/127.0.0.1/tcp/5001")
    assert settings.ipfs_connect == "/ip4/127.0.0.1/tcp/5001"
    with pytest.raises(InvalidArgumentError, match=r"^ipfs_connect: '127\.0\.0\.1:5001' is not an IPFS API"):
        ComputeSettings(requester_address="127.0.0.1:1", ipfs_connect="127.0.0.1:5001")


async def test_the_client_answers_at_its_multiaddr(ipfs_daemon):
    port = ipfs_daemon.rsplit(":", 1)[1]
    async with IpfsClient(f"/ip4/127.0.0.1/tcp/{port}") as client:
        assert (await client.id())["ID"]


# -- the storage provider ----------------------------------------------------------------------------


class CountingClient(IpfsClient):
    """The real client, counting its downloads."""

    gets = 0

    async def get(self, cid, dest, **kwargs):
        self.gets += 1
        return await super().get(cid, dest, **kwargs)


def volume(cid: str) -> pb.StorageSpec:
    return pb.StorageSpec(storage_source=IPFS, cid=cid, path="/inputs")


async def test_a_folder_is_prepared_once_into_the_cache(ipfs_daemon, tmp_path):
    folder = write_tree(tmp_path / "folder", FILES)
    async with CountingClient(ipfs_daemon, timeout=30.0) as client:
        cid = await client.add_folder(folder)
        source = IpfsSource(client, tmp_path / "cache")
        paths = await asyncio.gather(*(source.prepare(volume(cid), tmp_path) for _ in range(5)))
        assert paths == [tmp_path / "cache" / cid] * 5
        assert client.gets == 1
        assert tree_of(paths[0]) == tree_of(folder)
        assert await source.prepare(volume(cid), tmp_path) == paths[0]
        assert client.gets == 1
        assert [p.name for p in (tmp_path / "cache").iterdir()] == [cid]


async def test_a_file_is_prepared_as_a_file(client, tmp_path):
    cid = await client.add_bytes(b"one file\n")
    path = await IpfsSource(client, tmp_path / "cache").prepare(volume(cid), tmp_path)
    assert path.read_bytes() == b"one file\n"


async def test_volumes_mount_the_prepared_cid(client, tmp_path):
    cid = await client.add_bytes(b"mounted\n")
    volumes = Volumes([IpfsSource(client, tmp_path / "cache")])
    (mount,) = await volumes.prepare([volume(cid)], field="Spec.inputs", scratch=tmp_path / "scratch")
    assert (mount.source.read_bytes(), mount.target, mount.read_only) == (b"mounted\n", "/inputs", True)


async def test_a_cid_is_local_when_the_cache_or_the_daemon_holds_it(client, tmp_path):
    source = IpfsSource(client, tmp_path / "cache", local_timeout=SHORT)
    on_daemon = await client.add_bytes(b"on the daemon")
    assert await source.is_local(volume(on_daemon))
    assert not await source.is_local(volume(missing_cid()))
    assert not await source.is_local(volume("../etc"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "QmOnlyInTheCache").write_bytes(b"")
    assert await source.is_local(volume("QmOnlyInTheCache"))


async def test_a_missing_cid_cannot_be_prepared(ipfs_daemon, tmp_path):
    cid = missing_cid()
    async with IpfsClient(ipfs_daemon, timeout=SHORT) as client:
        with pytest.raises(StorageError, match=f"could not fetch {cid} from IPFS: .*timed out"):
            await IpfsSource(client, tmp_path / "cache").prepare(volume(cid), tmp_path)
    assert not any((tmp_path / "cache").iterdir())


async def test_a_bad_cid_is_refused_before_any_call(client, tmp_path):
    with pytest.raises(StorageError, match=r"'\.\./x' is not a CID"):
        await IpfsSource(client, tmp_path / "cache").prepare(volume("../x"), tmp_path)


# -- the publisher -----------------------------------------------------------------------------------


def execution() -> Execution:
    return Execution(id="e-1", job=pb.Job(id="j-1"), shard_index=2, usage=pb.ResourceUsageData())


async def test_the_publisher_adds_the_result_folder(client, tmp_path):
    results = write_tree(
        tmp_path / "results",
        {"stdout": b"out\n", "stderr": b"", "exitCode": b"0", "outputs/answer.txt": b"42\n"},
    )
    result = RunResult(stdout=b"out\n", stderr=b"", exit_code=0, result_dir=results)
    spec = await IpfsPublisher(client, "node-a").publish(execution(), result)
    assert spec.storage_source == IPFS
    assert spec.name == "job-j-1-shard-2-host-node-a"
    assert spec.cid == folder_cid(results)
    assert spec.metadata == {"publisher": "Ipfs", "node_id": "node-a"}
    fetched = await client.get(spec.cid, tmp_path / "fetched")
    assert tree_of(fetched) == tree_of(results)


async def test_a_run_without_a_result_folder_publishes_its_streams(client, tmp_path):
    result = RunResult(stdout=b"hi\n", stderr=b"oops\n", exit_code=3)
    spec = await IpfsPublisher(client, "node-a").publish(execution(), result)
    fetched = await client.get(spec.cid, tmp_path / "fetched")
    assert tree_of(fetched) == {"stdout": b"hi\n", "stderr": b"oops\n", "exitCode": b"3"}


async def test_results_that_are_gone_cannot_be_published(client, tmp_path):
    publisher = IpfsPublisher(client, "node-a")
    with pytest.raises(PublisherError, match="the results of e-1 are gone"):
        await publisher.publish(execution(), None)
    result = RunResult(stdout=b"", stderr=b"", exit_code=0, result_dir=tmp_path / "nothing")
    with pytest.raises(PublisherError, match="the results of e-1 are gone"):
        await publisher.publish(execution(), result)


async def test_a_daemon_that_is_down_fails_the_publish_naming_it(tmp_path):
    results = write_tree(tmp_path / "results", {"stdout": b""})
    result = RunResult(stdout=b"", stderr=b"", exit_code=0, result_dir=results)
    async with IpfsClient("http://127.0.0.1:1", timeout=5.0) as client:
        with pytest.raises(
            PublisherError, match=r"could not publish the results of e-1 to IPFS: .*127\.0\.0\.1:1"
        ):
            await IpfsPublisher(client, "node-a").publish(execution(), result)
