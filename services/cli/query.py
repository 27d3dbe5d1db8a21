"""Looking at jobs, on the SDK: `list`, `describe`, `events`, `logs`, `wait`, `cancel`, `get`, `version`."""

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import yaml

from bacalhau_grpc.cli import flags, follow, output, progress
from bacalhau_grpc.common.errors import FailedPreconditionError, LimitExceededError
from bacalhau_grpc.common.model import enums, jobfile, pb, serialization, version
from bacalhau_grpc.sdk import Client, WaitTimeoutError, sdk_types
from bacalhau_grpc.sdk.client import to_pb

FORMATS = ("table", "json", "yaml")
STREAM_FORMATS = ("text", "json", "yaml")
# The states `list --state` takes: a job's summary state, as the STATE column shows it.
STATE_NAMES = {"pending": 0} | {
    enums.JOB_STATE_TYPE.name(value).lower(): value for value in pb.JobStateType.values() if value
}


def add_parsers(commands) -> None:
    _add_list(commands)
    _add_describe(commands)
    _add_events(commands)
    _add_logs(commands)
    _add_wait(commands)
    _add_cancel(commands)
    _add_get(commands)
    _add_version(commands)


def _add_timeout_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for each call to the requester (default 10)",
    )


def _client(args: argparse.Namespace) -> Client:
    return flags.api_client(args, timeout=args.timeout)


# For the other query commands (`cli.nodes`).
add_timeout_flag = _add_timeout_flag
api_client = _client


async def _get_job(client: Client, job_id: str) -> sdk_types.Job:
    """The job `job_id` (an ID or a unique prefix) names; the requester's answer always holds it."""
    job = (await client.get(job_id)).job
    if job is None:
        raise flags.CommandError(f"the requester answered without the job {job_id}")
    return job


# -------------------------------------------------------------------------------------------------- list


def _add_list(commands) -> None:
    parser = commands.add_parser(
        "list",
        help="list jobs",
        description="List your jobs (or everyone's with --all), newest first: the table shows the time, the "
        "short ID, what runs, the state, how many results were verified and where the result is published.",
        epilog="examples:\n  bacalhau-grpc list -n 50\n  bacalhau-grpc list --id-filter 3f2a --output yaml\n"
        "  bacalhau-grpc list --all --sort-by id --no-reverse --include-tag demo\n"
        "  bacalhau-grpc list --all --state Error --state Cancelled",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--id-filter", default="", help="only jobs whose ID starts with this")
    parser.add_argument(
        "-n", "--number", type=_positive, default=10, help="how many jobs to show, after sorting (default 10)"
    )
    parser.add_argument(
        "--sort-by", choices=("created_at", "id"), default="created_at", help="(default created_at)"
    )
    flags.add_bool_flag(
        parser,
        "reverse",
        default=True,
        help="newest (or highest ID) first (default true; --reverse=false or --no-reverse: oldest first)",
    )
    parser.add_argument("-o", "--output", choices=FORMATS, default="table", help="(default table)")
    parser.add_argument("--include-tag", action="append", default=[], help="only jobs with this annotation")
    parser.add_argument("--exclude-tag", action="append", default=[], help="no job with this annotation")
    parser.add_argument(
        "--state",
        action="append",
        default=[],
        type=_state,
        metavar="STATE",
        help="only jobs in this state, as the STATE column shows it (repeatable; the requester filters): "
        + ", ".join(_state_label(value) for value in sorted(set(STATE_NAMES.values()))),
    )
    parser.add_argument("--all", action="store_true", help="jobs of every client, not only yours")
    parser.add_argument("--client-id", help="whose jobs to list (default: yours, see `bacalhau-grpc id`)")
    parser.add_argument("--hide-header", action="store_true", help="no header row")
    parser.add_argument("--no-style", action="store_true", help="plain table (it always is; for scripts)")
    parser.add_argument("--wide", action="store_true", help="full IDs and cells")
    flags.add_api_flags(parser)
    _add_timeout_flag(parser)
    parser.set_defaults(handler=run_async(cmd_list))


async def cmd_list(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        found = [
            to_pb(job, pb.Job)
            async for job in client.list(
                all_clients=args.all,
                client_id=args.client_id,
                id_prefix=args.id_filter,
                include_tags=args.include_tag,
                exclude_tags=args.exclude_tag,
                sort_by=args.sort_by,
                reverse=args.reverse,
                limit=args.number,
                states=[sdk_types.JobStateType(state) for state in args.state],
            )
        ]
    if args.output == "table":
        text = output.jobs_table(found, wide=args.wide, header=not args.hide_header)
    else:
        text = output.jobs_document(found, args.output)
    if text:
        print(text)
    return 0


# ---------------------------------------------------------------------------------------------- describe


def _add_describe(commands) -> None:
    parser = commands.add_parser(
        "describe",
        help="show a job with its state and events",
        description="Show a job in the job file shape (YAML by default): its spec, deal and execution plan, "
        "its state per node and shard, and its events (v0.3 showed them only with --include-events).",
        epilog="examples:\n  bacalhau-grpc describe 3f2a1b9c\n  bacalhau-grpc describe 3f2a1b9c -o json\n"
        "  bacalhau-grpc describe 3f2a1b9c --include-events=false   # without JobEvents and JobLocalEvents",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("id", help="the job's ID or a unique prefix of it")
    parser.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="(default yaml)")
    parser.add_argument("--json", action="store_true", help="the same as --output json")
    flags.add_bool_flag(
        parser,
        "include-events",
        default=True,
        help="show the job's events, JobEvents and JobLocalEvents (default true; --include-events=false or "
        "--no-include-events leaves them out)",
    )
    parser.add_argument("--spec", action="store_true", help="accepted as v0.3 did; the spec is always shown")
    flags.add_api_flags(parser)
    _add_timeout_flag(parser)
    parser.set_defaults(handler=run_async(cmd_describe))


async def cmd_describe(args: argparse.Namespace) -> int:
    fmt: Literal["yaml", "json"] = "json" if args.json else args.output
    async with _client(args) as client:
        try:
            info = to_pb(await client.get(args.id, events=args.include_events), pb.JobWithInfo)
            text = jobfile.dump_job(info, format=fmt)
        except (FailedPreconditionError, LimitExceededError) as error:
            # Too big to answer or write whole: the same document, its shard states and events paged.
            if isinstance(error, LimitExceededError) and error.limit != "MaxSerializedStringOutput":
                raise
            await _describe_paged(client, args.id, include_events=args.include_events, fmt=fmt)
            return 0
    print(text.rstrip("\n"))
    return 0


async def _describe_paged(
    client: Client, job_id: str, *, include_events: bool, fmt: Literal["yaml", "json"]
) -> None:
    """`describe` of a job too big for one GetJob answer (or one document in memory): the job without
    its shard states (and events, when even that is too big), then its shard states from ListJobShards
    and its events from ListJobEvents, written as they arrive."""
    paged_events = False
    try:
        head = to_pb(await client.get(job_id, events=include_events, shard_states=False), pb.JobWithInfo)
    except FailedPreconditionError:
        if not include_events:
            raise
        head = to_pb(await client.get(job_id, events=False, shard_states=False), pb.JobWithInfo)
        paged_events = True
    job_id = head.job.id
    head.job.state.nodes.get_or_create("")  # placeholders: their places in the document
    head.job_state.nodes.get_or_create("")
    if paged_events:
        head.job_events.add()
    data = jobfile.message_to_dict(head)
    data["Job"]["JobState"]["Nodes"] = output.Streamed("map", _node_entries(client, job_id))
    data["JobState"]["Nodes"] = output.Streamed("map", _node_entries(client, job_id))
    if paged_events:
        data["JobEvents"] = output.Streamed("list", _event_items(client, job_id))
        print(
            "describe: the job's local events (JobLocalEvents) are left out: too many to read with the job",
            file=sys.stderr,
        )
    await output.write_streamed(data, fmt, sys.stdout.write)
    sys.stdout.flush()


async def _node_entries(client: Client, job_id: str) -> AsyncIterator[tuple[str, object]]:
    """The job's JobState.Nodes entries from ListJobShards pages (ordered by node ID): each node's
    Shards mapping streamed in turn."""
    rows = aiter(client.shard_rows(job_id))

    async def following() -> pb.JobShardState | None:
        return await anext(rows, None)

    current = [await following()]

    async def shards(node_id: str) -> AsyncIterator[tuple[str, object]]:
        while (row := current[0]) is not None and row.node_id == node_id:
            yield str(row.shard_index), jobfile.message_to_dict(row)
            current[0] = await following()

    while current[0] is not None:
        node_id = current[0].node_id
        yield node_id, {"Shards": output.Streamed("map", shards(node_id))}


async def _event_items(client: Client, job_id: str) -> AsyncIterator[object]:
    async for _, event in client.event_messages(job_id):
        yield jobfile.message_to_dict(event)


# ------------------------------------------------------------------------------------------------ events


def _add_events(commands) -> None:
    parser = commands.add_parser(
        "events",
        help="show a job's events, one per line",
        description="Show a job's events in order: time, event, node(s), shard and what happened.",
        epilog="examples:\n  bacalhau-grpc events 3f2a1b9c\n  bacalhau-grpc events 3f2a1b9c --follow",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("id", help="the job's ID or a unique prefix of it")
    parser.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new events until the job ends"
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=STREAM_FORMATS,
        default="text",
        help="text: one line per event (default); json: one JSON object per event and line (JSON Lines); "
        "yaml: one YAML document per event",
    )
    flags.add_api_flags(parser)
    _add_timeout_flag(parser)
    parser.set_defaults(
        handler=run_async(cmd_events), interrupted="Printout canceled (the job is still running)."
    )


async def cmd_events(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        job_id = args.id
        if args.follow:  # the stream needs the full ID
            job_id = (await _get_job(client, args.id)).id
        async for _, message in client.event_messages(job_id, follow=args.follow):
            if args.output == "text":
                print(output.event_line(message), flush=True)
            else:
                print(stream_item(jobfile.message_to_dict(message), args.output), flush=True)
    return 0


def stream_item(data: object, fmt: str) -> str:
    """One item of a streamed listing (`events`, `logs`): a JSON line, or a YAML document."""
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return "---\n" + serialization.yaml_marshal_with_max(data, max_objects=None).decode("utf-8").rstrip("\n")


# -------------------------------------------------------------------------------------------------- logs


def _add_logs(commands) -> None:
    parser = commands.add_parser(
        "logs",
        help="show what a job's executions write to stdout and stderr",
        description="Show the stdout and stderr of a job's executions: live while they run with --follow, "
        "else what they wrote so far (for a finished execution, the output its results carry). stdout goes "
        "to stdout and stderr to stderr; with several executions each line is prefixed with its node and "
        "shard.",
        epilog="examples:\n  bacalhau-grpc logs 3f2a1b9c\n  bacalhau-grpc logs 3f2a1b9c --follow --shard 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("id", help="the job's ID or a unique prefix of it")
    parser.add_argument(
        "--follow", "-f", action="store_true", help="keep streaming until every execution ended"
    )
    parser.add_argument("--shard", type=int, help="only this shard's executions")
    parser.add_argument("--node", default="", help="only executions on this node (its ID or a prefix)")
    parser.add_argument(
        "-o",
        "--output",
        choices=STREAM_FORMATS,
        default="text",
        help="text: the output as written (default); json: one JSON object per piece of output and line "
        "(ExecutionID, NodeID, ShardIndex, Stream stdout/stderr, Data as text), on stdout; yaml: one YAML "
        "document per piece",
    )
    flags.add_api_flags(parser)
    _add_timeout_flag(parser)
    parser.set_defaults(
        handler=run_async(cmd_logs), interrupted="Printout canceled (the job is still running)."
    )


async def cmd_logs(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        job = await _get_job(client, args.id)
        # An absent deal or plan is the default one (proto3): concurrency and shard count 0, meaning 1.
        concurrency = job.deal.concurrency if job.deal is not None else 0
        total_shards = job.execution_plan.total_shards if job.execution_plan is not None else 0
        several = concurrency > 1 or (total_shards or 1) > 1
        async for piece in client.logs(job.id, shard_index=args.shard, node_id=args.node, follow=args.follow):
            if args.output != "text":
                print(stream_item(output.log_piece(piece), args.output), flush=True)
                continue
            out = sys.stderr.buffer if piece.stderr else sys.stdout.buffer
            data = piece.data
            if several:
                prefix = f"[{output.short_node_id(piece.node_id)} shard {piece.shard_index}] ".encode()
                data = b"".join(prefix + line for line in data.splitlines(keepends=True))
            out.write(data)
            out.flush()
    return 0


# -------------------------------------------------------------------------------------------------- wait


def _add_wait(commands) -> None:
    parser = commands.add_parser(
        "wait",
        help="wait until a job ends",
        description="Wait until every shard of a job has ended (whoever submitted it), then print its state "
        "and its results per node. Exits 0 when the job completed, 1 when it ended in Error or was cancelled "
        "(with the reason on stderr), 2 when --timeout ran out first (the job goes on).",
        epilog="examples:\n  bacalhau-grpc wait 3f2a1b9c\n  bacalhau-grpc wait 3f2a1b9c --timeout 600",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("id", help="the job's ID or a unique prefix of it")
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="the most seconds to wait (default: until the job ends)",
    )
    parser.add_argument(
        "--call-timeout", type=float, default=10.0, help="seconds to wait for each call to the requester (10)"
    )
    flags.add_api_flags(parser)
    parser.set_defaults(
        handler=run_async(cmd_wait), interrupted="Waiting canceled (the job is still running)."
    )


WAIT_TIMED_OUT = 2


async def cmd_wait(args: argparse.Namespace) -> int:
    async with flags.api_client(args, timeout=args.call_timeout) as client:
        try:
            info = to_pb(await client.wait(args.id, timeout=args.timeout), pb.JobWithInfo)
        except WaitTimeoutError as err:
            print(f"Error: {err} (--timeout {args.timeout:g})", file=sys.stderr, flush=True)
            return WAIT_TIMED_OUT
    state = output.state_name(output.job_state(info.job_state if info.job_state.nodes else info.job.state))
    print(f"Job {info.job.id} {state}")
    print("\n".join(follow.results_by_node(info, details=False)))
    end = follow.job_outcome(info)
    return 0 if end.completed else follow.fail(f"Error: {end.reason}")


# ------------------------------------------------------------------------------------------------ cancel


def _add_cancel(commands) -> None:
    parser = commands.add_parser(
        "cancel",
        help="cancel a job",
        description="Cancel a job you submitted (with your key, see `bacalhau-grpc id`): every execution "
        "still running is stopped and the job ends Cancelled. Cancelling a cancelled job again succeeds; "
        "a completed or failed job cannot be cancelled.",
        epilog="example:\n  bacalhau-grpc cancel 3f2a1b9c --reason 'wrong input'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("id", help="the job's ID (or a unique prefix of it)")
    parser.add_argument("--reason", default="", help="why, recorded in the job's events")
    flags.add_api_flags(parser)
    _add_timeout_flag(parser)
    parser.set_defaults(handler=run_async(cmd_cancel))


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        job = await client.cancel(args.id, reason=args.reason)
    print(f"Job {job.id or args.id} cancelled")
    return 0


# --------------------------------------------------------------------------------------------------- get


def _add_get(commands) -> None:
    parser = commands.add_parser(
        "get",
        help="download a job's results",
        description="Download the published (verified) results of a job: raw/<cid>/ per published CID, "
        "per_shard/<shard>_node_<node>/ per result, and combined_results/ with stdout and stderr "
        "concatenated in shard order. The folder's path is printed on stdout.",
        epilog="example:\n  bacalhau-grpc get 3f2a1b9c --output-dir results",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("id", help="the job's ID (or a unique prefix of it)")
    parser.add_argument("--output-dir", type=Path, help="where to write them (default ./job-<id8>)")
    parser.add_argument(
        "--download-timeout-secs", type=float, default=300.0, help="the most a download may take (300)"
    )
    flags.add_api_flags(parser)
    _add_timeout_flag(parser)
    parser.set_defaults(handler=run_async(cmd_get))


async def cmd_get(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        job_id = (await _get_job(client, args.id)).id
        await download(client, job_id, args.output_dir, args.download_timeout_secs)
    return 0


async def download(
    client: Client, job_id: str, output_dir: Path | None, timeout: float, *, quiet: bool = False
) -> Path:
    """`get`'s download with its messages (also `--download` of the submitting commands; `quiet`: none)."""
    if not quiet:
        print(f"Fetching results of job '{job_id}'...", file=sys.stderr, flush=True)
    shown = progress.bar("Downloading", quiet=quiet)
    with shown or contextlib.nullcontext():
        folder = await client.download(
            job_id, output_dir or Path(f"job-{job_id[:8]}"), timeout=timeout, on_progress=shown
        )
    if not quiet:
        print(f"Results for job '{job_id}' have been written to...", file=sys.stderr)
        print(folder, flush=True)
    return folder


# ----------------------------------------------------------------------------------------------- version


def _add_version(commands) -> None:
    parser = commands.add_parser(
        "version",
        help="print the client's and the requester's versions",
        description="Print this client's version and the requester's (unless --client).",
        epilog="examples:\n  bacalhau-grpc version\n  bacalhau-grpc version --client -o json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--client", action="store_true", help="only the client's version (no requester needed)"
    )
    parser.add_argument(
        "-o", "--output", choices=("text", "yaml", "json"), default="text", help="(default text)"
    )
    flags.add_api_flags(parser)
    _add_timeout_flag(parser)
    parser.set_defaults(handler=run_async(cmd_version))


async def cmd_version(args: argparse.Namespace) -> int:
    client_version = version.build_version_info()
    server_version = None
    if not args.client:
        async with _client(args) as client:
            server_version = to_pb(await client.version(), pb.BuildVersionInfo)
    if args.output == "text":
        print(f"Client Version: {client_version.git_version}")
        if server_version is not None:
            print(f"Server Version: {server_version.git_version}")
        return 0
    document = {"clientVersion": jobfile.message_to_dict(client_version)}
    if server_version is not None:
        document["serverVersion"] = jobfile.message_to_dict(server_version)
    if args.output == "json":
        print(serialization.json_marshal_indent_with_max(document).decode("utf-8"))
    else:
        print(yaml.safe_dump(json.loads(json.dumps(document)), sort_keys=False).rstrip("\n"))
    return 0


def _state(text: str) -> int:
    value = STATE_NAMES.get(text.strip().lower())
    if value is None:
        names = ", ".join(_state_label(v) for v in sorted(set(STATE_NAMES.values())))
        raise argparse.ArgumentTypeError(f"unknown job state {text!r}: use one of {names}")
    return value


def _state_label(value: int) -> str:
    return output.state_name(value)


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run_async(command):
    """An argparse handler running an async command."""

    def run(args: argparse.Namespace) -> int:
        return asyncio.run(command(args))

    return run
