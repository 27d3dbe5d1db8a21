"""The dashboard's live views, as Server-Sent Events: a job page's grid and timeline (`api_live`) and its
executions' logs (`api_logs`), each holding one stream on the requester, at most `max_streams` at once."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from aiohttp import web

from bacalhau_grpc.cli import output
from bacalhau_grpc.common.errors import BacalhauError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.dashboard.context import CLIENT_KEY, OPTIONS_KEY, bad_request, job_info, job_of
from bacalhau_grpc.dashboard.shard_grid import ShardGrid
from bacalhau_grpc.sdk import sdk_types
from bacalhau_grpc.sdk.client import to_pb

# The job page's live view: at most one update every FLUSH_SECONDS, each with at most TIMELINE_LIMIT events;
# the events read ahead of a slow page are at most BATCH_LIMIT.
FLUSH_SECONDS = 0.25
TIMELINE_LIMIT = 500
BATCH_LIMIT = 10_000
T = TypeVar("T")


async def sse(request: web.Request, items: AsyncIterator[tuple[str, Any]]) -> web.StreamResponse:
    """Streams `items` as Server-Sent Events (`event: kind`, `data: JSON`); a requester error
    ends the stream with a `failure` event naming it. At most `max_streams` at once (each holds one
    stream on the requester): past that, 503."""
    options = request.app[OPTIONS_KEY]
    if options.streams >= options.max_streams:
        return web.json_response(
            {"error": f"too many live views open ({options.max_streams}); close one and reload"},
            status=503,
            headers={"Retry-After": "5"},
        )
    options.streams += 1
    try:
        return await _stream_events(request, items)
    finally:
        options.streams -= 1


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
    opened (so the timeline starts full; those are in the snapshot already and change no cell's state);
    `caught_up` once it has sent the events the job had then. The page never re-reads the whole job."""
    client = request.app[CLIENT_KEY]
    info = await job_info(request)
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
                    "caught_up": count >= info.event_count,
                },
            )
        yield "end", {"summary": grid.summary(), "event_count": count}

    return await sse(request, items())


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
        raise bad_request(f"shard must be a shard index (0, 1, ...), not {shard_text[:20]!r}")
    job = await job_of(request)

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

    return await sse(request, items())
