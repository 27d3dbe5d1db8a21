"""The verifier process: wires the servicer into a gRPC server (the CLI's `serve --node-type verifier`)."""

import secrets
from dataclasses import dataclass

from bacalhau_grpc.common import node_ids
from bacalhau_grpc.common.access import guarded
from bacalhau_grpc.common.authz import Policy
from bacalhau_grpc.common.server import RunningNode, ServiceBinding, start_server
from bacalhau_grpc.common.telemetry import setup_metrics, setup_telemetry
from bacalhau_grpc.common.transport import transport_of
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2_grpc as vgrpc
from bacalhau_grpc.verifier.api.servicer import VerifierServicer
from bacalhau_grpc.verifier.settings import VerifierSettings

COMPONENT = "verifier"
SERVICE_NAME = "bacalhau.verifier.v1.VerifierService"
# With TLS (`common.authz`): only the requester asks for verdicts; any node or operator may ask what the
# verifier is.
POLICY = Policy(
    roles=frozenset({"requester"}),
    method_roles={"GetVerifierInfo": frozenset({"requester", "compute", "verifier", "client"})},
)


def new_node_id() -> str:
    return f"verifier-{secrets.token_hex(6)}"


@dataclass
class RunningVerifier(RunningNode):
    """The verifier: its server is all it has (and its metrics endpoint's host:port, if any)."""

    metrics_address: str = ""


async def start(settings: VerifierSettings) -> RunningVerifier:
    """Start the verifier's gRPC server (tracing is set up first, once per process, when configured)."""
    node_id = node_ids.check_node_id(settings.node_id) if settings.node_id else new_node_id()
    setup_telemetry(COMPONENT, node_id)
    # Its metrics are the served RPCs' durations (`rpc.server.duration`).
    metrics_address = setup_metrics(COMPONENT, node_id, port=settings.metrics_port, host=settings.host)
    servicer = VerifierServicer(node_id)
    transport = transport_of(settings)
    access = guarded(SERVICE_NAME, POLICY, transport)
    server = await start_server(
        component=COMPONENT,
        node_id=node_id,
        services=[
            ServiceBinding(vgrpc.add_VerifierServiceServicer_to_server, servicer, SERVICE_NAME, access)
        ],
        host=settings.host,
        port=settings.port,
        credentials=transport.server_credentials(require_client_auth=True),
        health_port=None if settings.health_port < 0 else settings.health_port,
    )
    return RunningVerifier(node_id=node_id, server=server, metrics_address=metrics_address)
