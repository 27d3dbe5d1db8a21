"""`bacalhau-grpc serve --node-type requester|compute|verifier`: run one node until SIGTERM/SIGINT.

Every field of the node type's settings class is a flag (`data_dir` → `--data-dir`, a boolean →
`--bad-actor` / `--no-bad-actor` / `--bad-actor=false`; v0.3's `--api-port` is `--port`); a flag that is
not given leaves the field to its `BACALHAU_<FIELD>` environment variable, then to its default. Once the
node listens it prints one line, `<node-type> <node_id> listening on <host:port>`, which `devstack` and
scripts wait for.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import os
import signal
import sys
import typing
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from bacalhau_grpc.cli import flags
from bacalhau_grpc.cli.extras import require_node_extra
from bacalhau_grpc.cli.stopping import stop_when_closed
from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.logs import setup_logging
from bacalhau_grpc.common.transport import check_transport_settings

NODE_TYPES = ("requester", "compute", "verifier")
SETTINGS_CLASSES = {
    "requester": ("bacalhau_grpc.requester.settings", "RequesterSettings"),
    "compute": ("bacalhau_grpc.compute.settings", "ComputeSettings"),
    "verifier": ("bacalhau_grpc.verifier.settings", "VerifierSettings"),
}
STOP_GRACE = 5.0

# Help for the settings fields; a field not listed here gets a generic help line.
FIELD_HELP = {
    "host": "the address to listen on",
    "port": "the port to listen on; 0 picks a free one (the requester: its client API)",
    "node_port": "the requester's node protocol port with TLS (mutual TLS: compute nodes and operators' "
    "client certificates); 0 picks a free one",
    "health_port": "a plaintext port serving gRPC health alone, for probes that cannot speak TLS "
    "(Kubernetes'); -1: none, 0: a free one",
    "metrics_port": "the port of the Prometheus /metrics endpoint (HTTP, on --host); -1: none, 0: a free one",
    "log_format": "how log lines are written: text, or json (one JSON object per line)",
    "max_shards_per_job": "the most shards (ExecutionPlan.ShardsTotal) one job may have",
    "max_inputs_per_job": "the most inputs one job may have (contexts and import modules included)",
    "max_outputs_per_job": "the most outputs one job may have",
    "max_env_vars_per_job": "the most environment variables one job may have",
    "max_annotations_per_job": "the most annotations one job may have",
    "max_arguments_per_job": "the most entrypoint words or WASM parameters one job may have",
    "max_string_bytes": "the longest one text of a job spec may be, in bytes",
    "tls_cert": "this node's certificate (PEM; `bacalhau-grpc certs issue`): with --tls-key and --tls-ca, "
    "TLS for everything it serves and mutual TLS between the services",
    "tls_key": "the key of --tls-cert (PEM)",
    "tls_ca": "the cluster CA's certificate (PEM; `bacalhau-grpc certs ca`)",
    "insecure": "serve and call in plaintext, without certificates: development only (refused otherwise)",
    "data_dir": "where the node keeps its SQLite database and node ID",
    "node_id": "the node's ID; generated when empty (and kept in the data dir, when the node has one)",
    "verifier_address": "host:port of the verifier service",
    "requester_address": "host:port of the requester service",
    "advertise_address": "the host:port the requester dials this node at (default: where it listens)",
    "negotiation_timeout": "seconds a shard may spend finding its bids",
    "default_job_timeout": "seconds a job may run when its Spec.Timeout is 0",
    "heartbeat_interval": "seconds between a compute node's heartbeats",
    "node_timeout": "seconds of silence after which a compute node is not offered jobs",
    "call_timeout": "the deadline of every call to another service, in seconds",
    "noop_stdout": "what the noop executor writes to stdout",
    "noop_stderr": "what the noop executor writes to stderr",
    "noop_exit_code": "the noop executor's exit code",
    "noop_delay": "seconds the noop executor takes to run",
    "noop_error": "when set, every noop run fails with this message (a compute error, for tests)",
    "noop_result_hash": "hex result hash proposed for the deterministic verifier, instead of the real one",
    "bad_actor": "propose a wrong result hash (to test the deterministic verifier)",
    "bad_actor_shards": "with --bad-actor: the shard indexes to lie on, comma-separated (default: all)",
    "limit_total_cpu": "CPU the node gives to jobs in total, e.g. 2 or 500m (default: 80%% of the machine's)",
    "limit_total_memory": "memory the node gives to jobs in total, e.g. 4Gb (default: 80%% of the machine's)",
    "limit_total_disk": "disk the node gives to jobs in total, e.g. 20Gb (default: 80%% of the free disk)",
    "limit_total_gpu": "GPUs the node gives to jobs in total (default: the GPUs nvidia-smi lists)",
    "limit_job_cpu": "the most CPU one job may ask for, at least 100m (default: the total)",
    "limit_job_memory": "the most memory one job may ask for, at least 100Mb (default: the total)",
    "limit_job_disk": "the most disk one job may ask for (default: the total)",
    "limit_job_gpu": "the most GPUs one job may ask for (default: the total)",
    "over_commit_factor": "bid while running + queued jobs stay within this many times the total (>= 1)",
    "job_selection_data_locality": "local: bid only on jobs whose inputs are all on this node; or anywhere",
    "job_selection_reject_stateless": "refuse jobs that have no inputs",
    "job_selection_probe_http": "bid only when this http(s) URL answers 200 to a POST of the job as JSON",
    "job_selection_probe_exec": "bid only when this `bash -c` command, given the job as JSON on stdin and "
    "in $BACALHAU_JOB_SELECTION_PROBE_DATA, exits 0",
    "job_selection_probe_timeout": "seconds a probe may take before the job is refused",
    "min_job_timeout": "the shortest Spec.Timeout the node accepts, in seconds",
    "max_job_timeout": "the longest Spec.Timeout the node accepts (the requester: refuses at submission), "
    "in seconds",
    "allow_unsigned": "accept unsigned submissions (development only)",
    "job_visibility": "who may read a job: public (anyone) or owner (only the client that submitted it)",
    "filecoin_unsealed_path": "where unsealed Filecoin data lies, a template such as /data/{{.CID}}",
    "url_download_timeout": "seconds one URL input's download may take, retries included",
    "url_download_max_bytes": "the largest file a URL input may download, e.g. 10Gb",
    "url_download_allow_networks": "networks URL inputs may reach although they are not public "
    "(loopback, private, link-local, metadata...), comma-separated CIDRs, e.g. 127.0.0.0/8 (default: none)",
    "url_download_max_inputs": "the most URL inputs one run of a job may download (a job with more is "
    "refused)",
    "ipfs_connect": "the IPFS daemon's API, e.g. /ip4/127.0.0.1/tcp/5001 (compute: IPFS inputs and "
    "publishing; requester: listing the IPFS inputs of sharded jobs)",
    "docker_host": "the Docker engine for Docker jobs (default: $DOCKER_HOST, else the local socket)",
    "docker_user": "UID or UID:GID every Docker job's container runs as (default: the image's user)",
    "wasm_cache_dir": "where compiled WebAssembly modules (the Python interpreter too) are cached",
}


def settings_class(node_type: str) -> type[Any]:
    module_name, class_name = SETTINGS_CLASSES[node_type]
    return getattr(importlib.import_module(module_name), class_name)


def _available_settings() -> dict[str, type]:
    """The settings class of each node type whose service is installed."""
    found = {}
    for node_type in NODE_TYPES:
        try:
            found[node_type] = settings_class(node_type)
        except ImportError:
            continue
    return found


def _flag_type(hint: Any) -> Any:
    """The argparse type of a settings field: str, int, float, Path, or "bool" for a switch."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args:  # Optional[X] / X | None
        hint = args[0]
    if hint is bool:
        return "bool"
    if hint in (int, float, Path):
        return hint
    return str


def settings_fields() -> dict[str, tuple[Any, dict[str, Any], list[str]]]:
    """Each settings field name → (flag type, {node type: default}, node types that have it)."""
    fields: dict[str, tuple[Any, dict[str, Any], list[str]]] = {}
    for node_type, cls in _available_settings().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = None
            _, defaults, owners = fields.setdefault(f.name, (_flag_type(hints[f.name]), {}, []))
            defaults[node_type] = default
            owners.append(node_type)
    return fields


def _shown(value: Any) -> str:
    if value is None or value == "":
        return '""'
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


# v0.3's names for our flags: its `serve` listened on the global `--api-port`.
FLAG_ALIASES = {"port": ("--api-port",)}

SERVE_EXAMPLES = """\
examples:
  # a network on one machine: a verifier, a requester and a compute node, in this order
  bacalhau-grpc serve --node-type verifier --port 1236
  bacalhau-grpc serve --node-type requester --port 1234 --verifier-address 127.0.0.1:1236
  bacalhau-grpc serve --node-type compute --port 1235 --requester-address 127.0.0.1:1234

  # a compute node with v0.3's capacity and job selection flags
  bacalhau-grpc serve --node-type compute --requester-address 127.0.0.1:1234 --data-dir /srv/compute \\
      --limit-total-cpu 2 --limit-total-memory 4Gb --job-selection-probe-http http://127.0.0.1:8080/ok

  # Prometheus metrics on http://127.0.0.1:9100/metrics and JSON log lines
  bacalhau-grpc serve --node-type verifier --port 1236 --metrics-port 9100 --log-format json

  # v0.3's --api-port is --port; settings also come from the environment
  BACALHAU_VERIFIER_ADDRESS=127.0.0.1:1236 bacalhau-grpc serve --node-type requester --api-port 1234

Every flag can also be set with its environment variable (BACALHAU_<FLAG>, e.g. BACALHAU_DATA_DIR) or in
a YAML file given with --config (`data_dir: /srv/compute`, one setting per line): flags win over the
environment, which wins over the file.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="run one node: requester, compute or verifier",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=SERVE_EXAMPLES,
    )
    parser.add_argument("--node-type", required=True, choices=NODE_TYPES, help="which node to run")
    parser.add_argument(
        "--log-level", default=os.environ.get("LOG_LEVEL", "INFO"), help="DEBUG, INFO, WARNING or ERROR"
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a YAML file of settings (`node_timeout: 30`); the environment and flags win over it",
    )
    parser.add_argument("--stop-grace", type=float, default=STOP_GRACE, help=argparse.SUPPRESS)
    # Set by `devstack`: stop when this pipe's write end closes (the devstack process went away).
    parser.add_argument("--stop-when-fd-closes", type=int, help=argparse.SUPPRESS)
    add_settings_flags(parser)
    parser.set_defaults(handler=cmd_serve)
    return parser


def add_settings_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    node_types: Sequence[str] = NODE_TYPES,
    *,
    exclude: Collection[str] = (),
) -> list[str]:
    """A flag for every settings field of these node types but `exclude` (`data_dir` → `--data-dir`, a
    boolean → `--bad-actor` / `--no-bad-actor` / `--bad-actor=false`), None when not given. Returns the
    fields' names; `settings_arguments` turns what was given back into `serve` arguments."""
    names = []
    for name, (kind, defaults, all_owners) in sorted(settings_fields().items()):
        owners = [t for t in all_owners if t in node_types]
        if not owners or name in exclude:
            continue
        distinct = {_shown(defaults[t]) for t in owners}
        if len(distinct) == 1:
            shown = distinct.pop()
        else:
            shown = ", ".join(f"{t}: {_shown(defaults[t])}" for t in owners)
        text = (
            f"{FIELD_HELP.get(name, name.replace('_', ' '))} "
            f"[{'/'.join(owners)}; env BACALHAU_{name.upper()}; default {shown}]"
        )
        flag = name.replace("_", "-")
        if kind == "bool":
            flags.add_bool_flag(parser, flag, default=None, help=text)
        else:
            parser.add_argument(
                f"--{flag}",
                *FLAG_ALIASES.get(name, ()),
                dest=name,
                type=kind,
                default=None,
                metavar=name.upper(),
                help=text,
            )
        names.append(name)
    return names


def settings_arguments(args: argparse.Namespace, names: Iterable[str]) -> list[str]:
    """The settings flags given in `args` among `names`, as `serve` arguments (`--noop-delay=2`,
    `--no-bad-actor`)."""
    arguments = []
    for name in names:
        value = getattr(args, name, None)
        flag = name.replace("_", "-")
        if isinstance(value, bool):
            arguments.append(f"--{flag}" if value else f"--no-{flag}")
        elif value is not None:
            arguments.append(f"--{flag}={value}")
    return arguments


def build_settings(args: argparse.Namespace, environ=os.environ) -> Any:
    """The node type's settings: its flags (those given) over its environment variables over the
    --config file."""
    cls = settings_class(args.node_type)
    own = {f.name for f in dataclasses.fields(cls)}
    given = {name: getattr(args, name) for name in settings_fields() if getattr(args, name, None) is not None}
    foreign = sorted(set(given) - own)
    if foreign:
        flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
        raise ValueError(f"{flags} does not apply to a {args.node_type} node")
    return cls.from_env(environ, getattr(args, "config", None), **given)


async def run(
    node_type: str, settings: Any, *, stop_grace: float = STOP_GRACE, watch_fd: int | None = None
) -> None:
    """Start the node, print its "listening on" line, serve until SIGTERM/SIGINT, stop gracefully."""
    app = importlib.import_module(f"bacalhau_grpc.{node_type}.app")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if watch_fd is not None:
        stop_when_closed(loop, watch_fd, stop)
    running = await app.start(settings)
    try:
        print(f"{node_type} {running.node_id} listening on {running.address}", flush=True)
        metrics_address = getattr(running, "metrics_address", "")
        if metrics_address:
            print(f"{node_type} {running.node_id} metrics on http://{metrics_address}/metrics", flush=True)
        node_address = getattr(running, "node_address", running.address)
        if node_address != running.address:
            print(f"{node_type} {running.node_id} node protocol on {node_address}", flush=True)
        await stop.wait()
    finally:
        await running.stop(stop_grace)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


def cmd_serve(args: argparse.Namespace) -> int:
    require_node_extra("serve")
    setup_logging(args.log_level)
    settings = build_settings(args)
    # Again in the chosen format (--log-format, BACALHAU_LOG_FORMAT or the --config file).
    setup_logging(args.log_level, log_format=settings.log_format)
    try:
        check_transport_settings(settings, args.node_type)  # before anything starts: a clear refusal
    except InvalidArgumentError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    try:
        asyncio.run(
            run(args.node_type, settings, stop_grace=args.stop_grace, watch_fd=args.stop_when_fd_closes)
        )
    except KeyboardInterrupt:  # a second Ctrl+C while stopping
        print(f"{args.node_type}: interrupted while stopping", file=sys.stderr)
        return 130
    return 0
