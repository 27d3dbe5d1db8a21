"""Downloading a job's published results, laid out as Bacalhau v0.3's `get` does:

    <output dir>/raw/<cid>/                      each published CID, downloaded once
    <output dir>/per_shard/<i>_node_<id8>/       a full copy per (shard, node), exitCode included
    <output dir>/combined_results/               every result merged: stdout and stderr concatenated in
                                                 shard order, exitCode left out, the first file wins on
                                                 a clash, an empty folder for every declared output

Content comes from the requester's ContentService (which fetches what it does not hold from the compute
node that published it); each download is checked against its CID. Only published results are offered,
and results are published only once verified.

Every path component that comes from the network (CIDs, node IDs, output names) is checked with
`safe.check_component` before anything is written or removed, and every path written must resolve inside
the output folder: a hostile one is an UnsafePathError (a ValueError) naming it, and nothing is touched.
Archives are unpacked without links or `..` (`archive.unpack`).
"""

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.content import archive, safe
from bacalhau_grpc.common.content.store import ContentError, check_cid, folder_cid
from bacalhau_grpc.common.errors import NotFoundError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.pb.content.v1 import content_service_pb2 as cpb
from bacalhau_grpc.pb.content.v1 import content_service_pb2_grpc as cgrpc
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc

RAW, PER_SHARD, COMBINED = "raw", "per_shard", "combined_results"
REQUESTER_SERVICE = "bacalhau.requester.v1.RequesterService"
CONCATENATED = ("stdout", "stderr")
LEFT_OUT = ("exitCode",)
MAX_DOWNLOAD_BYTES = 100 * 1024**3

# Called with the bytes received so far (for a progress bar).
Progress = Callable[[int], None]
# The metadata of one call to the requester, from its full method name and request (signed calls).
CallMetadata = Callable[[str, Any], Any]


async def download_results(
    channel: grpc.aio.Channel,
    job_id: str,
    output_dir: Path,
    *,
    timeout: float = 300.0,
    progress: Progress | None = None,
    metadata: CallMetadata | None = None,
) -> list[pb.PublishedResult]:
    """Downloads every published result of the job into `output_dir`; returns them. NotFoundError("no
    results found") when the job has none (yet). `metadata(method, request)` gives each call to the
    requester its metadata (the SDK signs them)."""
    stub = rgrpc.RequesterServiceStub(channel)

    async def call(name: str, request: Any) -> Any:
        method = f"/{REQUESTER_SERVICE}/{name}"
        extra = metadata(method, request) if metadata is not None else None
        return await channels.call(getattr(stub, name), request, timeout=timeout, metadata=extra)

    job = (await call("GetJob", rpb.GetJobRequest(job_id=job_id))).job.job
    response = await call("GetJobResults", rpb.GetJobResultsRequest(job_id=job.id))
    results = sorted(response.results, key=lambda r: (r.shard_index, r.node_id))
    if not any(r.data.cid for r in results):
        raise NotFoundError(f"no results found for job {job.id}")
    outputs = [output.name for output in job.spec.outputs if output.name]
    shard_folders = _check_names(results, outputs)
    received = 0

    def count(size: int) -> None:
        nonlocal received
        received += size
        if progress is not None:
            progress(received)

    content = cgrpc.ContentServiceStub(channel)
    for cid in dict.fromkeys(r.data.cid for r in results if r.data.cid):
        target = safe.check_inside(output_dir / RAW / cid, output_dir / RAW)
        if not target.exists():
            await _download(content, cid, target, timeout=timeout, count=count)
    for result, name in zip((r for r in results if r.data.cid), shard_folders, strict=True):
        copy = safe.check_inside(output_dir / PER_SHARD / name, output_dir / PER_SHARD)
        if copy.is_symlink():
            copy.unlink()
        shutil.rmtree(copy, ignore_errors=True)
        _copy_tree(output_dir / RAW / result.data.cid, copy)
    combine([output_dir / RAW / r.data.cid for r in results if r.data.cid], output_dir / COMBINED, outputs)
    return results


def _check_names(results: list[pb.PublishedResult], outputs: list[str]) -> list[str]:
    """The per-shard folder name of each result with a CID, once every name from the network is checked
    (UnsafePathError naming the first bad one)."""
    for name in outputs:
        safe.check_component(name, what="the output name")
    names: list[str] = []
    for result in results:
        if not result.data.cid:
            continue
        check_cid(result.data.cid, field="PublishedResult.Data.CID")
        safe.check_component(result.node_id, what="the node ID")
        name = f"{result.shard_index}_node_{result.node_id[:8]}"
        names.append(safe.check_component(name, what="the per-shard folder name"))
    return names


def _copy_tree(source: Path, target: Path) -> None:
    """Copies the folders and regular files of `source` (links never followed) to the new `target`."""
    target.mkdir(parents=True)
    for relative, path, is_dir in safe.walk(source):
        if is_dir:
            (target / relative).mkdir()
        else:
            with safe.open_file(path) as src, (target / relative).open("xb") as out:
                shutil.copyfileobj(src, out)


async def _download(
    content: cgrpc.ContentServiceStub, cid: str, target: Path, *, timeout: float, count: Progress
) -> None:
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent.parent) as temp:
        tar_path = Path(temp) / "content.tar"
        with tar_path.open("wb") as tar:
            async for piece in channels.stream(
                content.FetchContent, cpb.FetchContentRequest(cid=cid), timeout=timeout
            ):
                tar.write(piece.chunk)
                count(len(piece.chunk))
        unpacked = Path(temp) / "content"
        unpacked.mkdir()
        archive.unpack(tar_path, unpacked, max_bytes=MAX_DOWNLOAD_BYTES)
        actual = folder_cid(unpacked)
        if actual != cid:
            raise ContentError(f"the content received for {cid} has CID {actual}: it was corrupted")
        target.parent.mkdir(parents=True, exist_ok=True)
        unpacked.rename(target)


def combine(folders: list[Path], combined: Path, outputs: list[str]) -> None:
    """Merges result folders in order: stdout/stderr concatenated, exitCode left out, first file wins."""
    combined.mkdir(parents=True, exist_ok=True)
    for name in outputs:
        (combined / name).mkdir(parents=True, exist_ok=True)
    for name in CONCATENATED:
        (combined / name).touch()
    for folder in folders:
        for relative, path, is_dir in safe.walk(folder):
            target = safe.check_inside(combined / relative, combined)
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
            elif relative in CONCATENATED:
                with target.open("ab") as out:
                    out.write(safe.read_bytes(path))
            elif relative not in LEFT_OUT and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                with safe.open_file(path) as src, target.open("xb") as out:
                    shutil.copyfileobj(src, out)
