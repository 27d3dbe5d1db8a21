"""What the CLI prints: tables, event lines, job summaries, JSON and YAML documents."""

import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from google.protobuf.timestamp_pb2 import Timestamp

from bacalhau_grpc.common.model import enums, jobfile, jobs, pb, serialization

_S = pb.JobStateType
_E = pb.JobEventType
CELL_WIDTH = 20  # Go's list cuts cells to 20 characters + "..."


def short_node_id(node_id: str) -> str:
    """`node-1a2b3c4d5e6f` → `node-1a2b3c`; an ID without a `<kind>-` prefix → its first 8 characters."""
    kind, dash, rest = node_id.rpartition("-")
    if dash and kind and rest:
        return f"{kind}-{rest[:6]}"
    return jobs.short_id(node_id)


def format_time(ts: Timestamp, *, wide: bool = True) -> str:
    """RFC 3339 in UTC with microseconds (wide) or HH:MM:SS (Go's list); "-" when unset."""
    if not ts.seconds and not ts.nanos:
        return "-"
    moment = datetime.fromtimestamp(ts.seconds, tz=UTC).replace(microsecond=ts.nanos // 1000)
    if not wide:
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_name(event_type: int) -> str:
    return enums.JOB_EVENT_TYPE.name(event_type)


def state_name(state: int) -> str:
    return enums.JOB_STATE_TYPE.name(state) if state else "Pending"


def event_line(event: pb.JobEvent) -> str:
    """One line per event: time, event name, node(s), shard, and what the event says."""
    nodes = short_node_id(event.source_node_id) if event.source_node_id else "-"
    if event.target_node_id and event.target_node_id != event.source_node_id:
        nodes = f"{nodes} -> {short_node_id(event.target_node_id)}"
    parts = [
        format_time(event.event_time),
        f"{event_name(event.event_name):<16}",
        f"{nodes:<32}",
        f"shard {event.shard_index}",
    ]
    detail = event_detail(event)
    if detail:
        parts.append(detail)
    return "  ".join(parts).rstrip()


def event_detail(event: pb.JobEvent) -> str:
    details = []
    if event.status:
        details.append(event.status)
    if event.event_name == _E.JOB_EVENT_TYPE_RESULTS_PROPOSED and event.HasField("run_output"):
        details.append(f"exit code {jobs.run_exit_code(event.run_output)}")
    if event.HasField("published_result") and event.published_result.ListFields():
        details.append(f"published: {storage_text(event.published_result)}")
    return "; ".join(details)


def log_piece(piece: Any) -> dict[str, Any]:
    """One piece of an execution's output (a StreamJobLogsResponse) as `logs -o json` and the dashboard
    show it: ExecutionID, NodeID, ShardIndex, Stream (stdout or stderr) and Data as text."""
    return {
        "ExecutionID": piece.execution_id,
        "NodeID": piece.node_id,
        "ShardIndex": piece.shard_index,
        "Stream": "stderr" if piece.stderr else "stdout",
        "Data": bytes(piece.data).decode("utf-8", errors="replace"),
    }


def storage_text(spec: pb.StorageSpec) -> str:
    source = enums.STORAGE_SOURCE_TYPE.name(spec.storage_source) if spec.storage_source else ""
    where = spec.cid or spec.url or spec.name
    if spec.metadata and not where:
        where = ", ".join(f"{k}={v}" for k, v in sorted(spec.metadata.items()))
    return " ".join(part for part in (source, where) if part) or "-"


def rows(state: pb.JobState) -> list[pb.JobShardState]:
    """Every (node, shard) row of a job's state, ordered by node then shard."""
    return [node.shards[index] for _, node in sorted(state.nodes.items()) for index in sorted(node.shards)]


def job_state(state: pb.JobState) -> int:
    """The job's state as Go's `list` shows it: the highest state over all rows; 0 when none yet."""
    return max((row.state for row in rows(state)), default=0)


def job_description(job: pb.Job) -> str:
    """The `job` column: the engine and what it runs."""
    spec = job.spec
    engine = enums.ENGINE.name(spec.engine) if spec.engine else "-"
    if spec.engine == pb.Engine.ENGINE_DOCKER:
        return " ".join([engine, spec.docker.image, *spec.docker.entrypoint]).strip()
    if spec.engine == pb.Engine.ENGINE_WASM:
        return f"{engine} {spec.wasm.entry_point}".strip()
    if spec.engine in (pb.Engine.ENGINE_LANGUAGE, pb.Engine.ENGINE_PYTHON_WASM):
        return f"{engine} {spec.language.command or spec.language.program_path}".strip()
    return engine


def verified_text(job: pb.Job, state: pb.JobState) -> str:
    """Empty for the noop verifier, else "<accepted>/<concurrency * shards>" (Go's `list`)."""
    if job.spec.verifier != pb.Verifier.VERIFIER_DETERMINISTIC:
        return ""
    accepted = sum(
        1 for row in rows(state) if row.verification_result.complete and row.verification_result.result
    )
    wanted = max(job.deal.concurrency, 1) * max(job.execution_plan.total_shards, 1)
    return f"{accepted}/{wanted}"


def published_text(state: pb.JobState) -> str:
    for row in rows(state):
        if row.state == _S.JOB_STATE_TYPE_COMPLETED and row.published_result.ListFields():
            return storage_text(row.published_result)
    return ""


def cut(text: str, wide: bool) -> str:
    return text if wide or len(text) <= CELL_WIDTH else text[:CELL_WIDTH] + "..."


def jobs_table(job_list: Sequence[pb.Job], *, wide: bool = False, header: bool = True) -> str:
    headers = ["CREATED", "ID", "JOB", "STATE", "VERIFIED", "PUBLISHED"]
    body = []
    for job in job_list:
        created = format_time(job.created_at, wide=wide)
        if wide and created != "-":
            created = created[:19]
        body.append(
            [
                created,
                job.id if wide else jobs.short_id(job.id),
                cut(job_description(job), wide),
                state_name(job_state(job.state)),
                verified_text(job, job.state),
                cut(published_text(job.state), wide),
            ]
        )
    return table(headers if header else None, body)


def table(headers: Sequence[str] | None, body: Iterable[Sequence[str]]) -> str:
    all_rows = ([list(headers)] if headers else []) + [list(row) for row in body]
    if not all_rows:
        return ""
    widths = [max(len(row[i]) for row in all_rows) for i in range(len(all_rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in all_rows
    )


def jobs_document(job_list: Sequence[pb.Job], fmt: str) -> str:
    """The jobs as a JSON or YAML list (however many: Go's 1,000-object limit guards input, not this)."""
    data = [jobfile.message_to_dict(job) for job in job_list]
    if fmt == "json":
        return serialization.json_marshal_indent_with_max(data, max_objects=None).decode("utf-8")
    return serialization.yaml_marshal_with_max(data, max_objects=None).decode("utf-8").rstrip("\n")


def result_lines(info: pb.JobWithInfo) -> list[str]:
    """Per node and shard: the state, the exit code, the first line of stdout and the published result."""
    state = info.job_state if info.job_state.nodes else info.job.state
    lines = []
    for row in rows(state):
        if row.state in (_S.JOB_STATE_TYPE_BIDDING, _S.JOB_STATE_TYPE_CANCELLED) and not row.status:
            continue
        bits = [state_name(row.state)]
        if row.HasField("run_output"):
            bits.append(f"exit code {jobs.run_exit_code(row.run_output)}")
        if row.published_result.ListFields():
            bits.append(f"published: {storage_text(row.published_result)}")
        if row.status:
            bits.append(row.status)
        lines.append(f"  {short_node_id(row.node_id)} shard {row.shard_index}: {'; '.join(bits)}")
        if row.HasField("run_output") and row.run_output.stdout:
            first = row.run_output.stdout.splitlines()[0] if row.run_output.stdout.strip() else ""
            lines.append(f"    stdout: {first}")
    return lines


# ------------------------------------------------------------------------------------ streamed documents


class Streamed:
    """A mapping (items: (key, value) pairs) or a list (items: values) of a document that `write_streamed`
    writes as its items arrive; values may hold further `Streamed` parts."""

    def __init__(self, kind: Literal["map", "list"], items: AsyncIterator[Any]) -> None:
        self.kind = kind
        self.items = items


class _Lines:
    """Writes lines, holding back the last one so a JSON comma can still be added to it."""

    def __init__(self, write: Callable[[str], object]) -> None:
        self._write = write
        self._pending: str | None = None

    def add(self, line: str) -> None:
        if self._pending is not None:
            self._write(self._pending + "\n")
        self._pending = line

    def append(self, text: str) -> None:
        self._pending = (self._pending or "") + text

    def close(self) -> None:
        if self._pending is not None:
            self._write(self._pending + "\n")
            self._pending = None


async def write_streamed(data: Any, fmt: Literal["yaml", "json"], write: Callable[[str], object]) -> None:
    """Write `data` as `jobfile.dump_job` lays a document out (YAML, or JSON indented by 4), with its
    `Streamed` parts written item by item as they arrive: a document too big to hold whole."""
    lines = _Lines(write)
    await _emit(data, fmt, lines, indent=0, strip=False, hole_prefix=f"zzstreamed{secrets.token_hex(6)}z")
    lines.close()


async def _emit(
    data: Any, fmt: Literal["yaml", "json"], lines: _Lines, *, indent: int, strip: bool, hole_prefix: str
) -> None:
    holes: list[Streamed] = []

    def placeholder(value: Any) -> Any:
        if isinstance(value, Streamed):
            holes.append(value)
            return f"{hole_prefix}{len(holes) - 1}"
        if isinstance(value, dict):
            return {key: placeholder(item) for key, item in value.items()}
        if isinstance(value, list):
            return [placeholder(item) for item in value]
        return value

    plain = placeholder(data)
    if fmt == "yaml":
        text = serialization.yaml_marshal_with_max(plain, max_objects=None).decode("utf-8")
    else:
        text = serialization.json_marshal_indent_with_max(plain, max_objects=None).decode("utf-8")
    rows = text.rstrip("\n").split("\n")
    if strip:  # a JSON entry or item: without the braces of the one-entry document it was written in
        rows = rows[1:-1]
    pad = " " * indent
    for row in rows:
        at = row.find(hole_prefix) if holes else -1
        if at < 0:
            lines.add(pad + row if row else row)  # a quoted scalar's empty line stays empty
            continue
        quoted = fmt == "json"
        end = at + len(hole_prefix)
        while end < len(row) and row[end].isdigit():
            end += 1
        part = holes[int(row[at + len(hole_prefix) : end])]
        head = row[: at - 1] if quoted else row[:at].rstrip()
        tail = row[end + 1 :] if quoted else ""
        level = indent + len(row) - len(row.lstrip(" "))
        await _emit_part(part, fmt, lines, pad + head, tail, level, hole_prefix)


async def _emit_part(
    part: Streamed,
    fmt: Literal["yaml", "json"],
    lines: _Lines,
    head: str,
    tail: str,
    level: int,
    hole_prefix: str,
) -> None:
    empty = "{}" if part.kind == "map" else "[]"
    first = True
    async for item in part.items:
        entry = {item[0]: item[1]} if part.kind == "map" else [item]
        if fmt == "yaml":
            if first:
                lines.add(head)
            child = level + 2 if part.kind == "map" else level
            await _emit(entry, fmt, lines, indent=child, strip=False, hole_prefix=hole_prefix)
        else:
            if first:
                lines.add(head + ("{" if part.kind == "map" else "["))
            else:
                lines.append(",")
            await _emit(entry, fmt, lines, indent=level, strip=True, hole_prefix=hole_prefix)
        first = False
    if first:
        lines.add(f"{head} {empty}{tail}" if fmt == "yaml" else f"{head}{empty}{tail}")
    elif fmt == "json":
        lines.add(" " * level + empty[1] + tail)
