"""Run as `python -m tests.integration.common_otlp_probe` with OTEL_* set: one traced job call, then exit.

In its own process so the global tracer provider it installs never leaks into other tests. It serves the
test verifier, calls Verify inside a job span through `channels` (client interceptor → W3C traceparent →
server interceptor), opens a job span inside the handler, makes a failing call (NOT_FOUND), checks
health (untraced), flushes and prints "ok".
"""

from __future__ import annotations

import asyncio
from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc

from bacalhau_grpc.common import channels, errors, telemetry
from bacalhau_grpc.common.server import start_server
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2 as vpb
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2_grpc as vgrpc
from tests.integration.common_testing import ScriptedVerifier, verifier_binding, verify_request

NODE_ID = "node-probe"
JOB_ID = "job-probe-1"


class TracedVerifier(ScriptedVerifier):
    async def Verify(self, request: vpb.VerifyRequest, context: Any) -> vpb.VerifyResponse:
        with telemetry.job_span(
            "probe.verify", job_id=request.job.id, node_id=NODE_ID, shard_index=request.shard_index
        ):
            return await super().Verify(request, context)


async def main() -> None:
    telemetry.setup_telemetry("probe", NODE_ID)
    assert telemetry.telemetry_enabled(), "OTEL_* should have turned tracing on"
    running = await start_server(
        component="probe", node_id=NODE_ID, services=[verifier_binding(TracedVerifier())]
    )
    channel = channels.open_channel(running.address)
    try:
        stub = vgrpc.VerifierServiceStub(channel)
        with telemetry.job_span("probe.submit", job_id=JOB_ID, node_id=NODE_ID, shard_index=0):
            request = verify_request(JOB_ID, "e-1")
            request.shard_index = 0
            response = await channels.call(stub.Verify, request)
        assert [v.execution_id for v in response.verdicts] == ["e-1"]
        # Errors keep their status and ErrorInfo through both tracing interceptors.
        try:
            await channels.call(stub.Verify, verify_request("not_found"))
        except errors.NotFoundError as error:
            assert (str(error), error.error_info.reason) == ("job j-1 not found", "NOT_FOUND")
        else:
            raise AssertionError("Verify should have failed")
        health = health_pb2_grpc.HealthStub(channel)
        await channels.call(health.Check, health_pb2.HealthCheckRequest())
    finally:
        await channel.close()
        await running.stop(grace=0)
    telemetry.shutdown_telemetry()
    print("ok", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
