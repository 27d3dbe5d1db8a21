"""RequesterNodeService over gRPC, the requester's side of the node protocol (what compute nodes call):
decode, one domain call, encode. Who may call it is decided before a method runs (`api.access`): with TLS,
a compute certificate, speaking only for the node ID in it; the domain refuses reports about executions the
node does not hold."""

import logging

import grpc

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.grpc_errors import outcome_for

# The service's own file (it holds no messages, so its _pb2_grpc does not import it): loaded here so that
# server reflection finds RequesterNodeService (`grpcurl describe`).
from bacalhau_grpc.pb.requester.v1 import requester_node_service_pb2  # noqa: F401
from bacalhau_grpc.pb.requester.v1 import requester_node_service_pb2_grpc as rngrpc
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.requester.domain.lifecycle import Requester
from bacalhau_grpc.requester.domain.reports import (
    CancelComplete,
    ComputeFailure,
    PublishComplete,
    Report,
    RunComplete,
)

SERVICE_NAME = "bacalhau.requester.v1.RequesterNodeService"
log = logging.getLogger(__name__)


class RequesterNodeServicer(rngrpc.RequesterNodeServiceServicer):
    def __init__(self, requester: Requester) -> None:
        self.requester = requester

    async def RegisterNode(
        self, request: rpb.RegisterNodeRequest, context: grpc.aio.ServicerContext
    ) -> rpb.RegisterNodeResponse:
        await self.requester.register_node(request.node)
        response = rpb.RegisterNodeResponse(requester_node_id=self.requester.node_id)
        response.heartbeat_interval.FromNanoseconds(round(self.requester.heartbeat_interval * 1e9))
        return response

    async def Heartbeat(
        self, request: rpb.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> rpb.HeartbeatResponse:
        available = request.available_capacity if request.HasField("available_capacity") else None
        await self.requester.heartbeat(
            request.node_id,
            available,
            running=request.running_executions,
            queued=request.queued_executions,
        )
        return rpb.HeartbeatResponse()

    async def OnRunComplete(
        self, request: rpb.OnRunCompleteRequest, context: grpc.aio.ServicerContext
    ) -> rpb.OnRunCompleteResponse:
        await self.requester.report(_run_complete(request))
        return rpb.OnRunCompleteResponse()

    async def OnPublishComplete(
        self, request: rpb.OnPublishCompleteRequest, context: grpc.aio.ServicerContext
    ) -> rpb.OnPublishCompleteResponse:
        await self.requester.report(_publish_complete(request))
        return rpb.OnPublishCompleteResponse()

    async def OnComputeFailure(
        self, request: rpb.OnComputeFailureRequest, context: grpc.aio.ServicerContext
    ) -> rpb.OnComputeFailureResponse:
        await self.requester.report(_compute_failure(request))
        return rpb.OnComputeFailureResponse()

    async def OnCancelComplete(
        self, request: rpb.OnCancelCompleteRequest, context: grpc.aio.ServicerContext
    ) -> rpb.OnCancelCompleteResponse:
        await self.requester.report(_cancel_complete(request))
        return rpb.OnCancelCompleteResponse()

    async def ReportExecutions(
        self, request: rpb.ReportExecutionsRequest, context: grpc.aio.ServicerContext
    ) -> rpb.ReportExecutionsResponse:
        # Taken together: one domain step for the reports in order, one commit for all of them.
        decoded = [_decode(report) for report in request.reports]
        taken = await self.requester.reports([r for r in decoded if not isinstance(r, Exception)])
        results = iter(taken)
        outcomes = [
            outcome_for(r if isinstance(r, Exception) else next(results), logger=log, what="ReportExecutions")
            for r in decoded
        ]
        return rpb.ReportExecutionsResponse(outcomes=outcomes)


def _decode(report: rpb.ExecutionReport) -> Report | Exception:
    match report.WhichOneof("report"):
        case "run_complete":
            return _run_complete(report.run_complete)
        case "publish_complete":
            return _publish_complete(report.publish_complete)
        case "compute_failure":
            return _compute_failure(report.compute_failure)
        case "cancel_complete":
            return _cancel_complete(report.cancel_complete)
        case _:
            return InvalidArgumentError(
                "an execution report names no report (run_complete, publish_complete, …)", field="report"
            )


def _run_complete(request: rpb.OnRunCompleteRequest) -> RunComplete:
    return RunComplete(
        job_id=request.job_id,
        shard_index=request.shard_index,
        node_id=request.node_id,
        execution_id=request.execution_id,
        verification_proposal=request.verification_proposal,
        run_output=request.run_output if request.HasField("run_output") else None,
        status=request.status,
    )


def _publish_complete(request: rpb.OnPublishCompleteRequest) -> PublishComplete:
    return PublishComplete(
        job_id=request.job_id,
        shard_index=request.shard_index,
        node_id=request.node_id,
        execution_id=request.execution_id,
        published_result=request.published_result if request.HasField("published_result") else None,
        status=request.status,
    )


def _compute_failure(request: rpb.OnComputeFailureRequest) -> ComputeFailure:
    return ComputeFailure(
        job_id=request.job_id,
        shard_index=request.shard_index,
        node_id=request.node_id,
        execution_id=request.execution_id,
        error=request.error,
    )


def _cancel_complete(request: rpb.OnCancelCompleteRequest) -> CancelComplete:
    return CancelComplete(
        job_id=request.job_id,
        shard_index=request.shard_index,
        node_id=request.node_id,
        execution_id=request.execution_id,
    )
