"""The job's published results: the list the job page shows (`api_results`) and all of them as one
.tar.gz (`api_download`), at most MAX_DOWNLOADS archives made at once."""

from __future__ import annotations

import asyncio
import shutil
import tarfile
import tempfile
from pathlib import Path

from aiohttp import web

from bacalhau_grpc.cli import output
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.dashboard.context import CLIENT_KEY, OPTIONS_KEY, job_of
from bacalhau_grpc.sdk.client import to_pb
from bacalhau_grpc.sdk.download import DownloadTooLargeError

RESULTS_SHOWN = 100
MAX_DOWNLOADS = 4
DOWNLOAD_MAX_BYTES = 1024**3  # a results archive: what the dashboard fetches for it at most


async def api_results(request: web.Request) -> web.Response:
    """The job's published results (the first RESULTS_SHOWN), each with its node, shard and where it is."""
    client = request.app[CLIENT_KEY]
    found = await client.results(request.match_info["job_id"])
    shown = []
    for result in found[:RESULTS_SHOWN]:
        message = to_pb(result, pb.PublishedResult)
        shown.append(
            {
                "NodeID": message.node_id,
                "ShardIndex": message.shard_index,
                "Published": output.storage_text(message.data),
                "URL": message.data.url,
            }
        )
    return web.json_response({"results": shown, "total": len(found)}, headers={"Cache-Control": "no-store"})


async def api_download(request: web.Request) -> web.StreamResponse:
    """The job's published results (as `get` lays them out) as one .tar.gz, made in a temporary folder and
    sent from the file; at most MAX_DOWNLOADS made at once (each fetches every result): past that, 503."""
    options = request.app[OPTIONS_KEY]
    client = request.app[CLIENT_KEY]
    job_id = (await job_of(request)).id
    if options.downloads >= MAX_DOWNLOADS:
        return web.json_response(
            {"error": f"{MAX_DOWNLOADS} results archives are being made; try again shortly"},
            status=503,
            headers={"Retry-After": "10"},
        )
    options.downloads += 1
    folder = Path(tempfile.mkdtemp(prefix="dashboard-results-"))
    try:
        try:
            await client.download(
                job_id,
                folder / "results",
                timeout=options.download_timeout,
                max_bytes=options.download_max_bytes,
            )
        except DownloadTooLargeError as err:
            return web.json_response(
                {"error": f"{err} (--max-download-mb): download them with `bacalhau-grpc get {job_id}`"},
                status=502,
            )
        archive = folder / "results.tar.gz"
        await asyncio.to_thread(_tar, folder / "results", archive, f"job-{job_id}")
        response = web.FileResponse(
            archive,
            headers={
                "Content-Type": "application/gzip",
                "Content-Disposition": f'attachment; filename="job-{job_id[:36]}-results.tar.gz"',
            },
        )
        await response.prepare(request)
        await response.write_eof()
        return response
    finally:
        options.downloads -= 1
        await asyncio.to_thread(shutil.rmtree, folder, True)


def _tar(source: Path, archive: Path, name: str) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=name)
