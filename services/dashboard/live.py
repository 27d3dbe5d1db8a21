"""The dashboard's live views, as Server-Sent Events: a job page's grid and timeline (`api_live`) and its
executions' logs (`api_logs`), each holding one stream on the requester, at most `max_streams` at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any, TypeVar

from aiohttp import web

from bacalhau_grpc.cli import output
from bacalhau_grpc.common.errors import BacalhauError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.dashboard.context import CLIENT_KEY, OPTIONS_KEY, bad_request, job_info, job_of
from bacalhau_grpc.dashboard.shard_grid import ShardGrid
from bacalhau_grpc.sdk import Client

# The job page's live view: at most one update every FLUSH_SECONDS, each with at most TIMELINE_LIMIT events;
# the events read ahead of a slow page are at most BATCH_LIMIT.
FLUSH_SECONDS = 0.25
TIMELINE_LIMIT = 500
BATCH_LIMIT = 10_000
QUIET_SECONDS = 15.0  # a live view with nothing to say sends `ping` this often
T = TypeVar("T")


@contextlib.contextmanager
def live_view(request: web.Request) -> Iterator[None]:
    """One of the `max_streams` live views (each holds one stream on the requester), taken before any call
    to the requester: past that, 503."""
    options = request.app[OPTIONS_KEY]
    if options.streams >= options.max_streams:
        raise web.HTTPServiceUnavailable(
            text=json.dumps(
                {"error": f"too many live views open ({options.max_streams}); close one and reload"}
            ),
            content_type="application/json",
            headers={"Retry-After": "5"},
        )
    options.streams += 1
    try:
        yield
    finally:
        options.streams -= 1


async def sse(request: web.Request, items: AsyncGenerator[tuple[str, Any], None]) -> web.StreamResponse:
    """Streams `items` as Server-Sent Events (`event: kind`, `data: JSON`); a requester error ends the
    stream with a `failure` event naming it. `items` is closed when the page goes away."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    try:
        async with contextlib.aclosing(items):
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
    with live_view(request):
        client = request.app[CLIENT_KEY]
        info = await job_info(request)
        job = info.job
        assert job is not None
        after = max(info.event_count - TIMELINE_LIMIT, 0)
        grid = ShardGrid(job.execution_plan.total_shards if job.execution_plan else 0)
        async for row in client.shard_rows(job.id):
            grid.put(row.node_id, row.shard_index, row.state, row.status)
        return await sse(request, _live_items(client, job.id, grid, after, info.event_count))


async def _live_items(
    client: Client, job_id: str, grid: ShardGrid, after: int, known: int
) -> AsyncGenerator[tuple[str, Any], None]:
    """`api_live`'s events: the snapshot, the updates from the events after the `after`-th, `caught_up`
    past the `known`-th, the end."""
    yield "grid", grid.snapshot()
    count = after
    async for batch in batches(client.event_messages(job_id, follow=True, after=after), FLUSH_SECONDS):
        if not batch:  # a quiet job: a comment-like event keeps proxies from closing the stream
            yield "ping", {}
            continue
        timeline: deque[tuple[int, pb.JobEvent]] = deque(maxlen=TIMELINE_LIMIT)
        for count, event in batch:
            grid.apply(
                event.event_name,
                event.target_node_id or event.source_node_id,
                event.shard_index,
                event.status,
            )
            timeline.append((count, event))
        yield (
            "update",
            {
                "grid": grid.changes(),
                "events": [_event_item(sequence, event) for sequence, event in timeline],
                "event_count": count,
                "caught_up": count >= known,
            },
        )
    yield "end", {"summary": grid.summary(), "event_count": count}


async def batches(
    items: AsyncIterator[T], seconds: float, quiet: float = QUIET_SECONDS
) -> AsyncGenerator[list[T], None]:
    """`items` in lists: whatever arrived, at most one list every `seconds` (the first at once), an empty
    one after `quiet` seconds without any; then what the producer raised, if anything. A reader behind the
    producer by BATCH_LIMIT items holds it back."""
    queue: asyncio.Queue[T] = asyncio.Queue(maxsize=BATCH_LIMIT)

    async def pump() -> None:
        async for item in items:
            await queue.put(item)

    producer = asyncio.create_task(pump())
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, producer}, timeout=quiet, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                if not producer.done():  # quiet for `quiet` seconds: an empty list
                    yield []
                    continue
                producer.result()  # it ended, and everything it made was taken
                return
            batch = [getter.result()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            yield batch
            await asyncio.sleep(seconds)
    finally:
        producer.cancel()


def _event_item(sequence: int, message: pb.JobEvent) -> dict[str, Any]:
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
    if shard_text and not (shard_text.isdigit() and len(shard_text) <= 9):
        raise bad_request(f"shard must be a shard index (0, 1, ...), not {shard_text[:20]!r}")
    with live_view(request):
        job = await job_of(request)
        return await sse(request, _log_items(client, job.id, int(shard_text) if shard_text else None))


async def _log_items(client: Client, job_id: str, shard: int | None) -> AsyncGenerator[tuple[str, Any], None]:
    async for piece in client.logs(job_id, shard_index=shard, follow=True):
        yield "log", output.log_piece(piece)
    yield "end", {}
