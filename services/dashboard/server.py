"""The dashboard's HTTP server (aiohttp): three pages (network, jobs, job) served as static HTML shells that
a small vanilla script fills from JSON endpoints, live updates by Server-Sent Events (`live.py`), the
results (`results.py`), all of it read through one SDK `Client` of the requester (gRPC, with the
operator's TLS and key). This module: the application, its middleware, the pages, the JSON of nodes, jobs
and a job's overview, cancel, and `serve`.

Safety: read-only unless `allow_cancel`; env values never leave the server (`hide_env`); pages are
fixed files (no job or node data is put into HTML on the server), the script builds the DOM with
textContent only, and every response carries a Content-Security-Policy that allows this origin's own
script and style and nothing inline. Cancel needs the per-process CSRF token, sent as a header by the page.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from bacalhau_grpc.cli import output
from bacalhau_grpc.cli.nodes import node_dict
from bacalhau_grpc.common.errors import BacalhauError, InvalidArgumentError, NotFoundError
from bacalhau_grpc.common.model import enums, jobfile, pb
from bacalhau_grpc.dashboard.context import (
    CLIENT_KEY,
    LOOPBACK_HOSTS,
    OPTIONS_KEY,
    Options,
    bad_request,
    forbidden,
    job_of,
)
from bacalhau_grpc.dashboard.live import api_live, api_logs
from bacalhau_grpc.dashboard.results import DOWNLOAD_MAX_BYTES, api_download, api_results
from bacalhau_grpc.dashboard.shard_grid import STATE_NAMES as CELL_STATES
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.sdk import Client, sdk_types
from bacalhau_grpc.sdk.client import to_pb

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
FILTER_STATES = {"pending": 0} | {
    enums.JOB_STATE_TYPE.name(value).lower(): value for value in pb.JobStateType.values() if value
}


def make_app(
    client: Client,
    *,
    allow_cancel: bool = False,
    download_timeout: float = 300.0,
    download_max_bytes: int = DOWNLOAD_MAX_BYTES,
    max_streams: int = 64,
    allowed_hosts: Iterable[str] | None = None,
) -> web.Application:
    """The dashboard as an aiohttp application over `client` (the caller closes the client).
    `allowed_hosts`: the host names requests may be addressed to (their Host header; a page of another
    site that rebinds its DNS name to this address is refused); None: any."""
    app = web.Application(middlewares=[_security_headers, _allowed_host, _errors])
    app[CLIENT_KEY] = client
    app[OPTIONS_KEY] = Options(
        allow_cancel=allow_cancel,
        download_timeout=download_timeout,
        download_max_bytes=download_max_bytes,
        max_streams=max_streams,
        allowed_hosts=None if allowed_hosts is None else frozenset(h.lower() for h in allowed_hosts),
    )
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
async def _allowed_host(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    """Refuses a request addressed to a host name this dashboard does not serve (DNS rebinding)."""
    allowed = request.app[OPTIONS_KEY].allowed_hosts
    if allowed is not None and request.path != "/healthz":  # probes ask by address
        host = (request.host or "").lower()
        name = host.rpartition("]")[0] + "]" if host.startswith("[") else host.partition(":")[0]
        if name not in allowed:
            return web.json_response(
                {"error": f"this dashboard does not serve the host {host[:100]!r} (see --allowed-host)"},
                status=421,
            )
    return await handler(request)


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
            "allow_cancel": options.allow_cancel,
            "csrf": options.csrf if options.allow_cancel else "",
            "client_id": client.client_id,
            "requester": client.address,
            "states": list(FILTER_STATES),
            "page_sizes": list(PAGE_SIZES),
            "cell_states": CELL_STATES,
        },
        headers={"Cache-Control": "no-store"},
    )


async def api_nodes(request: web.Request) -> web.Response:
    """The compute nodes (ListNodes), and the requester itself: its address and build."""
    client = request.app[CLIENT_KEY]
    version = await client.version()
    found = [node_view(to_pb(node, rpb.Node)) async for node in client.nodes()]
    return web.json_response(
        {"requester": {"Address": client.address, "Version": version.git_version}, "nodes": found}
    )


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
        raise bad_request(f"unknown state {state!r}: one of {', '.join(FILTER_STATES)}")
    sort = query.get("sort", "created_at")
    if sort not in ("created_at", "id"):
        raise bad_request(f"unknown sort {sort!r}: created_at or id")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request(f"unknown order {order!r}: asc or desc")
    size_text = query.get("size", str(DEFAULT_PAGE_SIZE))
    if size_text not in {str(n) for n in PAGE_SIZES}:
        raise bad_request(f"page size must be one of {', '.join(map(str, PAGE_SIZES))}")
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
            "can_cancel": options.allow_cancel and owner,
        },
        headers={"Cache-Control": "no-store"},
    )


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


# ----------------------------------------------------------------------------------------------- cancel


async def api_cancel(request: web.Request) -> web.Response:
    """Cancels a job the dashboard's key owns, when the operator allowed it, with the page's CSRF token
    (header X-CSRF-Token) from this origin."""
    options = request.app[OPTIONS_KEY]
    if not options.allow_cancel:
        raise forbidden("cancel is disabled (start the dashboard with --allow-cancel)")
    token = request.headers.get("X-CSRF-Token", "")
    if not secrets.compare_digest(token.encode(), options.csrf.encode()):
        raise forbidden("missing or wrong CSRF token")
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise forbidden("cross-origin request refused")
    client = request.app[CLIENT_KEY]
    job = await job_of(request)
    if job.client_id != client.client_id:
        raise forbidden("only the job's owner may cancel it")
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
    download_max_bytes: int,
    allowed_hosts: Iterable[str] | None,
    on_ready: Callable[[str], None],
    stop: asyncio.Event,
) -> None:
    """Serves the dashboard until `stop` is set (or it is cancelled); `on_ready(url)` once it listens.
    `allowed_hosts` None: the loopback names when `host` is a loopback address, else any."""
    if allowed_hosts is None and host in LOOPBACK_HOSTS:
        allowed_hosts = LOOPBACK_HOSTS
    app = make_app(
        client,
        allow_cancel=allow_cancel,
        max_streams=max_streams,
        download_max_bytes=download_max_bytes,
        allowed_hosts=allowed_hosts,
    )
    # A page that goes away cancels its handler: a live view ends (and frees its slot) at once.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    addresses = runner.addresses
    bound = addresses[0][1] if addresses else port
    shown = f"[{host}]" if ":" in host else host
    on_ready(f"http://{shown}:{bound}/")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
