"""The devstack's child processes (`Node`) and what their logs and answers say: where a node listens,
whether it registered, whether the dashboard answers."""

import asyncio
import contextlib
import json
import re
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bacalhau_grpc.common import node_ids
from bacalhau_grpc.common.errors import BacalhauError
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2 as cpb

LISTENING = re.compile(r"^(requester|compute|verifier) (\S+) listening on (\S+)\s*$", re.MULTILINE)
# The requester's second line with TLS: where compute nodes and operators reach its node protocol.
NODE_PROTOCOL = re.compile(r"^requester (\S+) node protocol on (\S+)\s*$", re.MULTILINE)
# With metrics on (`serve --metrics-port`): where the node serves Prometheus' /metrics.
METRICS_ENDPOINT = re.compile(
    r"^(requester|compute|verifier) (\S+) metrics on http://(\S+)/metrics\s*$", re.MULTILINE
)
# The dashboard's line once it listens (`bacalhau-grpc dashboard`).
DASHBOARD_LISTENING = re.compile(r"^Dashboard: (http://(\S+?)/) \(requester \S+\)\s*$", re.MULTILINE)
DASHBOARD = "dashboard"  # its Node's name and node_type
# What a compute node logs (at INFO) once the requester took its registration.
REGISTERED_LOG_LINE = "registered with requester"
LOG_TAIL_LINES = 30
# What each node type's generated IDs look like (the devstack chooses them, to issue their certificates).
NODE_ID_PREFIX = {"verifier": "verifier", "requester": "requester", "compute": "node"}


class DevstackError(RuntimeError):
    """The devstack could not start, or one of its nodes died."""


@dataclass
class Node:
    """One child process of the devstack."""

    name: str  # "verifier", "requester", "compute-0", ...
    node_type: str
    args: list[str]
    log_path: Path
    bad_actor: bool = False
    process: asyncio.subprocess.Process | None = None
    node_id: str = ""
    address: str = ""
    # The requester's node protocol with TLS (its second port); else the same as `address`.
    node_address: str = ""
    stopping: bool = field(default=False, repr=False)
    # Where the current process's output starts in the log (a restarted node appends to it).
    log_offset: int = field(default=0, repr=False)
    # Environment variables of this node's process only, over the devstack's (read at each start, so a
    # test may change them before `Devstack.restart`).
    env: dict[str, str] = field(default_factory=dict)
    # host:port of the node's Prometheus /metrics endpoint (a devstack with metrics=True); else "".
    metrics_address: str = ""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def current_log(self) -> str:
        """What the current process wrote to the log ("" when there is no log)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        tail = text.splitlines()[-lines:]
        return "\n".join(tail) if tail else "(the log is empty)"


# The devstack's own 127.0.0.1 addresses are never reached through an HTTP proxy of the environment.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def healthz(url: str) -> tuple[int, str]:
    """GET the dashboard's /healthz: its status (0: no answer) and, unless 200, why."""
    try:
        with NO_PROXY.open(f"{url}healthz", timeout=5) as response:
            return response.status, ""
    except urllib.error.HTTPError as err:
        return err.code, f"/healthz answers {err.code}: {err.read(500).decode(errors='replace')}"
    except OSError as err:
        return 0, f"/healthz does not answer: {err}"


def registration(info: cpb.GetNodeInfoResponse) -> bool | None:
    """What GetNodeInfo's debug info says about the node's registration; None when it says nothing."""
    for item in info.debug_info:
        if item.component in ("requester", "registration"):
            try:
                value = json.loads(item.info)
            except ValueError:
                return None
            if isinstance(value, dict) and "registered" in value:
                return bool(value["registered"])
    return None


def logged_registration(node: Node) -> bool:
    return REGISTERED_LOG_LINE in node.current_log()


def node_protocol_line(node: Node) -> re.Match[str] | None:
    return NODE_PROTOCOL.search(node.current_log())


def node_id_for(node_type: str, data_dir: Path | None) -> str:
    """The ID its data dir keeps (a devstack started again on the same folder), else a new one."""
    saved = ""
    with contextlib.suppress(OSError):
        saved = (data_dir / "node_id").read_text().strip() if data_dir is not None else ""
    with contextlib.suppress(BacalhauError):
        return node_ids.check_node_id(saved)
    return f"{NODE_ID_PREFIX[node_type]}-{secrets.token_hex(6)}"


def listening_line(node: Node) -> re.Match[str] | None:
    for match in LISTENING.finditer(node.current_log()):
        if match.group(1) == node.node_type:
            return match
    return None


def metrics_line(node: Node) -> re.Match[str] | None:
    return METRICS_ENDPOINT.search(node.current_log())


def with_flag(args: list[str], flag: str, value: str) -> list[str]:
    """`args` with `flag VALUE` in place of the first `flag X` (or at the end, when it has none)."""
    if flag not in args:
        return [*args, flag, value]
    at = args.index(flag)
    return [*args[: at + 1], value, *args[at + 2 :]]
