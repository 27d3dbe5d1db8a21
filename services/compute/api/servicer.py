"""ComputeService over gRPC: decode, one call to the node, encode. Errors are mapped by the server.

AskForBid, BidAccepted and ResultAccepted answer only once the node's store has committed what the
call changed: the requester acts on those answers, so they must survive a crash of this node."""

import asyncio
import contextlib
import functools
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.grpc_errors import outcome_of
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.logs import execution_logs
from bacalhau_grpc.compute.domain.node import ComputeNode
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2 as cpb
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2_grpc as cgrpc

SERVICE_NAME = "bacalhau.compute.v1.ComputeService"

log = logging.getLogger(__name__)
# The shards of one AskForBids decided at the same time (a bid may wait for the node's probes).
BIDS_DECIDED_AT_ONCE = 16


class ComputeServiceServicer(cgrpc.ComputeServiceServicer):
    def __init__(self, node: ComputeNode, *, rpc_count: Callable[[], int] | None = None) -> None:
        self.node = node
        self.calls: Counter[str] = Counter()
        self.rpc_count = rpc_count

    async def AskForBid(self, request: cpb.AskForBidRequest, context: object) -> cpb.AskForBidResponse:
        self.calls["AskForBid"] += 1
        answer = await self._bid(request.job, request.shard_index)
        await self.node.store.flush()  # the requester builds on this answer: it must survive a crash
        return answer

    async def AskForBids(self, request: cpb.AskForBidsRequest, context: object) -> cpb.AskForBidsResponse:
        self.calls["AskForBids"] += 1
        slots = asyncio.Semaphore(BIDS_DECIDED_AT_ONCE)
        answers = [cpb.AskForBidResponse() for _ in request.asks]

        async def answer(index: int, ask: cpb.AskForBidRequest) -> None:
            async with slots:
                answers[index] = await self._bid(ask.job, ask.shard_index)

        outcomes = await asyncio.gather(
            *(
                outcome_of(functools.partial(answer, i, ask), logger=log, what="AskForBids")
                for i, ask in enumerate(request.asks)
            )
        )
        await self.node.store.flush()
        return cpb.AskForBidsResponse(answers=answers, outcomes=outcomes)

    async def _bid(self, job: pb.Job, shard_index: int) -> cpb.AskForBidResponse:
        bid = await self.node.ask_for_bid(job, shard_index)
        return cpb.AskForBidResponse(
            accepted=bid.accepted,
            execution_id=bid.execution_id,
            reason=bid.reason,
            node_id=self.node.node_id,
            busy=bid.busy,
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

    async def UpdateExecutions(
        self, request: cpb.UpdateExecutionsRequest, context: object
    ) -> cpb.UpdateExecutionsResponse:
        self.calls["UpdateExecutions"] += 1
        outcomes = [
            await outcome_of(self._updater(update), logger=log, what="UpdateExecutions")
            for update in request.updates
        ]
        await self.node.store.flush()
        return cpb.UpdateExecutionsResponse(outcomes=outcomes)

    def _updater(self, update: cpb.ExecutionUpdate) -> Callable[[], object]:
        """The node's method for one update, bound to its arguments."""
        kind = update.WhichOneof("update")
        node = self.node
        if kind == "bid_accepted":
            return lambda: node.bid_accepted(update.bid_accepted.execution_id)
        if kind == "bid_rejected":
            return lambda: node.bid_rejected(update.bid_rejected.execution_id, update.bid_rejected.reason)
        if kind == "result_accepted":
            return lambda: node.result_accepted(update.result_accepted.execution_id)
        if kind == "result_rejected":
            rejected = update.result_rejected
            return lambda: node.result_rejected(rejected.execution_id, rejected.reason)
        if kind == "cancel_execution":
            cancel = update.cancel_execution
            return lambda: node.cancel_execution(cancel.execution_id, cancel.reason)
        return _invalid("an execution update names no update (bid_accepted, bid_rejected, …)")

    async def StreamExecutionLogs(
        self, request: cpb.StreamExecutionLogsRequest, context: object
    ) -> AsyncIterator[cpb.StreamExecutionLogsResponse]:
        self.calls["StreamExecutionLogs"] += 1
        chunks = execution_logs(self.node, request.execution_id, follow=request.follow)
        async with contextlib.aclosing(chunks):  # a client that leaves closes the files at once
            async for stderr, data in chunks:
                yield cpb.StreamExecutionLogsResponse(stderr=stderr, data=data)

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


def _invalid(message: str) -> Callable[[], object]:
    def fail() -> object:
        raise InvalidArgumentError(message, field="update")

    return fail
