"""The common runtime against real servers on 127.0.0.1:0: errors on the wire and back, health, graceful
stop, reflection v1/v1alpha, telemetry (a real OTLP receiver) and logging."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_status import rpc_status
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from bacalhau_grpc.common import channels, errors, grpc_errors, logs, reflection, telemetry
from bacalhau_grpc.common.server import RunningServer, ServiceBinding, start_server
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2 as vpb
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2_grpc as vgrpc
from tests.integration.common_testing import (
    ERRORS,
    GENERIC_STREAMS,
    SECRET,
    STREAMS,
    VERIFIER_SERVICE,
    ScriptedVerifier,
    StreamsStub,
    run_process,
    streams_bindings,
    verifier_binding,
    verify_request,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    running: RunningServer
    servicer: ScriptedVerifier
    channel: grpc.aio.Channel  # a plain grpc.aio channel: what any gRPC client sees
    stub: vgrpc.VerifierServiceStub


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    servicer = ScriptedVerifier()
    running = await start_server(
        component="test", node_id="node-test", services=[verifier_binding(servicer), *streams_bindings()]
    )
    channel = grpc.aio.insecure_channel(running.address)
    try:
        yield Served(running, servicer, channel, vgrpc.VerifierServiceStub(channel))
    finally:
        await channel.close()
        await running.stop(grace=0)


def error_info_of(status) -> error_details_pb2.ErrorInfo:
    (detail,) = status.details
    info = error_details_pb2.ErrorInfo()
    assert detail.Unpack(info)
    return info


# ------------------------------------------------------------------------------------------ serving


async def test_serves_on_a_free_port_and_answers(served: Served):
    assert served.running.port > 0
    assert served.running.address == f"127.0.0.1:{served.running.port}"
    response = await served.stub.Verify(verify_request("ok", "e-1", "e-2"), timeout=5)
    assert [(v.execution_id, v.node_id, v.accepted) for v in response.verdicts] == [
        ("e-1", "node-e-1", True),
        ("e-2", "node-e-2", True),
    ]


@pytest.mark.parametrize("kind", sorted(ERRORS))
async def test_a_domain_error_reaches_a_plain_client_as_its_status_with_error_info(served: Served, kind: str):
    error, code, reason, metadata = ERRORS[kind]
    call = served.stub.Verify(verify_request(kind), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == code
    assert raised.value.details() == str(error)
    status = await rpc_status.aio.from_call(call)  # also checks code and message agree with the trailer
    assert status is not None
    assert (status.code, status.message) == (code.value[0], str(error))
    info = error_info_of(status)
    assert (info.reason, info.domain, dict(info.metadata)) == (reason, "bacalhau-grpc", metadata)


@pytest.mark.parametrize("kind", sorted(ERRORS))
async def test_channels_call_raises_the_same_error_again(served: Served, kind: str):
    error, code, _, _ = ERRORS[kind]
    stub = vgrpc.VerifierServiceStub(channels.open_channel(served.running.address))
    with pytest.raises(errors.BacalhauError) as raised:
        await channels.call(stub.Verify, verify_request(kind))
    assert type(raised.value) is type(error)
    assert str(raised.value) == str(error)
    assert raised.value.code == code
    for attribute in ("field", "limit", "reason"):
        assert getattr(raised.value, attribute, None) == getattr(error, attribute, None)


async def test_an_unexpected_exception_is_internal_and_leaks_nothing(served: Served, caplog):
    call = served.stub.Verify(verify_request("boom"), timeout=5)
    with (
        caplog.at_level(logging.ERROR, logger="bacalhau_grpc.common.server"),
        pytest.raises(grpc.aio.AioRpcError) as raised,
    ):
        await call
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == "internal error"
    trailers = await call.trailing_metadata()
    assert SECRET not in repr(raised.value) and SECRET not in repr(list(trailers))
    # ... but the server's log has the whole story.
    (record,) = [r for r in caplog.records if r.name == "bacalhau_grpc.common.server"]
    assert "/bacalhau.verifier.v1.VerifierService/Verify" in record.getMessage()
    assert record.exc_info is not None and SECRET in str(record.exc_info[1])

    with pytest.raises(grpc_errors.RemoteError) as mapped:
        await channels.call(served.stub.Verify, verify_request("boom"))
    assert (mapped.value.code, str(mapped.value)) == (grpc.StatusCode.INTERNAL, "internal error")


async def test_a_huge_error_message_is_cut_not_turned_into_a_transport_error(served: Served):
    # gRPC refuses trailers over 16 KiB: the message (sent twice) must be cut to keep code and ErrorInfo.
    with pytest.raises(errors.InvalidArgumentError) as raised:
        await channels.call(served.stub.Verify, verify_request("huge"))
    assert raised.value.field == "Spec.Inputs"
    assert str(raised.value).startswith("Spec.Inputs: éé") and str(raised.value).endswith("...")
    assert len(str(raised.value).encode()) <= grpc_errors.MAX_DETAILS_BYTES


async def test_a_servicer_may_still_abort_by_itself(served: Served):
    with pytest.raises(grpc_errors.RemoteError) as raised:
        await channels.call(served.stub.Verify, verify_request("abort"))
    assert (raised.value.code, str(raised.value)) == (grpc.StatusCode.ABORTED, "aborted by the servicer")


async def test_a_method_the_servicer_lacks_is_unimplemented():
    running = await start_server(
        component="test", node_id="n", services=[verifier_binding(vgrpc.VerifierServiceServicer())]
    )
    try:
        async with channels.open_channel(running.address) as channel:
            stub = vgrpc.VerifierServiceStub(channel)
            with pytest.raises(grpc_errors.RemoteError) as raised:
                await channels.call(stub.GetVerifierInfo, vpb.GetVerifierInfoRequest())
        assert raised.value.code == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await running.stop(grace=0)


@pytest.mark.parametrize("service", [STREAMS, GENERIC_STREAMS])
@pytest.mark.parametrize("method", ["Verdicts", "VerdictsWritten"])
async def test_a_server_stream_ends_with_the_error_after_its_messages(
    served: Served, service: str, method: str
):
    stub = StreamsStub(served.channel, service)
    call = getattr(stub, method)(verify_request("not_found", "e-1", "e-2"), timeout=5)
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for verdict in call:
            received.append(verdict.execution_id)
    assert received == ["e-1", "e-2"]
    assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.NOT_FOUND, "job j-1 not found")
    status = await rpc_status.aio.from_call(call)
    assert error_info_of(status).reason == "NOT_FOUND"

    # channels.stream yields the same messages, then raises the typed error.
    received = []
    with pytest.raises(errors.NotFoundError, match=r"^job j-1 not found$"):
        async for verdict in channels.stream(getattr(stub, method), verify_request("not_found", "e-3")):
            received.append(verdict.execution_id)
    assert received == ["e-3"]

    # Unexpected errors in a stream are INTERNAL too; a stream without error just ends.
    with pytest.raises(grpc_errors.RemoteError, match=r"^internal error$"):
        async for _ in channels.stream(getattr(stub, method), verify_request("boom", "e-4")):
            pass
    assert [
        v.execution_id async for v in channels.stream(getattr(stub, method), verify_request("ok", "e-5"))
    ] == ["e-5"]


async def test_client_streaming_handlers_map_errors_too(served: Served):
    stub = StreamsStub(served.channel)

    async def requests(*kinds: str):
        for index, kind in enumerate(kinds):
            yield verify_request(kind, f"e-{index}")

    response = await channels.call(lambda r, **kw: stub.Collect(requests("ok", "ok"), **kw), None)
    assert [v.execution_id for v in response.verdicts] == ["e-0", "e-1"]
    with pytest.raises(errors.InvalidArgumentError) as raised:
        await channels.call(lambda r, **kw: stub.Collect(requests("ok", "invalid"), **kw), None)
    assert raised.value.field == "Deal.Concurrency"

    call = stub.Echo(requests("ok", "denied"), timeout=5)
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        async for verdict in call:
            received.append(verdict.execution_id)
    assert received == ["e-0"]
    assert failed.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_rpc_count_counts_served_calls_but_not_health_or_reflection(served: Served):
    assert served.running.rpc_count == 0
    await served.stub.Verify(verify_request("ok"), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError):
        await served.stub.Verify(verify_request("not_found"), timeout=5)
    async for _ in StreamsStub(served.channel).Verdicts(verify_request("ok", "e-1"), timeout=5):
        pass
    await health_pb2_grpc.HealthStub(served.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    await wait_until(lambda: served.running.rpc_count >= 3)
    assert served.running.rpc_count == 3


# ------------------------------------------------------------------------------------ health and stop


async def test_health_is_serving_then_not_serving_when_stopping(served: Served):
    health = health_pb2_grpc.HealthStub(served.channel)
    for service in ("", VERIFIER_SERVICE, STREAMS):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING, service
    with pytest.raises(errors.NotFoundError):
        await channels.call(health.Check, health_pb2.HealthCheckRequest(service="no.such.Service"))

    watch = health.Watch(health_pb2.HealthCheckRequest(service=VERIFIER_SERVICE), timeout=10)
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    stopping = asyncio.create_task(served.running.stop(grace=5))
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
    watch.cancel()
    await asyncio.wait_for(stopping, 10)
    assert await served.running.wait_for_termination(timeout=5)

    with pytest.raises(errors.UnavailableError):
        await channels.call(served.stub.Verify, verify_request("ok"), timeout=5)


async def test_stop_lets_calls_in_flight_finish(served: Served):
    in_flight = asyncio.ensure_future(served.stub.Verify(verify_request("wait", "e-1"), timeout=10))
    await asyncio.wait_for(served.servicer.entered.wait(), 5)
    watch = health_pb2_grpc.HealthStub(served.channel).Watch(health_pb2.HealthCheckRequest(), timeout=10)
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    stopping = asyncio.create_task(served.running.stop(grace=10))
    again = asyncio.create_task(served.running.stop(grace=10))  # a second stop waits for the first
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING  # stop has begun
    watch.cancel()
    assert not stopping.done() and not again.done()
    served.servicer.release.set()
    response = await asyncio.wait_for(in_flight, 10)
    assert [v.execution_id for v in response.verdicts] == ["e-1"]
    await asyncio.wait_for(asyncio.gather(stopping, again), 10)


async def test_a_busy_port_is_an_os_error(served: Served):
    with pytest.raises(OSError, match="cannot listen"):
        await start_server(
            component="test", node_id="n", services=[verifier_binding()], port=served.running.port
        )


async def test_bindings_are_checked():
    with pytest.raises(ValueError, match="bound twice"):
        await start_server(component="t", node_id="n", services=[verifier_binding(), verifier_binding()])
    wrong = ServiceBinding(vgrpc.add_VerifierServiceServicer_to_server, ScriptedVerifier(), "bacalhau.x.v1.X")
    with pytest.raises(ValueError, match="registered"):
        await start_server(component="t", node_id="n", services=[wrong])


# ------------------------------------------------------------------------------------------ reflection


def _inspect_with_v1alpha_client(address: str) -> dict:
    """What grpcio-reflection's own (v1alpha, synchronous) client learns from the server."""
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = descriptor_pool.DescriptorPool(database)
        method = pool.FindMethodByName(f"{VERIFIER_SERVICE}.Verify")
        job = pool.FindMessageTypeByName("bacalhau.model.v1beta1.Job")
        return {
            "services": sorted(database.get_services()),
            "method_file": database.FindFileContainingSymbol(f"{VERIFIER_SERVICE}.Verify").name,
            "input": method.input_type.full_name,
            "output": method.output_type.full_name,
            "created_at": job.fields_by_name["created_at"].message_type.full_name,
        }


async def test_a_v1alpha_reflection_client_sees_everything(served: Served):
    seen = await asyncio.to_thread(_inspect_with_v1alpha_client, served.running.address)
    assert seen == {
        "services": sorted(
            [
                VERIFIER_SERVICE,
                STREAMS,
                GENERIC_STREAMS,
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ]
        ),
        "method_file": "bacalhau/verifier/v1/verifier_service.proto",
        "input": "bacalhau.verifier.v1.VerifyRequest",
        "output": "bacalhau.verifier.v1.VerifyResponse",
        "created_at": "google.protobuf.Timestamp",
    }


async def test_reflection_v1_answers_a_raw_v1_stream(served: Served):
    v1 = reflection.v1_messages()
    assert v1.ServerReflectionRequest.DESCRIPTOR.full_name == "grpc.reflection.v1.ServerReflectionRequest"
    info = served.channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=v1.ServerReflectionRequest.SerializeToString,
        response_deserializer=v1.ServerReflectionResponse.FromString,
    )
    requests = [
        v1.ServerReflectionRequest(list_services=""),
        v1.ServerReflectionRequest(file_containing_symbol=f"{VERIFIER_SERVICE}.Verify"),
        v1.ServerReflectionRequest(file_containing_symbol="bacalhau.model.v1beta1.Engine.ENGINE_NOOP"),
        v1.ServerReflectionRequest(file_by_filename="google/protobuf/timestamp.proto"),
        v1.ServerReflectionRequest(file_by_filename="google/protobuf/struct.proto"),
        v1.ServerReflectionRequest(file_by_filename=reflection.V1_FILE),
        v1.ServerReflectionRequest(all_extension_numbers_of_type="bacalhau.verifier.v1.VerifyRequest"),
        v1.ServerReflectionRequest(file_containing_symbol="no.such.Symbol"),
        v1.ServerReflectionRequest(),
    ]
    responses = [response async for response in info(iter(requests), timeout=5)]
    assert [r.WhichOneof("message_response") for r in responses] == [
        "list_services_response",
        *["file_descriptor_response"] * 5,
        "all_extension_numbers_response",
        "error_response",
        "error_response",
    ]
    assert [r.original_request for r in responses] == requests
    assert "grpc.reflection.v1.ServerReflection" in [
        s.name for s in responses[0].list_services_response.service
    ]

    def files(response) -> list[descriptor_pb2.FileDescriptorProto]:
        protos = response.file_descriptor_response.file_descriptor_proto
        return [descriptor_pb2.FileDescriptorProto.FromString(p) for p in protos]

    verifier_files = files(responses[1])
    assert verifier_files[0].name == "bacalhau/verifier/v1/verifier_service.proto"
    names = {f.name for f in verifier_files}
    assert "google/protobuf/timestamp.proto" in names
    assert all(dep in names for f in verifier_files for dep in f.dependency), "dependencies are closed"
    assert files(responses[2])[0].name == "bacalhau/model/v1beta1/engine.proto"
    assert [f.name for f in files(responses[3])] == ["google/protobuf/timestamp.proto"]
    assert files(responses[4])[0].package == "google.protobuf"
    (v1_file,) = files(responses[5])
    assert (v1_file.package, v1_file.service[0].method[0].input_type) == (
        "grpc.reflection.v1",
        ".grpc.reflection.v1.ServerReflectionRequest",
    )
    extensions = responses[6].all_extension_numbers_response
    assert (extensions.base_type_name, list(extensions.extension_number)) == (
        "bacalhau.verifier.v1.VerifyRequest",
        [],
    )
    assert responses[7].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert responses[8].error_response.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


# ------------------------------------------------------------------------------------------ telemetry


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
    ],
)
def test_tracing_follows_the_standard_otel_environment(environ, expected):
    assert telemetry.tracing_configured(environ) is expected


def test_telemetry_without_configuration_costs_nothing():
    telemetry.setup_telemetry("test", "node-test", environ={})
    assert not telemetry.telemetry_enabled()
    assert telemetry.server_interceptors() == [] and telemetry.client_interceptors() == []
    assert not isinstance(trace.get_tracer_provider(), _sdk_provider_class())
    with telemetry.job_span("test.job", job_id="j-1", node_id="node-test", shard_index=0) as span:
        assert not span.is_recording()
    with telemetry.job_span("test.job", job_id="j-1", node_id="node-test"):  # reusable
        pass


def _sdk_provider_class() -> type:
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider


class _Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace collector: keeps every span it is sent, with its resource attributes."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict, object]] = []

    async def Export(self, request, context):
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend((resource, span) for span in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


def _attributes(span) -> dict:
    values = {}
    for attribute in span.attributes:
        kind = attribute.value.WhichOneof("value")
        values[attribute.key] = getattr(attribute.value, kind)
    return values


async def test_job_spans_reach_an_otlp_collector_as_one_trace():
    receiver = _Receiver()
    collector = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, collector)
    port = collector.add_insecure_port("127.0.0.1:0")
    await collector.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}", OTEL_BSP_SCHEDULE_DELAY="50")
        rc, out, err = await run_process(
            sys.executable, "-m", "tests.integration.common_otlp_probe", env={**env, "PYTHONPATH": str(REPO)}
        )
        assert (rc, out.strip()) == (0, "ok"), err
        await wait_until(lambda: len(receiver.spans) >= 6)
    finally:
        await collector.stop(grace=0)

    resources = {tuple(sorted(resource.items())) for resource, _ in receiver.spans}
    assert len(resources) == 1
    resource = dict(next(iter(resources)))
    assert resource["service.name"] == "bacalhau-grpc-probe"
    assert resource["nodeid"] == "node-probe"
    names = [span.name for _, span in receiver.spans]
    assert not [name for name in names if "grpc.health" in name], "health checks are not traced"

    def named(name: str, kind: int | None = None) -> list:
        found = [s for _, s in receiver.spans if s.name == name and kind in (None, s.kind)]
        return sorted(found, key=lambda s: s.start_time_unix_nano)

    method = "/bacalhau.verifier.v1.VerifierService/Verify"
    (submit,) = named("probe.submit")
    client, failed_client = named(method, trace_pb2.Span.SPAN_KIND_CLIENT)
    server, failed_server = named(method, trace_pb2.Span.SPAN_KIND_SERVER)
    verify, failed_verify = named("probe.verify")
    assert _attributes(submit) == {"jobid": "job-probe-1", "nodeid": "node-probe", "shardindex": 0}
    assert _attributes(verify) == {"jobid": "job-probe-1", "nodeid": "node-probe", "shardindex": 0}
    # One trace: submit -> client call -> (W3C traceparent over the wire) -> server call -> verify.
    assert len({s.trace_id for s in (submit, client, server, verify)}) == 1
    assert client.parent_span_id == submit.span_id
    assert server.parent_span_id == client.span_id
    assert verify.parent_span_id == server.span_id
    # The failing call: its own trace, its status code recorded on the server span.
    assert _attributes(server)["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    assert _attributes(failed_server)["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert failed_server.parent_span_id == failed_client.span_id
    assert failed_verify.parent_span_id == failed_server.span_id
    assert _attributes(failed_verify)["jobid"] == "not_found"


# ------------------------------------------------------------------------------------------ logging


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = (
        root.level,
        list(root.handlers),
        {n: logging.getLogger(n).level for n in ("grpc", "opentelemetry")},
    )
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def test_log_lines_carry_job_and_node(restore_logging):
    stream = io.StringIO()
    logs.setup_logging("debug", stream=stream)
    logs.setup_logging("INFO", stream=stream)  # a second setup replaces the first, no doubled lines
    log = logging.getLogger("bacalhau_grpc.test")
    log.info("bid accepted", extra={"job_id": "j-1", "node_id": "node-1"})
    log.info("starting")
    logs.job_logger(log, job_id="j-2", node_id="node-2").warning("shard %d timed out", 0)
    log.debug("not shown")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].endswith("INFO    bacalhau_grpc.test [job=j-1 node=node-1] bid accepted")
    assert lines[1].endswith("[job=- node=-] starting")
    assert lines[2].endswith("WARNING bacalhau_grpc.test [job=j-2 node=node-2] shard 0 timed out")
