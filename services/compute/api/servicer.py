"""ComputeService over gRPC: decode, one call to the node, encode. Errors are mapped by the server.

AskForBid, BidAccepted and ResultAccepted answer only once the node's store has committed what the
call changed: the requester acts on those answers, so they must survive a crash of this node."""

import json
from collections import Counter
from collections.abc import Callable

from bacalhau.compute.v1 import compute_service_pb2 as cpb
from bacalhau.compute.v1 import compute_service_pb2_grpc as cgrpc
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.node import ComputeNode

SERVICE_NAME = "bacalhau.compute.v1.ComputeService"


class ComputeServiceServicer(cgrpc.ComputeServiceServicer):
    def __init__(self, node: ComputeNode, *, rpc_count: Callable[[], int] | None = None) -> None:
        self.node = node
        self.calls: Counter[str] = Counter()
        self.rpc_count = rpc_count

    async def AskForBid(self, request: cpb.AskForBidRequest, context: object) -> cpb.AskForBidResponse:
        self.calls["AskForBid"] += 1
        bid = await self.node.ask_for_bid(request.job, request.shard_index)
        await self.node.store.flush()  # the requester builds on this answer: it must survive a crash
        return cpb.AskForBidResponse(
            accepted=bid.accepted, execution_id=bid.execution_id, reason=bid.reason, node_id=self.node.node_id
        )

    async def BidAccepted(self, request: cpb.BidAcceptedRequest, context: object) -> cpb.BidAcceptedResponse:
        self.calls["BidAccepted"] += 1
        self.node.bid_accepted(request.execution_id)
        await self.node.store.flush()
        return cpb.BidAcceptedResponse()

    async def BidRejected(self, request: cpb.BidRejectedRequest, context: object) -> cpb.BidRejectedResponse:
        self.calls["BidRejected"] += 1
        self.node.bid_rejected(request.execution_id, request.reason)
        return cpb.BidRejectedResponse()

    async def ResultAccepted(
        self, request: cpb.ResultAcceptedRequest, context: object
    ) -> cpb.ResultAcceptedResponse:
        self.calls["ResultAccepted"] += 1
        self.node.result_accepted(request.execution_id)
        await self.node.store.flush()
        return cpb.ResultAcceptedResponse()

    async def ResultRejected(
        self, request: cpb.ResultRejectedRequest, context: object
    ) -> cpb.ResultRejectedResponse:
        self.calls["ResultRejected"] += 1
        self.node.result_rejected(request.execution_id, request.reason)
        return cpb.ResultRejectedResponse()

    async def CancelExecution(
        self, request: cpb.CancelExecutionRequest, context: object
    ) -> cpb.CancelExecutionResponse:
        self.calls["CancelExecution"] += 1
        self.node.cancel_execution(request.execution_id, request.reason)
        return cpb.CancelExecutionResponse()

    async def GetNodeInfo(self, request: cpb.GetNodeInfoRequest, context: object) -> cpb.GetNodeInfoResponse:
        self.calls["GetNodeInfo"] += 1
        debug = self.node.debug_info()
        rpcs: dict[str, int] = dict(sorted(self.calls.items()))
        if self.rpc_count is not None:
            rpcs["total_served"] = self.rpc_count()
        debug_info = [pb.DebugInfo(component="rpcs", info=json.dumps(rpcs, sort_keys=True))]
        debug_info += [
            pb.DebugInfo(component=component, info=json.dumps(value)) for component, value in debug.items()
        ]
        return cpb.GetNodeInfoResponse(
            node=self.node.node_info(),
            available_capacity=self.node.available_capacity(),
            active_executions=self.node.active_executions(),
            debug_info=debug_info,
        )
