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
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from bacalhau_grpc.cli import output
from bacalhau_grpc.cli.nodes import node_dict
from bacalhau_grpc.common.errors import BacalhauError, InvalidArgumentError, NotFoundError
from bacalhau_grpc.common.model import enums, jobfile, pb
from bacalhau_grpc.dashboard.shard_grid import STATE_NAMES as CELL_STATES
from bacalhau_grpc.dashboard.shard_grid import ShardGrid
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.sdk import Client, sdk_types
from bacalhau_grpc.sdk.client import to_pb

LOG = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"network": "network.html", "jobs": "jobs.html", "job": "job.html"}
PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
HIDDEN = "(hidden)"
# The job page's live view: at most one update every FLUSH_SECONDS, each with at most TIMELINE_LIMIT events;
# the events read ahead of a slow page are at most BATCH_LIMIT.
FLUSH_SECONDS = 0.25
TIMELINE_LIMIT = 500
BATCH_LIMIT = 10_000
RESULTS_SHOWN = 100
T = TypeVar("T")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# The states the jobs page filters by: "pending" (no row yet) and every JobStateType.
FILTER_STATES = {"pending": 0} | {
    enums.JOB_STATE_TYPE.name(value).lower(): value for value in pb.JobStateType.values() if value
}

CLIENT_KEY = web.AppKey("client", Client)
OPTIONS_KEY = web.AppKey("options", dict)


def make_app(
    client: Client, *, allow_cancel: bool = False, download_timeout: float = 300.0, max_streams: int = 64
) -> web.Application:
    """The dashboard as an aiohttp application over `client` (the caller closes the client)."""
    app = web.Application(middlewares=[_security_headers, _errors])
    app[CLIENT_KEY] = client
    app[OPTIONS_KEY] = {
        "allow_cancel": allow_cancel,
        "csrf": secrets.token_urlsafe(32),
        "download_timeout": download_timeout,
        "max_streams": max_streams,
        "streams": 0,
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
    app.router.add_get("/api/jobs/{job_id}/live", api_live)
    app.router.add_get("/api/jobs/{job_id}/results", api_results)
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
    except InvalidArgumentError as err:
        return web.json_response({"error": str(err)}, status=400)
    except BacalhauError as err:
        return web.json_response({"error": str(err) or type(err).__name__}, status=502)


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


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
            "states": list(FILTER_STATES),
            "page_sizes": list(PAGE_SIZES),
            "cell_states": CELL_STATES,
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
    `state` and an ID `prefix`: the requester's page (server-side paging), `cursor` being the `next` of
    the page before (empty for the first)."""
    client = request.app[CLIENT_KEY]
    query = request.query
    state = query.get("state", "").strip().lower()
    if state and state not in FILTER_STATES:
        raise _bad_request(f"unknown state {state!r}: one of {', '.join(FILTER_STATES)}")
    sort = query.get("sort", "created_at")
    if sort not in ("created_at", "id"):
        raise _bad_request(f"unknown sort {sort!r}: created_at or id")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise _bad_request(f"unknown order {order!r}: asc or desc")
    size_text = query.get("size", str(DEFAULT_PAGE_SIZE))
    if size_text not in {str(n) for n in PAGE_SIZES}:
        raise _bad_request(f"page size must be one of {', '.join(map(str, PAGE_SIZES))}")
    page = await client.list_page(
        all_clients=True,
        id_prefix=query.get("prefix", "").strip()[:64],
        sort_by=sort,
        reverse=order == "desc",
        page_size=int(size_text),
        states=[sdk_types.JobStateType(FILTER_STATES[state])] if state else (),
        page_token=query.get("cursor", "")[:4096],
    )
    return web.json_response(
        {"jobs": [job_row(job) for job in page.jobs], "next": page.next_page_token},
        headers={"Cache-Control": "no-store"},
    )


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
    """The job's overview (no state rows, no events: the live stream carries those): what it runs, its
    spec and deal with env values hidden, its trace ID, and whether this dashboard may cancel it."""
    client = request.app[CLIENT_KEY]
    info = to_pb(
        await client.get(request.match_info["job_id"], events=False, shard_states=False), pb.JobWithInfo
    )
    job = info.job
    options = request.app[OPTIONS_KEY]
    owner = job.client_id == client.client_id
    return web.json_response(
        {
            "job": job_row(job),
            "spec": hide_env(jobfile.message_to_dict(job.spec)),
            "deal": jobfile.message_to_dict(job.deal),
            "trace_id": info.trace_id,
            "owner": owner,
            "can_cancel": options["allow_cancel"] and owner,
        },
        headers={"Cache-Control": "no-store"},
    )


async def _job_info(request: web.Request) -> sdk_types.JobWithInfo:
    """The job the address names (its ID or a unique prefix), without its state rows and events."""
    found = await request.app[CLIENT_KEY].get(request.match_info["job_id"], events=False, shard_states=False)
    if found.job is None:
        raise NotFoundError(f"job {request.match_info['job_id']} not found")
    return found


async def _job(request: web.Request) -> sdk_types.Job:
    job = (await _job_info(request)).job
    assert job is not None
    return job


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
    """Streams `items` as Server-Sent Events (`event: kind`, `data: JSON`); a requester error
    ends the stream with a `failure` event naming it. At most `max_streams` at once (each holds one
    stream on the requester): past that, 503."""
    options = request.app[OPTIONS_KEY]
    if options["streams"] >= options["max_streams"]:
        return web.json_response(
            {"error": f"too many live views open ({options['max_streams']}); close one and reload"},
            status=503,
            headers={"Retry-After": "5"},
        )
    options["streams"] += 1
    try:
        return await _stream_events(request, items)
    finally:
        options["streams"] -= 1


async def _stream_events(request: web.Request, items: AsyncIterator[tuple[str, Any]]) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    try:
        async for kind, data in items:
            payload = json.dumps(data, separators=(",", ":"))
            await response.write(f"event: {kind}\ndata: {payload}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except BacalhauError as err:
        payload = json.dumps({"error": str(err) or type(err).__name__})
        await response.write(f"event: failure\ndata: {payload}\n\n".encode())
    return response


async def api_live(request: web.Request) -> web.StreamResponse:
    """The job page's live view over SSE: first `grid` (every cell, from the job's state rows read page by
    page), then an `update` at most every FLUSH_SECONDS with the cells that changed, the new events (at
    most TIMELINE_LIMIT per update) and the count so far, until the job ends: then `end`. The events come
    from WatchJobEvents starting TIMELINE_LIMIT events before the newest the job had when the page
    opened (so the timeline starts full; those are in the snapshot already and change no cell's state).
    The page never re-reads the whole job."""
    client = request.app[CLIENT_KEY]
    info = await _job_info(request)
    job = info.job
    assert job is not None
    total = job.execution_plan.total_shards if job.execution_plan else 0
    after = max(info.event_count - TIMELINE_LIMIT, 0)
    grid = ShardGrid(total)
    async for row in client.shard_rows(job.id):
        grid.put(row.node_id, row.shard_index, row.state, row.status)

    async def items() -> AsyncIterator[tuple[str, Any]]:
        yield "grid", grid.snapshot()
        count = after
        async for batch in _batches(client.events(job.id, follow=True, after=after), FLUSH_SECONDS):
            timeline: deque[tuple[int, sdk_types.JobEvent]] = deque(maxlen=TIMELINE_LIMIT)
            for event in batch:
                count += 1
                node = event.target_node_id or event.source_node_id
                grid.apply(int(event.event_name), node, event.shard_index, event.status)
                timeline.append((count, event))
            yield (
                "update",
                {
                    "grid": grid.changes(),
                    "events": [_event_item(sequence, event) for sequence, event in timeline],
                    "event_count": count,
                },
            )
        yield "end", {"summary": grid.summary(), "event_count": count}

    return await _sse(request, items())


async def _batches(items: AsyncIterator[T], seconds: float) -> AsyncIterator[list[T]]:
    """`items` in lists: whatever arrived, at most one list every `seconds` (the first at once). A reader
    behind the producer by BATCH_LIMIT items holds it back."""
    queue: asyncio.Queue[T | _Done] = asyncio.Queue(maxsize=BATCH_LIMIT)

    async def pump() -> None:
        try:
            async for item in items:
                await queue.put(item)
        finally:
            await queue.put(_DONE)

    task = asyncio.create_task(pump())
    try:
        done = False
        while not done:
            batch: list[T] = []
            first = await queue.get()
            while True:
                if isinstance(first, _Done):
                    done = True
                    break
                batch.append(first)
                if queue.empty():
                    break
                first = queue.get_nowait()
            if batch:
                yield batch
            if not done:
                await asyncio.sleep(seconds)
        await task  # raises what the producer raised
    finally:
        task.cancel()


class _Done:
    """The end of `_batches`' input."""


_DONE = _Done()


def _event_item(sequence: int, event: sdk_types.JobEvent) -> dict[str, Any]:
    message = to_pb(event, pb.JobEvent)
    nodes = message.source_node_id
    if message.target_node_id and message.target_node_id != message.source_node_id:
        nodes = f"{nodes} -> {message.target_node_id}"
    return {
        "Sequence": sequence,
        "Time": output.format_time(message.event_time),
        "Event": output.event_name(message.event_name),
        "Nodes": nodes,
        "Shard": message.shard_index,
        "Detail": output.event_detail(message),
    }


async def api_logs(request: web.Request) -> web.StreamResponse:
    """What the job's executions write, live, each piece naming its execution, node, shard and stream."""
    client = request.app[CLIENT_KEY]
    shard_text = request.query.get("shard", "")
    if shard_text and not shard_text.isdigit():
        raise _bad_request(f"shard must be a shard index (0, 1, ...), not {shard_text[:20]!r}")
    job = await _job(request)

    async def items() -> AsyncIterator[tuple[str, Any]]:
        shard = int(shard_text) if shard_text else None
        async for piece in client.logs(job.id, shard_index=shard, follow=True):
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
        yield "end", {}

    return await _sse(request, items())


# ---------------------------------------------------------------------------------------------- results


async def api_download(request: web.Request) -> web.StreamResponse:
    """The job's published results (as `get` lays them out) as one .tar.gz."""
    client = request.app[CLIENT_KEY]
    job_id = (await _job(request)).id
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
    job = await _job(request)
    if job.client_id != client.client_id:
        raise web.HTTPForbidden(text="only the job's owner may cancel it")
    await client.cancel(job.id, reason="cancelled from the dashboard")
    return web.json_response({"cancelled": job.id})


# -------------------------------------------------------------------------------------------------- run


async def serve(
    client: Client,
    host: str,
    port: int,
    *,
    allow_cancel: bool,
    max_streams: int,
    on_ready: Callable[[str], None],
) -> None:
    """Serves the dashboard until cancelled; `on_ready(url)` once it listens."""
    app = make_app(client, allow_cancel=allow_cancel, max_streams=max_streams)
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
