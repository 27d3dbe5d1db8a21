"""The verifier service as a real gRPC server (app.start on 127.0.0.1:0), called over gRPC."""

import asyncio
import json
import shutil
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bacalhau_grpc.common import channels, grpc_errors
from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2 as vpb
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2_grpc as vgrpc
from bacalhau_grpc.verifier import app
from bacalhau_grpc.verifier.settings import VerifierSettings

HONEST = b"4e07408562bedb8b60ce05c1decfe3ad16b72230967de01f640b7e4729b49fce"
DETERMINISTIC = pb.Verifier.VERIFIER_DETERMINISTIC
NOOP = pb.Verifier.VERIFIER_NOOP
GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
NOT_COMPLETE = (
    "verifying shard 5f0e6a52-0b44-4c4f-9a7a-0c7d0f4e0d11:0 but execution is not complete: 2 of 3 results"
)


@pytest.fixture
async def verifier():
    running = await app.start(VerifierSettings(host="127.0.0.1", port=0))
    yield running
    await running.stop(grace=1.0)


@pytest.fixture
async def stub(verifier):
    async with channels.open_channel(verifier.address) as channel:
        yield vgrpc.VerifierServiceStub(channel)


def request(
    proposals, *, verifier=DETERMINISTIC, concurrency=None, confidence=0, shard=0
) -> vpb.VerifyRequest:
    job = pb.Job(id="5f0e6a52-0b44-4c4f-9a7a-0c7d0f4e0d11")
    job.spec.verifier = verifier
    job.deal.concurrency = len(proposals) if concurrency is None else concurrency
    job.deal.confidence = confidence
    job.execution_plan.total_shards = 1
    executions = [
        vpb.ExecutionProposal(
            execution_id=f"e-{i}",
            node_id=f"node-{i:012x}",
            verification_proposal=p,
            run_output=pb.RunCommandResult(stdout="hello", exit_code=0),
        )
        for i, p in enumerate(proposals)
    ]
    return vpb.VerifyRequest(job=job, shard_index=shard, executions=executions)


def accepted(response: vpb.VerifyResponse) -> list[bool]:
    return [v.accepted for v in response.verdicts]


async def test_settings_come_from_the_environment_then_overrides():
    settings = VerifierSettings.from_env(
        {"BACALHAU_PORT": "0", "BACALHAU_NODE_ID": "verifier-env"}, host="127.0.0.1"
    )
    running = await app.start(settings)
    try:
        assert running.node_id == "verifier-env"
        assert running.port > 0
        assert running.address == f"127.0.0.1:{running.port}"
    finally:
        await running.stop(grace=1.0)
    generated = await app.start(VerifierSettings())
    try:
        assert generated.node_id.startswith("verifier-") and len(generated.node_id) == len("verifier-") + 12
    finally:
        await generated.stop(grace=1.0)
    with pytest.raises(InvalidArgumentError) as err:
        VerifierSettings.from_env({"BACALHAU_PORT": "http"})
    assert err.value.field == "port"


async def test_three_honest_nodes_are_all_accepted(stub):
    response = await channels.call(stub.Verify, request([HONEST] * 3))
    assert accepted(response) == [True, True, True]
    assert [v.execution_id for v in response.verdicts] == ["e-0", "e-1", "e-2"]
    assert [v.node_id for v in response.verdicts] == [f"node-{i:012x}" for i in range(3)]
    assert {v.reason for v in response.verdicts} == {"in the largest group (3 of 3 agree)"}


@pytest.mark.parametrize(
    ("proposals", "confidence", "expected", "reason"),
    [
        ([HONEST], 0, [False], "only one result"),
        ([HONEST, HONEST, b"bad-2"], 0, [True, True, False], "not in the largest group"),
        ([HONEST, b"bad-1"], 0, [False, False], "tie between groups of 1"),
        ([HONEST] * 3 + [b"bad-3", b"bad-4"], 4, [False] * 5, "largest group 3 below confidence 4"),
        ([b"", b"", HONEST], 0, [False] * 3, "empty result hash"),
    ],
)
async def test_deterministic_worked_cases_over_grpc(stub, proposals, confidence, expected, reason):
    response = await channels.call(stub.Verify, request(proposals, confidence=confidence))
    assert accepted(response) == expected
    assert any(v.reason.startswith(reason) for v in response.verdicts)


async def test_noop_accepts_every_result(stub):
    response = await channels.call(stub.Verify, request([b"", b"x"], verifier=NOOP))
    assert accepted(response) == [True, True]


async def test_verify_shards_judges_each_request_as_verify_would(stub):
    requests = [request([HONEST] * 3), request([HONEST, b"bad-1"]), request([b"", b"x"], verifier=NOOP)]
    batch = await channels.call(stub.VerifyShards, vpb.VerifyShardsRequest(requests=requests))
    assert [accepted(r) for r in batch.results] == [[True] * 3, [False, False], [True, True]]
    for one, from_batch in zip(requests, batch.results, strict=True):
        assert await channels.call(stub.Verify, one) == from_batch
    bad = request([HONEST], shard=5)
    with pytest.raises(InvalidArgumentError):
        await channels.call(stub.VerifyShards, vpb.VerifyShardsRequest(requests=[requests[0], bad]))


async def test_verifier_info_lists_both_verifiers_and_their_proposals(stub):
    response = await channels.call(stub.GetVerifierInfo, vpb.GetVerifierInfoRequest())
    formats = {f.verifier: f.description for f in response.formats}
    assert set(formats) == {NOOP, DETERMINISTIC}
    assert "empty" in formats[NOOP].lower()
    assert "SHA-256" in formats[DETERMINISTIC] and "exitCode" in formats[DETERMINISTIC]


@pytest.mark.parametrize(
    ("req", "field", "message"),
    [
        (
            request([HONEST], verifier=0),
            "Spec.Verifier",
            "no matching verifier found on this server: Verifier(0)",
        ),
        (request([HONEST], verifier=7), "Spec.Verifier", "Verifier(7)"),
        (
            request([HONEST, HONEST], concurrency=3),
            "executions",
            NOT_COMPLETE,
        ),
        (request([HONEST], shard=1), "shard_index", "outside the job's 1 shard(s)"),
    ],
)
async def test_bad_requests_are_invalid_argument_with_the_field_in_error_info(stub, req, field, message):
    with pytest.raises(grpc.aio.AioRpcError) as raw:
        await stub.Verify(req, timeout=5)
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raw.value.details()
    info = grpc_errors.error_info_from(grpc_errors.rich_status(raw.value.trailing_metadata()))
    assert info is not None
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "INVALID_ARGUMENT",
        "bacalhau-grpc",
        {"field": field},
    )
    # and a client of the common runtime gets the typed error back, field included
    with pytest.raises(InvalidArgumentError) as typed:
        await channels.call(stub.Verify, req)
    assert typed.value.field == field
    assert message in typed.value.reason


async def test_health_reflection_and_grpcurl(verifier):
    async with channels.open_channel(verifier.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "bacalhau.verifier.v1.VerifierService"):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
    listed = await grpcurl("-plaintext", verifier.address, "list")
    assert "bacalhau.verifier.v1.VerifierService" in listed.split()
    body = json.dumps(
        {
            "job": {"spec": {"verifier": "VERIFIER_DETERMINISTIC"}, "deal": {"concurrency": 2}},
            "executions": [
                {"executionId": "e-a", "nodeId": "node-a", "verificationProposal": "YWJj"},
                {"executionId": "e-b", "nodeId": "node-b", "verificationProposal": "YWJj"},
            ],
        }
    )
    verified = await grpcurl(
        "-plaintext", "-d", body, verifier.address, "bacalhau.verifier.v1.VerifierService/Verify"
    )
    verdicts = json.loads(verified)["verdicts"]
    # grpcurl 1.8 writes the proto field names
    assert [(v["execution_id"], v.get("accepted", False)) for v in verdicts] == [("e-a", True), ("e-b", True)]
    assert verdicts[0]["reason"] == "in the largest group (2 of 2 agree)"


async def grpcurl(*args: str) -> str:
    """Run the real grpcurl without blocking the event loop the server runs on."""
    process = await asyncio.create_subprocess_exec(
        GRPCURL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_stop_turns_health_to_not_serving_and_refuses_calls():
    running = await app.start(VerifierSettings())
    address = running.address
    await running.stop(grace=0.5)
    async with channels.open_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await vgrpc.VerifierServiceStub(channel).GetVerifierInfo(vpb.GetVerifierInfoRequest(), timeout=1)
    assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
