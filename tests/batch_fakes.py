"""Batch calls for fake servicers that implement only the single calls: each item runs the single call's
handler, and an `abort` inside it fails that item only (its Outcome), as a real servicer's item would."""

import logging
from typing import ClassVar

from bacalhau_grpc.common.grpc_errors import error_from_status, outcome_of
from bacalhau_grpc.pb.batch.v1 import outcome_pb2 as batch_pb2
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2 as cpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2 as vpb

log = logging.getLogger(__name__)


class _ItemContext:
    def __init__(self, context) -> None:
        self._context = context

    async def abort(self, code, details: str = "", trailing_metadata=()) -> None:
        raise error_from_status(code, details)

    def __getattr__(self, name: str):
        return getattr(self._context, name)


async def _outcomes(servicer, items, field: str, methods: dict[str, str], context) -> list:
    outcomes = []
    for item in items:
        kind = item.WhichOneof(field)
        handler = getattr(servicer, methods[kind])
        request = getattr(item, kind)
        outcomes.append(
            await outcome_of(lambda h=handler, r=request: h(r, _ItemContext(context)), logger=log, what=kind)
        )
    return outcomes


class BatchedCompute:
    """AskForBids and UpdateExecutions for a fake ComputeService servicer."""

    _UPDATES: ClassVar[dict[str, str]] = {
        "bid_accepted": "BidAccepted",
        "bid_rejected": "BidRejected",
        "result_accepted": "ResultAccepted",
        "result_rejected": "ResultRejected",
        "cancel_execution": "CancelExecution",
    }

    async def AskForBids(self, request, context):
        answers = [await self.AskForBid(ask, context) for ask in request.asks]
        return cpb.AskForBidsResponse(answers=answers, outcomes=[batch_pb2.Outcome() for _ in answers])

    async def UpdateExecutions(self, request, context):
        outcomes = await _outcomes(self, request.updates, "update", self._UPDATES, context)
        return cpb.UpdateExecutionsResponse(outcomes=outcomes)


class BatchedRequester:
    """ReportExecutions for a fake RequesterService servicer."""

    _REPORTS: ClassVar[dict[str, str]] = {
        "run_complete": "OnRunComplete",
        "publish_complete": "OnPublishComplete",
        "compute_failure": "OnComputeFailure",
        "cancel_complete": "OnCancelComplete",
    }

    async def ReportExecutions(self, request, context):
        outcomes = await _outcomes(self, request.reports, "report", self._REPORTS, context)
        return rpb.ReportExecutionsResponse(outcomes=outcomes)


class BatchedVerifier:
    """VerifyShards for a fake VerifierService servicer."""

    async def VerifyShards(self, request, context):
        return vpb.VerifyShardsResponse(results=[await self.Verify(r, context) for r in request.requests])
