"""What every part of the dashboard's server shares: its options, the application keys of the SDK client
and the options, and reading the job an address names."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

from aiohttp import web

from bacalhau_grpc.common.errors import NotFoundError
from bacalhau_grpc.sdk import Client, sdk_types

CLIENT_KEY = web.AppKey("client", Client)


@dataclass
class Options:
    """How this dashboard runs (`make_app`'s arguments), and what is open now."""

    allow_cancel: bool
    download_timeout: float
    download_max_bytes: int
    max_streams: int
    # The Host header values (name, without port) requests may carry; None: any.
    allowed_hosts: frozenset[str] | None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    streams: int = 0  # live views (SSE) open
    downloads: int = 0  # results archives being made


OPTIONS_KEY = web.AppKey("options", Options)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def bad_request(message: str) -> web.HTTPBadRequest:
    """400 with `{"error": message}`, as every refusal of the dashboard's API."""
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def forbidden(message: str) -> web.HTTPForbidden:
    """403 with `{"error": message}`."""
    return web.HTTPForbidden(text=json.dumps({"error": message}), content_type="application/json")


async def job_info(request: web.Request) -> sdk_types.JobWithInfo:
    """The job the address names (its ID or a unique prefix), without its state rows and events."""
    found = await request.app[CLIENT_KEY].get(request.match_info["job_id"], events=False, shard_states=False)
    if found.job is None:
        raise NotFoundError(f"job {request.match_info['job_id']} not found")
    return found


async def job_of(request: web.Request) -> sdk_types.Job:
    job = (await job_info(request)).job
    assert job is not None
    return job
