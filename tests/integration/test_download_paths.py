"""Downloads stay in their folder: a requester (a real gRPC server answering GetJob and GetJobResults with
hostile names) and a ContentService serving real or hostile archives. Every bad name is a clear error and
nothing outside the output folder is touched (a sentinel beside it survives)."""

import io
import tarfile
from pathlib import Path

import pytest

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.content.safe import UnsafePathError
from bacalhau_grpc.common.content.service import SERVICE_NAME, ContentServiceServicer
from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.server import ServiceBinding, start_server
from bacalhau_grpc.pb.content.v1 import content_service_pb2 as cpb
from bacalhau_grpc.pb.content.v1 import content_service_pb2_grpc as cgrpc
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from bacalhau_grpc.sdk.download import REQUESTER_SERVICE, download_results

JOB_ID = "job-1"


class HostileRequester(rgrpc.RequesterServiceServicer):
    """Answers GetJob and GetJobResults with the results and output names it is given."""

    def __init__(self, results: list[pb.PublishedResult], outputs: list[str]) -> None:
        self.results = results
        self.outputs = outputs

    async def GetJob(self, request, context):
        job = pb.Job(api_version="V1beta1", id=JOB_ID)
        for name in self.outputs:
            job.spec.outputs.append(pb.StorageSpec(name=name, path="/outputs"))
        response = rpb.GetJobResponse()
        response.job.job.CopyFrom(job)
        return response

    async def GetJobResults(self, request, context):
        return rpb.GetJobResultsResponse(results=self.results)


class HostileContent(cgrpc.ContentServiceServicer):
    """Serves one crafted tar for every CID."""

    def __init__(self, tar: bytes) -> None:
        self.tar = tar

    async def FetchContent(self, request, context):
        yield cpb.FetchContentResponse(chunk=self.tar)


async def serve(tmp_path: Path, requester, content):
    server = await start_server(
        component="download-test",
        node_id="requester",
        services=[
            ServiceBinding(rgrpc.add_RequesterServiceServicer_to_server, requester, REQUESTER_SERVICE),
            ServiceBinding(cgrpc.add_ContentServiceServicer_to_server, content, SERVICE_NAME),
        ],
    )
    return server, channels.open_channel(server.address)


def published(cid: str, node_id: str, shard: int = 0) -> pb.PublishedResult:
    result = pb.PublishedResult(node_id=node_id, shard_index=shard)
    result.data.CopyFrom(pb.StorageSpec(name="job-1", cid=cid))
    return result


@pytest.fixture
def layout(tmp_path):
    """A store holding one result folder, the output folder inside `home/`, and a sentinel file and a
    folder named like a per-shard copy beside it (what `..` tricks would reach)."""
    store = ContentStore(tmp_path / "store")
    results = tmp_path / "results"
    (results / "outputs").mkdir(parents=True)
    (results / "outputs" / "ok.txt").write_text("ok")
    (results / "stdout").write_text("out")
    cid = store.add_folder(results)
    home = tmp_path / "home"
    home.mkdir()
    (home / "sentinel").write_text("keep me")
    (tmp_path / "sentinel").write_text("keep me too")
    return store, cid, home / "out", tmp_path


def untouched(root: Path) -> None:
    assert (root / "home" / "sentinel").read_text() == "keep me"
    assert (root / "sentinel").read_text() == "keep me too"
    assert sorted(p.name for p in (root / "home").iterdir()) in (["out", "sentinel"], ["sentinel"])


@pytest.mark.parametrize(
    ("node_id", "words"),
    [
        ("/", "holds a '/'"),
        ("..", "is '..'"),
        ("/../../.", "holds a '/'"),
        ("../../x", "holds a '/'"),
        ("node\0x", "NUL"),
        ("n" * 300, "longer than 255 bytes"),
        ("", "is empty"),
    ],
)
async def test_a_hostile_node_id_is_an_error_and_nothing_outside_is_touched(layout, node_id, words):
    store, cid, out, root = layout
    out.mkdir()
    requester = HostileRequester([published(cid, "good-node"), published(cid, node_id, 1)], ["outputs"])
    server, channel = await serve(root, requester, ContentServiceServicer(store))
    try:
        with pytest.raises(UnsafePathError, match=words):
            await download_results(channel, JOB_ID, out)
    finally:
        await channel.close()
        await server.stop(0)
    untouched(root)
    assert list(out.iterdir()) == []  # checked before anything is written


@pytest.mark.parametrize("name", ["..", "../../home", "a/b", "."])
async def test_a_hostile_output_name_is_an_error(layout, name):
    store, cid, out, root = layout
    out.mkdir()
    server, channel = await serve(
        root, HostileRequester([published(cid, "node-1")], [name]), ContentServiceServicer(store)
    )
    try:
        with pytest.raises(UnsafePathError, match="the output name"):
            await download_results(channel, JOB_ID, out)
    finally:
        await channel.close()
        await server.stop(0)
    untouched(root)
    assert list(out.iterdir()) == []


def tar_of(name: str, *, link: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        if link:
            info.type = tarfile.SYMTYPE
            info.linkname = link
            archive.addfile(info)
        else:
            info.size = 2
            archive.addfile(info, io.BytesIO(b"hi"))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("tar", "words"),
    [
        (tar_of("../../sentinel"), "would land outside"),
        (tar_of("/etc/x"), "would land outside"),
        (tar_of("link", link="/etc/passwd"), "is a link or a special file"),
    ],
)
async def test_hostile_file_names_inside_results_are_an_error(layout, tar, words):
    _, cid, out, root = layout
    out.mkdir()
    server, channel = await serve(root, HostileRequester([published(cid, "node-1")], []), HostileContent(tar))
    try:
        with pytest.raises(ValueError, match=words):
            await download_results(channel, JOB_ID, out)
    finally:
        await channel.close()
        await server.stop(0)
    untouched(root)
    assert [p for p in out.rglob("*") if p.is_file()] == []


async def test_good_names_download_as_before(layout):
    store, cid, out, root = layout
    out.mkdir()
    server, channel = await serve(
        root,
        HostileRequester([published(cid, "node-abcdefghij")], ["outputs"]),
        ContentServiceServicer(store),
    )
    try:
        await download_results(channel, JOB_ID, out)
    finally:
        await channel.close()
        await server.stop(0)
    assert (out / "per_shard" / "0_node_node-abc" / "outputs" / "ok.txt").read_text() == "ok"
    assert (out / "combined_results" / "outputs" / "ok.txt").read_text() == "ok"
    untouched(root)
