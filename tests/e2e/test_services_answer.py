"""Every service of a devstack (separate OS processes, TLS by default) answers gRPC health and server
reflection, as an operator with grpcurl sees it: the requester's client API with the CA alone, the mutual
TLS ports (compute, verifier) with the operator's client certificate."""

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bacalhau_grpc.devstack import Devstack

GRPCURL = shutil.which("grpcurl") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "grpcurl")
SERVICES = {
    "requester": "bacalhau.requester.v1.RequesterService",
    "verifier": "bacalhau.verifier.v1.VerifierService",
    "compute": "bacalhau.compute.v1.ComputeService",
}


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def devstack(tmp_path_factory):
    async with Devstack(nodes=1, data_dir=tmp_path_factory.mktemp("devstack")) as stack:
        yield stack


def addresses(stack) -> dict[str, str]:
    return {
        "requester": stack.requester_address,
        "verifier": stack.verifier_address,
        "compute": stack.compute_addresses[0],
    }


def grpcurl_tls(stack, kind: str) -> list[str]:
    ca = ["-cacert", str(stack.ca_cert)]
    if kind == "requester":  # the client API: server TLS, no client certificate needed
        return ca
    return [*ca, "-cert", str(stack.operator_cert), "-key", str(stack.operator_key)]


@pytest.mark.parametrize("kind", sorted(SERVICES))
async def test_health_is_serving(devstack, kind):
    credentials = devstack.channel_credentials(operator=kind != "requester")
    async with grpc.aio.secure_channel(addresses(devstack)[kind], credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICES[kind]):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("kind", sorted(SERVICES))
async def test_grpcurl_lists_and_describes_the_service(devstack, kind):
    address = addresses(devstack)[kind]
    listed = subprocess.run(
        [GRPCURL, *grpcurl_tls(devstack, kind), address, "list"], capture_output=True, text=True, timeout=30
    )
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) >= {
        SERVICES[kind],
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    described = subprocess.run(
        [GRPCURL, *grpcurl_tls(devstack, kind), address, "describe", SERVICES[kind]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert described.returncode == 0, described.stderr
    assert f"service {SERVICES[kind].rsplit('.', 1)[1]} {{" in described.stdout
