"""The dashboard's HTTP server (aiohttp): three pages (network, jobs, job) served as static HTML shells that
a small vanilla script fills from JSON endpoints, live updates by Server-Sent Events, all of it read
through one SDK `Client` of the requester (gRPC, with the operator's TLS and key).

Safety: read-only unless `allow_cancel`; env values never leave the server (`hide_env`); pages are
fixed files (no job or node data is put into HTML on the server), the script builds the DOM with
textContent only, and every response carries a Content-Security-Policy that allows this origin's own
script and style and nothing inline. Cancel needs the per-process CSRF token, sent as a header by the page.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bacalhau_grpc.cli import output
from bacalhau_grpc.cli.nodes import node_dict
from bacalhau_grpc.common.errors import BacalhauError, NotFoundError
from bacalhau_grpc.common.model import enums, jobfile, pb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.sdk import Client, sdk_types
from bacalhau_grpc.sdk.client import to_pb

LOG = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"network": "network.html", "jobs": "jobs.html", "job": "job.html"}
PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
HIDDEN = "(hidden)"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# The states the jobs page filters by: "pending" (no row yet) and every JobStateType.
STATE_NAMES = {"pending": 0} | {
    enums.JOB_STATE_TYPE.name(value).lower(): value for value in pb.JobStateType.values() if value
}
ENDED = {
    pb.JobStateType.JOB_STATE_TYPE_COMPLETED,
    pb.JobStateType.JOB_STATE_TYPE_ERROR,
    pb.JobStateType.JOB_STATE_TYPE_CANCELLED,
}

CLIENT_KEY = web.AppKey("client", Client)
OPTIONS_KEY = web.AppKey("options", dict)


def make_app(
    client: Client, *, allow_cancel: bool = False, download_timeout: float = 300.0
) -> web.Application:
    """The dashboard as an aiohttp application over `client` (the caller closes the client)."""
    app = web.Application(middlewares=[_security_headers, _errors])
    app[CLIENT_KEY] = client
    app[OPTIONS_KEY] = {
        "allow_cancel": allow_cancel,
        "csrf": secrets.token_urlsafe(32),
        "download_timeout": download_timeout,
    }
    app.router.add_get("/", _root)
    app.router.add_get("/network", _page("network"))
    app.router.add_get("/jobs", _page("jobs"))
    app.router.add_get("/jobs/{job_id}", _page("job"))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/config", api_config)
    app.router.add_get("/api/nodes", api_nodes)
    app.router.add_get("/api/jobs", api_jobs)
    app.router.add_get("/api/jobs/{job_id}", api_job)
    app.router.add_get("/api/jobs/{job_id}/events", api_events)
    app.router.add_get("/api/jobs/{job_id}/logs", api_logs)
    app.router.add_get("/api/jobs/{job_id}/results.tar.gz", api_download)
    app.router.add_post("/api/jobs/{job_id}/cancel", api_cancel)
    app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
    return app


# ------------------------------------------------------------------------------------------- middleware


@web.middleware
async def _security_headers(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    response = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@web.middleware
async def _errors(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    """Requester errors as JSON (404 for a job or node it does not know, 502 otherwise)."""
    try:
        return await handler(request)
    except NotFoundError as err:
        return web.json_response({"error": str(err)}, status=404)
    except BacalhauError as err:
        return web.json_response({"error": str(err) or type(err).__name__}, status=502)


# ------------------------------------------------------------------------------------------------ pages


async def _root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/jobs")


def _page(name: str) -> Callable[[web.Request], Any]:
    async def serve(request: web.Request) -> web.StreamResponse:
        response = web.FileResponse(STATIC / PAGES[name])
        response.headers["Cache-Control"] = "no-store"
        return response

    return serve


# ------------------------------------------------------------------------------------------------- JSON


async def healthz(request: web.Request) -> web.Response:
    """200 when the requester answers (its version), 503 naming why when it does not: the probe Kubernetes
    and the devstack use."""
    client = request.app[CLIENT_KEY]
    try:
        await client.version()
    except BacalhauError as err:
        return web.json_response({"ok": False, "error": str(err) or type(err).__name__}, status=503)
    return web.json_response({"ok": True, "requester": client.address})


async def api_config(request: web.Request) -> web.Response:
    """What the pages need to know: whether cancel is enabled, the CSRF token, the dashboard's ClientID."""
    options = request.app[OPTIONS_KEY]
    client = request.app[CLIENT_KEY]
    return web.json_response(
        {
            "allow_cancel": options["allow_cancel"],
            "csrf": options["csrf"] if options["allow_cancel"] else "",
            "client_id": client.client_id,
            "requester": client.address,
            "states": list(STATE_NAMES),
            "page_sizes": list(PAGE_SIZES),
        },
        headers={"Cache-Control": "no-store"},
    )


async def api_nodes(request: web.Request) -> web.Response:
    client = request.app[CLIENT_KEY]
    found = [node_view(to_pb(node, rpb.Node)) async for node in client.nodes()]
    return web.json_response({"nodes": found})


def node_view(node: rpb.Node) -> dict[str, Any]:
    data = node_dict(node)
    total = node.info.total_capacity
    free = node.available_capacity if node.HasField("available_capacity") else total
    data["Capacity"] = {
        "CPU": [max(total.cpu - free.cpu, 0.0), total.cpu],
        "Memory": [max(total.memory - free.memory, 0), total.memory],
        "GPU": [max(total.gpu - free.gpu, 0), total.gpu],
    }
    return data


async def api_jobs(request: web.Request) -> web.Response:
    """One page of jobs (every client's), newest first unless `sort`/`order` say otherwise, filtered by
    `state` and an ID `prefix`; `page` counts from 0 (offset paging over the requester's pages)."""
    client = request.app[CLIENT_KEY]
    query = request.query
    state = query.get("state", "").strip().lower()
    if state and state not in STATE_NAMES:
        raise web.HTTPBadRequest(text=f"unknown state {state!r}")
    sort = query.get("sort", "created_at")
    if sort not in ("created_at", "id"):
        raise web.HTTPBadRequest(text="sort must be created_at or id")
    order = query.get("order", "desc")
    try:
        page = max(int(query.get("page", "0")), 0)
        size = int(query.get("size", str(DEFAULT_PAGE_SIZE)))
    except ValueError:
        raise web.HTTPBadRequest(text="page and size must be numbers") from None
    if size not in PAGE_SIZES:
        size = DEFAULT_PAGE_SIZE
    prefix = query.get("prefix", "").strip()[:64]
    found: list[dict[str, Any]] = []
    more = False
    index = 0
    async for job in client.list(
        all_clients=True,
        id_prefix=prefix,
        sort_by=sort,
        reverse=order != "asc",
        limit=(page + 1) * size + 1,
        page_size=min((page + 1) * size + 1, 1000),
        states=[sdk_types.JobStateType(STATE_NAMES[state])] if state else (),
    ):
        if index >= (page + 1) * size:
            more = True
            break
        if index >= page * size:
            found.append(job_row(to_pb(job, pb.Job)))
        index += 1
    return web.json_response({"jobs": found, "page": page, "size": size, "more": more})


def job_row(job: pb.Job) -> dict[str, Any]:
    shards = shard_counts(job, job.state)
    return {
        "ID": job.id,
        "Engine": enums.ENGINE.name(job.spec.engine) if job.spec.engine else "-",
        "Job": output.job_description(job),
        "State": output.state_name(output.job_state(job.state)),
        "ShardsDone": shards[0],
        "ShardsTotal": shards[1],
        "CreatedAt": output.format_time(job.created_at),
        "ClientID": job.client_id,
        "Annotations": list(job.spec.annotations),
    }


def shard_counts(job: pb.Job, state: pb.JobState) -> tuple[int, int]:
    """(shards with a row that completed, all the job's shards)."""
    total = max(job.execution_plan.total_shards, 1)
    done = {
        row.shard_index for row in output.rows(state) if row.state == pb.JobStateType.JOB_STATE_TYPE_COMPLETED
    }
    return len(done), total


async def api_job(request: web.Request) -> web.Response:
    client = request.app[CLIENT_KEY]
    info = to_pb(await client.get(request.match_info["job_id"]), pb.JobWithInfo)
    job = info.job
    state = info.job_state if info.job_state.nodes else job.state
    row = job_row(job)
    row["State"] = output.state_name(output.job_state(state))
    row["ShardsDone"], row["ShardsTotal"] = shard_counts(job, state)
    spec = hide_env(jobfile.message_to_dict(job.spec))
    deal = jobfile.message_to_dict(job.deal)
    grid: dict[str, dict[str, dict[str, str]]] = {}
    for cell in output.rows(state):
        grid.setdefault(cell.node_id, {})[str(cell.shard_index)] = {
            "State": output.state_name(cell.state),
            "Status": cell.status,
        }
    results = []
    for cell in output.rows(state):
        if cell.state == pb.JobStateType.JOB_STATE_TYPE_COMPLETED and cell.published_result.ListFields():
            results.append(
                {
                    "NodeID": cell.node_id,
                    "ShardIndex": cell.shard_index,
                    "Published": output.storage_text(cell.published_result),
                    "URL": cell.published_result.url,
                }
            )
    options = request.app[OPTIONS_KEY]
    ended = bool(grid) and all(
        c.state in ENDED for c in output.rows(state) if c.state != pb.JobStateType.JOB_STATE_TYPE_BIDDING
    )
    return web.json_response(
        {
            "job": row,
            "spec": spec,
            "deal": deal,
            "grid": grid,
            "shards": row["ShardsTotal"],
            "results": results,
            "trace_id": _trace_id(job),
            "ended": ended,
            "owner": job.client_id == client.client_id,
            "can_cancel": options["allow_cancel"] and job.client_id == client.client_id and not ended,
        },
        headers={"Cache-Control": "no-store"},
    )


def _trace_id(job: pb.Job) -> str:
    """The job's trace ID when the requester recorded one (no field carries it yet: empty)."""
    for name in ("trace_id",):
        if name in job.DESCRIPTOR.fields_by_name:
            return str(getattr(job, name))
    return ""


def hide_env(data: Any) -> Any:
    """`data` with the value of every environment variable replaced by "(hidden)" (names kept)."""
    if isinstance(data, dict):
        hidden = {}
        for key, value in data.items():
            if key.lower() in ("environmentvariables", "env", "environment"):
                hidden[key] = _hidden_values(value)
            else:
                hidden[key] = hide_env(value)
        return hidden
    if isinstance(data, list):
        return [hide_env(item) for item in data]
    return data


def _hidden_values(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): HIDDEN for k in value}
    if isinstance(value, list):
        return [f"{str(item).partition('=')[0]}={HIDDEN}" for item in value]
    return HIDDEN


# ------------------------------------------------------------------------------------------------- SSE


async def _sse(request: web.Request, items: AsyncIterator[tuple[str, Any]]) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    try:
        async for kind, data in items:
            payload = json.dumps(data, separators=(",", ":"))
            await response.write(f"event: {kind}\ndata: {payload}\n\n".encode())
        await response.write(b"event: end\ndata: {}\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except BacalhauError as err:
        payload = json.dumps({"error": str(err) or type(err).__name__})
        await response.write(f"event: failure\ndata: {payload}\n\n".encode())
    return response


async def api_events(request: web.Request) -> web.StreamResponse:
    """The job's events so far, then live ones (WatchJobEvents) until the job ends."""
    client = request.app[CLIENT_KEY]
    job = (await client.get(request.match_info["job_id"])).job
    job_id = job.id if job is not None else request.match_info["job_id"]

    async def items() -> AsyncIterator[tuple[str, Any]]:
        async for event in client.events(job_id, follow=True):
            message = to_pb(event, pb.JobEvent)
            nodes = message.source_node_id
            if message.target_node_id and message.target_node_id != message.source_node_id:
                nodes = f"{nodes} -> {message.target_node_id}"
            yield (
                "job-event",
                {
                    "Time": output.format_time(message.event_time),
                    "Event": output.event_name(message.event_name),
                    "Nodes": nodes,
                    "Shard": message.shard_index,
                    "Detail": output.event_detail(message),
                },
            )

    return await _sse(request, items())


async def api_logs(request: web.Request) -> web.StreamResponse:
    """What the job's executions write, live, each piece naming its execution, node, shard and stream."""
    client = request.app[CLIENT_KEY]
    job = (await client.get(request.match_info["job_id"])).job
    job_id = job.id if job is not None else request.match_info["job_id"]

    async def items() -> AsyncIterator[tuple[str, Any]]:
        async for piece in client.logs(job_id, follow=True):
            yield (
                "log",
                {
                    "Execution": piece.execution_id,
                    "Node": piece.node_id,
                    "Shard": piece.shard_index,
                    "Stream": "stderr" if piece.stderr else "stdout",
                    "Text": bytes(piece.data).decode("utf-8", "replace"),
                },
            )

    return await _sse(request, items())


# ---------------------------------------------------------------------------------------------- results


async def api_download(request: web.Request) -> web.StreamResponse:
    """The job's published results (as `get` lays them out) as one .tar.gz."""
    client = request.app[CLIENT_KEY]
    job = (await client.get(request.match_info["job_id"])).job
    job_id = job.id if job is not None else request.match_info["job_id"]
    folder = Path(tempfile.mkdtemp(prefix="dashboard-results-"))
    try:
        await client.download(
            job_id, folder / "results", timeout=request.app[OPTIONS_KEY]["download_timeout"]
        )
        archive = folder / "results.tar.gz"
        await asyncio.to_thread(_tar, folder / "results", archive, f"job-{job_id}")
        body = await asyncio.to_thread(archive.read_bytes)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return web.Response(
        body=body,
        content_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="job-{job_id[:36]}-results.tar.gz"'},
    )


def _tar(source: Path, archive: Path, name: str) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=name)


# ----------------------------------------------------------------------------------------------- cancel


async def api_cancel(request: web.Request) -> web.Response:
    """Cancels a job the dashboard's key owns, when the operator allowed it, with the page's CSRF token
    (header X-CSRF-Token) from this origin."""
    options = request.app[OPTIONS_KEY]
    if not options["allow_cancel"]:
        raise web.HTTPForbidden(text="cancel is disabled (start the dashboard with --allow-cancel)")
    token = request.headers.get("X-CSRF-Token", "")
    if not secrets.compare_digest(token.encode(), options["csrf"].encode()):
        raise web.HTTPForbidden(text="missing or wrong CSRF token")
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise web.HTTPForbidden(text="cross-origin request refused")
    client = request.app[CLIENT_KEY]
    job = (await client.get(request.match_info["job_id"])).job
    if job is None or job.client_id != client.client_id:
        raise web.HTTPForbidden(text="only the job's owner may cancel it")
    await client.cancel(job.id, reason="cancelled from the dashboard")
    return web.json_response({"cancelled": job.id})


# -------------------------------------------------------------------------------------------------- run


async def serve(
    client: Client, host: str, port: int, *, allow_cancel: bool, on_ready: Callable[[str], None]
) -> None:
    """Serves the dashboard until cancelled; `on_ready(url)` once it listens."""
    app = make_app(client, allow_cancel=allow_cancel)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    addresses = runner.addresses
    bound = addresses[0][1] if addresses else port
    shown = f"[{host}]" if ":" in host else host
    on_ready(f"http://{shown}:{bound}/")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
