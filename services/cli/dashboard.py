"""`bacalhau-grpc dashboard`: the web dashboard, its own process, a client of the requester over gRPC (the
CLI's requester flags: address, TLS, the operator's certificate, retries; the CLI's key in $BACALHAU_DIR)."""

import argparse
import asyncio
import signal
import sys

from bacalhau_grpc.cli import flags
from bacalhau_grpc.cli.stopping import stop_when_closed


def add_parser(commands) -> None:
    parser = flags.command_parser(
        commands,
        "dashboard",
        help="serve the web dashboard (network, jobs, shards)",
        description="Serve a web dashboard of the network the requester runs: its compute nodes, its jobs "
        "(live) and each job's shards, events, logs and results. Read-only unless --allow-cancel. All "
        "assets are served by this process; it needs nothing from the internet.",
        epilog="examples:\n  bacalhau-grpc dashboard --port 8080\n"
        "  bacalhau-grpc dashboard --host 0.0.0.0 --port 8080 --allow-cancel",
    )
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="the HTTP port (default 8080; 0: a free one)")
    parser.add_argument(
        "--allow-cancel",
        action="store_true",
        help="show a cancel button on the jobs the dashboard's key submitted (CSRF-protected)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for each call to the requester (default 10)",
    )
    parser.add_argument(
        "--max-live-views",
        type=int,
        default=64,
        help="the most live views (job pages, logs) open at once; each holds one stream on the requester "
        "(default 64)",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="a host name the dashboard may be reached by (the Host header, without port; repeat for "
        "more). Default: the loopback names when --host is a loopback address, else any. Set it when "
        "serving on another address, so a web page of another site cannot reach the dashboard by "
        "pointing its own name at this address (DNS rebinding)",
    )
    parser.add_argument(
        "--max-download-mb",
        type=int,
        default=1024,
        help="the most a results archive may hold, in MiB (default 1024): a bigger job's results are "
        "refused with a message naming `bacalhau-grpc get`",
    )
    parser.add_argument("--stop-when-fd-closes", type=int, help=argparse.SUPPRESS)
    flags.add_api_flags(parser)
    parser.set_defaults(handler=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise flags.CommandError(f"--port must be 0 to 65535, got {args.port}")
    if args.max_live_views < 1:
        raise flags.CommandError(f"--max-live-views must be at least 1, got {args.max_live_views}")
    if args.max_download_mb < 1:
        raise flags.CommandError(f"--max-download-mb must be at least 1, got {args.max_download_mb}")
    if args.timeout <= 0:
        raise flags.CommandError(f"--timeout must be more than 0 seconds, got {args.timeout:g}")
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    from bacalhau_grpc.dashboard import server

    def ready(url: str) -> None:
        print(f"Dashboard: {url} (requester {flags.api_address(args)})", flush=True)
        if args.allow_cancel:
            print("Cancel is enabled for the jobs this dashboard's key owns.", flush=True)
        sys.stdout.flush()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.stop_when_fd_closes is not None:
        stop_when_closed(loop, args.stop_when_fd_closes, stop)
    async with flags.api_client(args, timeout=args.timeout) as client:
        await server.serve(
            client,
            args.host,
            args.port,
            allow_cancel=args.allow_cancel,
            max_streams=args.max_live_views,
            download_max_bytes=args.max_download_mb * 1024**2,
            allowed_hosts=args.allowed_host,
            on_ready=ready,
            stop=stop,
        )
    return 0
