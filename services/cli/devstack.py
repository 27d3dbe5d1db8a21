"""`bacalhau-grpc devstack`: a verifier, a requester and N compute nodes as separate local processes.

The nodes are the devstack supervisor's (`bacalhau_grpc.devstack`, `Devstack`): this module is the
command, its flags (serve's compute flags among them, given to every compute node) and its printout:
the nodes, the requester's addresses, the export line, grpcurl commands and the web dashboard's URL (a
child process like the nodes, on a free port unless --dashboard-port; --no-dashboard: none). With
`--restart-on-crash` a node that dies is started again on its address with its node ID and data dir;
without, the devstack stops and shows the end of the dead node's log.
"""

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import sys

from bacalhau_grpc.cli import flags, serve
from bacalhau_grpc.cli.extras import require_node_extra
from bacalhau_grpc.common.logs import LOG_FORMATS
from bacalhau_grpc.devstack import PER_NODE_SETTINGS, STARTUP_TIMEOUT, Devstack, DevstackError, Node

DEVSTACK_EXAMPLES = """\
examples:
  # three compute nodes (the default), TLS everywhere with a CA in <data-dir>/tls; it prints the
  # requester's addresses, the export line (with BACALHAU_TLS_CA_CERT) and grpcurl commands
  bacalhau-grpc devstack

  # everything in plaintext, as before certificates (development only)
  bacalhau-grpc devstack --insecure

  # compute nodes take serve's compute flags, v0.3's among them
  bacalhau-grpc devstack --nodes 2 --limit-total-cpu 1 --job-selection-probe-http http://127.0.0.1:8080/ok

  # the noop executor's output, and one node (the last) that proposes wrong results
  bacalhau-grpc devstack --noop-stdout hello --bad-actors 1

  # the web dashboard on port 8080 (default: a free port; its URL is printed), or no dashboard
  bacalhau-grpc devstack --dashboard-port 8080
  bacalhau-grpc devstack --no-dashboard

  # testing crash safety: kill -9 any node's pid, the devstack starts it again (same address and data)
  bacalhau-grpc devstack --restart-on-crash --data-dir ./stack

  # any other serve flag, for every compute node or for the requester
  bacalhau-grpc devstack --compute-flag=--log-level=DEBUG --requester-flag=--node-timeout=5
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "devstack",
        help="run a local network: a verifier, a requester and N compute nodes",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=DEVSTACK_EXAMPLES,
    )
    parser.add_argument("--nodes", type=int, default=3, help="how many compute nodes (default 3)")
    parser.add_argument(
        "--bad-actors", type=int, default=0, help="how many of them (the last ones) propose wrong results"
    )
    parser.add_argument(
        "--data-dir", help="where the nodes keep their data and logs (default: a temporary folder)"
    )
    flags.add_bool_flag(
        parser,
        "restart-on-crash",
        default=False,
        help="when a node exits unexpectedly, start it again on the same address with the same node ID "
        "and data dir, and say so (default: stop the devstack)",
    )
    parser.add_argument(
        "--compute-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="another flag for every compute node's `serve` (repeatable), "
        "e.g. --compute-flag=--log-level=DEBUG",
    )
    parser.add_argument(
        "--requester-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="another flag for the requester's `serve` (repeatable), e.g. --requester-flag=--node-timeout=5",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="run every node in plaintext (serve --insecure), without the CA and certificates the devstack "
        "otherwise makes in <data-dir>/tls: development only",
    )
    parser.add_argument("--startup-timeout", type=float, default=STARTUP_TIMEOUT, help="seconds (default 60)")
    parser.add_argument(
        "--log-level", default=os.environ.get("LOG_LEVEL", "INFO"), help="the nodes' log level"
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="the nodes' log format: text, or json (one JSON object per line) [env BACALHAU_LOG_FORMAT; "
        "default text]",
    )
    flags.add_bool_flag(
        parser,
        "metrics",
        default=False,
        help="every node serves Prometheus metrics on a free port of its own (serve --metrics-port 0); "
        "the addresses are listed once the devstack is ready",
    )
    dashboard = parser.add_argument_group(
        "web dashboard", "`bacalhau-grpc dashboard` of the devstack's requester, as the operator"
    )
    flags.add_bool_flag(
        dashboard,
        "dashboard",
        default=True,
        help="run the web dashboard (a child process like the nodes, on 127.0.0.1) and print its URL "
        "(default: on; --no-dashboard: none)",
    )
    dashboard.add_argument(
        "--dashboard-port",
        type=int,
        default=0,
        metavar="PORT",
        help="the dashboard's HTTP port (default 0: a free one)",
    )
    flags.add_bool_flag(
        dashboard,
        "dashboard-allow-cancel",
        default=True,
        help="let the dashboard cancel the jobs its key owns: it signs with the CLI's key ($BACALHAU_DIR, "
        "else ~/.bacalhau-grpc), so those are the jobs you create with the CLI (default: on, a local "
        "development network; --no-dashboard-allow-cancel: read-only)",
    )
    compute = parser.add_argument_group(
        "compute node settings", "serve's compute node flags, given to every compute node"
    )
    settings = serve.add_settings_flags(compute, ["compute"], exclude=PER_NODE_SETTINGS)
    parser.set_defaults(handler=cmd_devstack, compute_settings=settings)


def cmd_devstack(args) -> int:
    require_node_extra("devstack")
    return asyncio.run(_run(args))


async def _run(args) -> int:
    if not 0 <= args.dashboard_port <= 65535:
        raise flags.CommandError(f"--dashboard-port must be 0 to 65535, got {args.dashboard_port}")
    stack = Devstack(
        args.nodes,
        args.bad_actors,
        args.data_dir,
        [*serve.settings_arguments(args, args.compute_settings), *args.compute_flag],
        args.requester_flag,
        startup_timeout=args.startup_timeout,
        log_level=args.log_level,
        insecure=args.insecure,
        metrics=args.metrics,
        log_format=args.log_format,
        dashboard=args.dashboard,
        dashboard_port=args.dashboard_port,
        dashboard_allow_cancel=args.dashboard_allow_cancel,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    print(
        f"Starting a devstack of {args.nodes} compute node(s) in {args.data_dir or 'a temporary folder'} ..."
    )
    started = await _unless_stopped(stack.start(), stop)
    if started is None:  # interrupted while starting
        await stack.stop()
        print("Devstack stopped before it was ready.")
        return 130
    started.result()  # a DevstackError here is reported by main()
    _print_ready(stack)
    while (died := await _unless_stopped(stack.wait_for_exit(), stop)) is not None:
        node = died.result()
        if not args.restart_on_crash:
            return await _stop_after_crash(stack, node)
        print(
            f"{_exited(node)}; restarting it on {node.address} with the same node ID and data dir ...",
            flush=True,
        )
        restarted = await _unless_stopped(stack.restart(node), stop)
        if restarted is None:
            break
        if restarted.exception() is not None:
            return await _stop_after_crash(stack, node, f"could not restart it: {restarted.exception()}")
        who = node.node_id or node.name
        print(f"{node.name} restarted: {who} listening on {node.address} again, pid {node.pid}", flush=True)
    print(f"\nReceived {received[0]}: stopping the devstack ...", flush=True)
    await stack.stop()
    print("Devstack stopped.", flush=True)
    return 0


async def _unless_stopped(coroutine, stop: asyncio.Event) -> asyncio.Future | None:
    """Run `coroutine` until it ends (return its finished task) or `stop` is set (cancel it, return None)."""
    task = asyncio.ensure_future(coroutine)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task.done():
        return task
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, DevstackError):
        await task
    return None


def _exited(node: Node) -> str:
    assert node.process is not None
    code = node.process.returncode
    who = f"{node.node_id}, pid {node.pid}" if node.node_id else f"pid {node.pid}"
    return f"{node.name} ({who}) exited unexpectedly with code {code}"


async def _stop_after_crash(stack: Devstack, node: Node, problem: str = "") -> int:
    """Say which node died and why (the end of its log), stop the others, keep the logs."""
    assert stack.data_dir is not None, "a node ran, so the devstack has its data directory"
    stack.remove_data_dir = False
    print(
        f"Error: {_exited(node)}{'; ' + problem if problem else ''}; stopping the others. "
        f"The end of its log ({node.log_path}):\n{node.log_tail()}",
        file=sys.stderr,
        flush=True,
    )
    await stack.stop()
    print(f"Devstack stopped. Logs are in {stack.data_dir / 'logs'}")
    return 1


def _print_ready(stack: Devstack) -> None:
    assert stack.verifier is not None and stack.requester is not None and stack.data_dir is not None
    lines = [
        f"verifier   {stack.verifier.node_id:<22} {stack.verifier.address:<21} pid {stack.verifier.pid}",
        f"requester  {stack.requester.node_id:<22} {stack.requester.address:<21} pid {stack.requester.pid}",
    ]
    for node in stack.computes:
        bad = "  (bad actor)" if node.bad_actor else ""
        lines.append(f"compute    {node.node_id:<22} {node.address:<21} pid {node.pid}{bad}")
    api = stack.requester_address
    host, _, port = api.rpartition(":")
    list_jobs = f"-d '{{}}' {api} bacalhau.requester.v1.RequesterService/ListJobs"
    if stack.insecure:
        lines += [
            "",
            f"Requester API: {api} (plaintext: --insecure)",
            "To use it from another terminal:",
            f"export BACALHAU_API_HOST={host} BACALHAU_API_PORT={port}",
            "  bacalhau-grpc create job.yaml --wait",
            f"  grpcurl -plaintext {api} list",
            f"  grpcurl -plaintext {list_jobs}",
        ]
    else:
        ca = shlex.quote(str(stack.ca_cert))
        cert, key = shlex.quote(str(stack.operator_cert)), shlex.quote(str(stack.operator_key))
        operator = f"-cert {cert} -key {key}"
        node_api = stack.requester_node_address
        lines += [
            "",
            f"Requester API: {api} (TLS)",
            f"Requester node protocol: {node_api} (mutual TLS: compute nodes and operators)",
            f"CA certificate: {stack.ca_cert} (the certificates are in {stack.tls_dir})",
            "To use it from another terminal:",
            f"export BACALHAU_API_HOST={host} BACALHAU_API_PORT={port} BACALHAU_TLS_CA_CERT={ca}",
            "  bacalhau-grpc create job.yaml --wait",
            f"  grpcurl -cacert {ca} {api} list",
            f"  grpcurl -cacert {ca} {list_jobs}",
            "As the operator (client certificate), on the node port:",
            f"  grpcurl -cacert {ca} {operator} {node_api} list",
        ]
    if stack.dashboard is not None:
        via = "as the operator, on the node port" if stack.secure else "plaintext"
        lines += ["", f"Dashboard: {stack.dashboard_url} (pid {stack.dashboard.pid}; requester {via})"]
        if stack.dashboard_allow_cancel:
            lines.append(
                f"  It signs with the CLI's key in {stack.dashboard_key_dir}: it can cancel the jobs you "
                "create with it (--no-dashboard-allow-cancel: read-only)."
            )
        else:
            lines.append("  Read-only (--dashboard-allow-cancel: cancel the jobs the CLI's key owns).")
    if stack.metrics:
        lines += ["", "Metrics (Prometheus):"]
        for node in stack.all_nodes:
            lines.append(f"  {node.name:<11} http://{node.metrics_address}/metrics")
    lines += [
        f"Logs: {stack.data_dir / 'logs'}",
        "Devstack is ready! Press Ctrl+C to stop it.",
    ]
    print("\n".join(lines), flush=True)
