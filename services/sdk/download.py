"""Downloading a job's published results, laid out as Bacalhau's `get` does (§3.8):

    <output dir>/raw/<cid>/                      each published CID, downloaded once
    <output dir>/per_shard/<i>_node_<id8>/       a full copy per (shard, node), exitCode included
    <output dir>/combined_results/               every result merged: stdout and stderr concatenated in
                                                 shard order, exitCode left out, the first file wins on
                                                 a clash, an empty folder for every declared output

Content comes from the requester's ContentService (which fetches what it does not hold from the compute
node that published it); each download is checked against its CID. Only published results are offered,
and results are published only once verified.
"""

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from bacalhau.content.v1 import content_service_pb2 as cpb
from bacalhau.content.v1 import content_service_pb2_grpc as cgrpc
from bacalhau.requester.v1 import requester_service_pb2 as rpb
from bacalhau.requester.v1 import requester_service_pb2_grpc as rgrpc
from bacalhau_grpc.common import channels
from bacalhau_grpc.common.content import archive
from bacalhau_grpc.common.content.store import ContentError, folder_cid
from bacalhau_grpc.common.errors import NotFoundError
from bacalhau_grpc.common.model import pb

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
    received = 0

    def count(size: int) -> None:
        nonlocal received
        received += size
        if progress is not None:
            progress(received)

    content = cgrpc.ContentServiceStub(channel)
    for cid in dict.fromkeys(r.data.cid for r in results if r.data.cid):
        target = output_dir / RAW / cid
        if not target.exists():
            await _download(content, cid, target, timeout=timeout, count=count)
    for result in results:
        if result.data.cid:
            copy = output_dir / PER_SHARD / f"{result.shard_index}_node_{result.node_id[:8]}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(output_dir / RAW / result.data.cid, copy)
    combine(
        [output_dir / RAW / r.data.cid for r in results if r.data.cid],
        output_dir / COMBINED,
        [output.name for output in job.spec.outputs if output.name],
    )
    return results


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
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            target = combined / relative
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif relative.as_posix() in CONCATENATED:
                with target.open("ab") as out:
                    out.write(path.read_bytes())
            elif relative.as_posix() not in LEFT_OUT and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
