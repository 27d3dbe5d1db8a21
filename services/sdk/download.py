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
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.content import archive, safe
from bacalhau_grpc.common.content.store import ContentError, check_cid, folder_cid
from bacalhau_grpc.common.errors import NotFoundError, ResourceExhaustedError
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


class DownloadTooLargeError(ResourceExhaustedError):
    """The job's results are more than the download may take (`max_bytes`)."""


# Called with the bytes received so far (the archives' bytes, as they arrive).
Progress = Callable[[int], None]
# Called with (done, total): the bytes of result files received so far and the size of all the files to
# download, first with (0, total) and last with (total, total) (for a bar with a total, rate and ETA).
OnProgress = Callable[[int, int], None]
# The metadata of one call to the requester, from its full method name and request (signed calls).
CallMetadata = Callable[[str, Any], Any]


async def download_results(
    channel: grpc.aio.Channel,
    job_id: str,
    output_dir: Path,
    *,
    timeout: float = 300.0,
    progress: Progress | None = None,
    on_progress: OnProgress | None = None,
    metadata: CallMetadata | None = None,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> list[pb.PublishedResult]:
    """Downloads every published result of the job into `output_dir`; returns them. NotFoundError("no
    results found") when the job has none (yet). `metadata(method, request)` gives each call to the
    requester its metadata (the SDK signs them). `on_progress(done, total)`: see OnProgress (the sizes
    come from StatContent, asked only when it is given). DownloadTooLargeError (a ResourceExhaustedError)
    as soon as the archives received pass `max_bytes` in all."""
    stub = rgrpc.RequesterServiceStub(channel)

    async def call(name: str, request: Any) -> Any:
        method = f"/{REQUESTER_SERVICE}/{name}"
        extra = metadata(method, request) if metadata is not None else None
        return await channels.call(getattr(stub, name), request, timeout=timeout, metadata=extra)

    # The spec only: a job of many shards has more events and rows than one message may carry.
    request = rpb.GetJobRequest(job_id=job_id, exclude_events=True, exclude_shard_states=True)
    job = (await call("GetJob", request)).job.job
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
        if received > max_bytes:
            raise DownloadTooLargeError(
                f"the results of job {job.id} are more than the {max_bytes:,} bytes this download may take"
            )
        if progress is not None:
            progress(received)

    content = cgrpc.ContentServiceStub(channel)
    missing = [
        cid
        for cid in dict.fromkeys(r.data.cid for r in results if r.data.cid)
        if not safe.check_inside(output_dir / RAW / cid, output_dir / RAW).exists()
    ]
    total = done = 0
    if on_progress is not None:
        for cid in missing:
            stat = await channels.call(content.StatContent, cpb.StatContentRequest(cid=cid), timeout=timeout)
            total += stat.size
        on_progress(0, total)

    def count_file_bytes(size: int) -> None:
        nonlocal done
        done += size
        if on_progress is not None and size:
            on_progress(min(done, total), total)

    for cid in missing:
        await _download(
            content,
            cid,
            output_dir / RAW / cid,
            timeout=timeout,
            count=count,
            files=count_file_bytes,
            max_bytes=max_bytes,
        )
    if on_progress is not None and done != total:  # the sizes changed meanwhile: end at what was received
        on_progress(done, done)
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
    content: cgrpc.ContentServiceStub,
    cid: str,
    target: Path,
    *,
    timeout: float,
    count: Progress,
    files: Progress,
    max_bytes: int,
) -> None:
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent.parent) as temp:
        tar_path = Path(temp) / "content.tar"
        file_bytes = TarFileBytes()
        with tar_path.open("wb") as tar:
            async for piece in channels.stream(
                content.FetchContent, cpb.FetchContentRequest(cid=cid), timeout=timeout
            ):
                tar.write(piece.chunk)
                count(len(piece.chunk))
                files(file_bytes.feed(piece.chunk))
        unpacked = Path(temp) / "content"
        unpacked.mkdir()
        archive.unpack(tar_path, unpacked, max_bytes=max_bytes)
        actual = folder_cid(unpacked)
        if actual != cid:
            raise ContentError(f"the content received for {cid} has CID {actual}: it was corrupted")
        target.parent.mkdir(parents=True, exist_ok=True)
        unpacked.rename(target)


class TarFileBytes:
    """Counts the bytes of regular files' contents in a tar stream fed piece by piece: headers (ustar, pax,
    GNU long names), padding and the end blocks are left out, so the sum matches StatContent's size."""

    def __init__(self) -> None:
        self._header = bytearray()
        self._skip = 0  # bytes left in the current entry, padding included
        self._data = 0  # of which file content still to count
        self._pax: bytearray | None = None  # a pax extended header being read
        self._pax_size: int | None = None  # its size=, for the next entry

    def feed(self, chunk: bytes) -> int:
        """The file bytes in `chunk`."""
        counted, at, view = 0, 0, memoryview(chunk)
        while at < len(view):
            if self._skip:
                n = min(self._skip, len(view) - at)
                taken = min(n, self._data)
                counted += taken
                self._data -= taken
                if self._pax is not None:
                    self._pax += view[at : at + n]
                self._skip -= n
                at += n
                if not self._skip and self._pax is not None:
                    self._pax_size = _pax_size(bytes(self._pax))
                    self._pax = None
                continue
            n = min(tarfile.BLOCKSIZE - len(self._header), len(view) - at)
            self._header += view[at : at + n]
            at += n
            if len(self._header) == tarfile.BLOCKSIZE:
                self._entry(bytes(self._header))
                self._header.clear()
        return counted

    def _entry(self, header: bytes) -> None:
        if not header.strip(b"\0"):
            return  # an end block
        size, kind = _tar_number(header[124:136]), header[156:157]
        if self._pax_size is not None and kind not in (b"x", b"g"):
            size, self._pax_size = self._pax_size, None
        self._skip = -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        self._data = size if kind in tarfile.REGULAR_TYPES else 0
        if kind == b"x":
            self._pax = bytearray()


def _tar_number(field: bytes) -> int:
    if field[0] & 0x80:  # GNU base-256
        return int.from_bytes(field[1:], "big")
    text = field.replace(b"\0", b" ").strip()
    return int(text, 8) if text else 0


def _pax_size(records: bytes) -> int | None:
    """The size= of pax extended header records ("<length> <key>=<value>\\n" each), if any."""
    at = 0
    while at < len(records):
        space = records.find(b" ", at)
        if space < 0:
            break
        try:
            length = int(records[at:space])
        except ValueError:
            break
        if length <= 0:
            break
        key, _, value = records[space + 1 : at + length - 1].partition(b"=")
        if key == b"size":
            return int(value)
        at += length
    return None


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
