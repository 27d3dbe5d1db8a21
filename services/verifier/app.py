"""The verifier process: wires the servicer into a gRPC server (the CLI's `serve --node-type verifier`)."""

import asyncio
import contextlib
import secrets
import signal
from dataclasses import dataclass

from bacalhau.verifier.v1 import verifier_service_pb2_grpc as vgrpc
from bacalhau_grpc.common.server import RunningServer, ServiceBinding, start_server
from bacalhau_grpc.common.telemetry import setup_telemetry
from bacalhau_grpc.verifier.api.servicer import VerifierServicer
from bacalhau_grpc.verifier.settings import VerifierSettings

COMPONENT = "verifier"
SERVICE_NAME = "bacalhau.verifier.v1.VerifierService"


def new_node_id() -> str:
    return f"verifier-{secrets.token_hex(6)}"


@dataclass
class RunningVerifier:
    node_id: str
    server: RunningServer

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float = 5.0) -> None:
        await self.server.stop(grace)


async def start(settings: VerifierSettings) -> RunningVerifier:
    """Start the verifier's gRPC server (tracing is set up first, once per process, when configured)."""
    node_id = settings.node_id or new_node_id()
    setup_telemetry(COMPONENT, node_id)
    servicer = VerifierServicer(node_id)
    server = await start_server(
        component=COMPONENT,
        node_id=node_id,
        services=[ServiceBinding(vgrpc.add_VerifierServiceServicer_to_server, servicer, SERVICE_NAME)],
        host=settings.host,
        port=settings.port,
    )
    return RunningVerifier(node_id=node_id, server=server)


async def serve(settings: VerifierSettings) -> None:
    """Start, wait for SIGTERM or SIGINT, then stop gracefully."""
    running = await start(settings)
    try:
        await wait_for_stop_signal()
    finally:
        await running.stop()


async def wait_for_stop_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
