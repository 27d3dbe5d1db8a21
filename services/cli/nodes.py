"""Looking at the compute nodes, on the SDK: `node list` and `node describe`."""

import argparse
from datetime import UTC, datetime
from typing import Any

from bacalhau_grpc.cli import flags, output
from bacalhau_grpc.cli.query import FORMATS, add_timeout_flag, api_client, run_async
from bacalhau_grpc.common.model import enums, jobfile, pb, serialization
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.sdk.client import to_pb

ROLES = {rpb.NODE_ROLE_COMPUTE: "compute"}
STATES = {rpb.NODE_STATE_LIVE: "live", rpb.NODE_STATE_LOST: "lost"}
HEADERS = [
    "ID",
    "ROLE",
    "STATE",
    "ADDRESS",
    "ENGINES",
    "CPU FREE/TOTAL",
    "MEMORY FREE/TOTAL",
    "GPU FREE/TOTAL",
    "RUNNING",
    "QUEUED",
    "LAST HEARTBEAT",
]


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "node",
        help="list and describe the compute nodes",
        description="The compute nodes registered with the requester: live (heard from within the "
        "requester's node timeout) or lost.",
    )
    node_commands = parser.add_subparsers(dest="node_command", metavar="COMMAND", required=True)
    listing = node_commands.add_parser(
        "list",
        help="list the compute nodes",
        description="List the compute nodes registered with the requester, by ID: role, state (live or "
        "lost), address, engines, free and total capacity, running and queued executions (as of the "
        "node's last heartbeat) and when it was last heard from.",
        epilog="examples:\n  bacalhau-grpc node list\n  bacalhau-grpc node list -o json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument("-o", "--output", choices=FORMATS, default="table", help="(default table)")
    listing.add_argument("--hide-header", action="store_true", help="no header row")
    listing.add_argument("--wide", action="store_true", help="full node IDs")
    flags.add_api_flags(listing)
    add_timeout_flag(listing)
    listing.set_defaults(handler=run_async(cmd_node_list))

    describe = node_commands.add_parser(
        "describe",
        help="show one compute node",
        description="Show one compute node (YAML by default): what it registered (address, engines, "
        "verifiers, publishers, capacity, version) and what its last heartbeat said.",
        epilog="examples:\n  bacalhau-grpc node describe node-1a2b3c\n  bacalhau-grpc node describe "
        "node-1a2b3c -o json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    describe.add_argument("id", help="the node's ID or a unique prefix of it")
    describe.add_argument("-o", "--output", choices=FORMATS, default="yaml", help="(default yaml)")
    flags.add_api_flags(describe)
    add_timeout_flag(describe)
    describe.set_defaults(handler=run_async(cmd_node_describe))


async def cmd_node_list(args: argparse.Namespace) -> int:
    async with api_client(args) as client:
        found = [to_pb(node, rpb.Node) async for node in client.nodes()]
    if args.output == "table":
        text = output.table(None if args.hide_header else HEADERS, [_row(node, args.wide) for node in found])
    else:
        text = _document([node_dict(node) for node in found], args.output)
    if text:
        print(text)
    return 0


async def cmd_node_describe(args: argparse.Namespace) -> int:
    async with api_client(args) as client:
        node = to_pb(await client.node(args.id), rpb.Node)
    if args.output == "table":
        print(output.table(HEADERS, [_row(node, True)]))
    else:
        print(_document(node_dict(node), args.output))
    return 0


def node_dict(node: rpb.Node) -> dict[str, Any]:
    """The node as plain data, in the job files' style (Go field names)."""
    info = jobfile.message_to_dict(node.info)
    data: dict[str, Any] = {
        "NodeID": node.info.node_id,
        "Role": ROLES.get(node.role, "unknown"),
        "State": STATES.get(node.state, "unknown"),
        "Address": node.info.address,
        "Engines": info.get("Engines", []),
        "Verifiers": info.get("Verifiers", []),
        "Publishers": info.get("Publishers", []),
        "TotalCapacity": _usage(node.info.total_capacity),
        "AvailableCapacity": _usage(node.available_capacity) if node.HasField("available_capacity") else None,
        "MaxJobCapacity": _usage(node.info.max_job_capacity),
        "RunningExecutions": node.running_executions,
        "QueuedExecutions": node.queued_executions,
        "LastHeartbeat": output.format_time(node.last_heartbeat),
        "Version": node.info.version,
    }
    return data


def _usage(usage: pb.ResourceUsageData) -> dict[str, Any]:
    return {"CPU": usage.cpu, "Memory": usage.memory, "Disk": usage.disk, "GPU": usage.gpu}


def _document(data: Any, fmt: str) -> str:
    if fmt == "json":
        return serialization.json_marshal_indent_with_max(data, max_objects=None).decode("utf-8")
    return serialization.yaml_marshal_with_max(data, max_objects=None).decode("utf-8").rstrip("\n")


def _row(node: rpb.Node, wide: bool) -> list[str]:
    total = node.info.total_capacity
    free = node.available_capacity if node.HasField("available_capacity") else None
    return [
        node.info.node_id if wide else output.short_node_id(node.info.node_id),
        ROLES.get(node.role, "unknown"),
        STATES.get(node.state, "unknown"),
        node.info.address,
        ",".join(enums.ENGINE.name(engine) for engine in node.info.engines) or "-",
        _pair(free.cpu if free else None, total.cpu, _cpu),
        _pair(free.memory if free else None, total.memory, _bytes),
        _pair(free.gpu if free else None, total.gpu, str),
        str(node.running_executions),
        str(node.queued_executions),
        _ago(node.last_heartbeat),
    ]


def _pair(free: Any, total: Any, show: Any) -> str:
    return f"{'-' if free is None else show(free)}/{show(total)}"


def _cpu(value: float) -> str:
    return f"{value:g}"


def _bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{value}B"  # pragma: no cover


def _ago(ts: Any) -> str:
    """The time in UTC (HH:MM:SS) and how long ago it was."""
    if not ts.seconds and not ts.nanos:
        return "-"
    moment = datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)
    seconds = max((datetime.now(tz=UTC) - moment).total_seconds(), 0.0)
    return f"{output.format_time(ts, wide=False)} ({seconds:.0f}s ago)"
