"""The domain's ComputePort over gRPC: one cached channel per compute node address."""

import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import grpc

from bacalhau_grpc.common.batching import Coalescer
from bacalhau_grpc.common.channels import DEFAULT_TIMEOUT, call, open_channel, stream
from bacalhau_grpc.common.grpc_errors import RemoteError, error_from_outcome
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2 as cpb
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2_grpc as cgrpc
from bacalhau_grpc.requester.domain.ports import BidAnswer, ExecutionUpdate
from bacalhau_grpc.requester.domain.shard_fsm import (
    CancelExecution,
    NotifyBidAccepted,
    NotifyBidRejected,
    NotifyResultAccepted,
    NotifyResultRejected,
)


class GrpcComputeClient:
    """Calls compute nodes; every call has a deadline and failed items get typed BacalhauErrors.

    Calls to one node are coalesced (`common.batching`): asks go out as AskForBids and the other calls
    as UpdateExecutions, one at a time while the node keeps up and in batches when many are due at once
    (a sharded job asks for thousands of bids together; a node's gRPC server would cancel requests past
    about 1,000 waiting to be handled).
    """

    def __init__(
        self, *, call_timeout: float = DEFAULT_TIMEOUT, credentials: grpc.ChannelCredentials | None = None
    ) -> None:
        self.call_timeout = call_timeout
        self.credentials = credentials  # TLS (the requester's certificate), or None: plaintext
        self._channels: dict[str, tuple[grpc.aio.Channel, cgrpc.ComputeServiceStub]] = {}
        self._asks: Coalescer[str, cpb.AskForBidRequest, cpb.AskForBidResponse] = Coalescer(
            self._send_asks, size=_bytes
        )
        self._updates: Coalescer[str, cpb.ExecutionUpdate, None] = Coalescer(self._send_updates, size=_bytes)

    def _stub(self, address: str) -> cgrpc.ComputeServiceStub:
        cached = self._channels.get(address)
        if cached is None:
            channel = open_channel(address, credentials=self.credentials)
            cached = (channel, cgrpc.ComputeServiceStub(channel))
            self._channels[address] = cached
        return cached[1]

    async def _send_asks(
        self, address: str, asks: list[cpb.AskForBidRequest]
    ) -> list[cpb.AskForBidResponse | Exception]:
        request = cpb.AskForBidsRequest(asks=asks)
        response = await call(self._stub(address).AskForBids, request, timeout=self.call_timeout)
        if len(response.outcomes) != len(response.answers):
            raise RemoteError(
                f"AskForBids answered {len(response.answers)} asks with {len(response.outcomes)} outcomes"
            )
        return [
            error_from_outcome(outcome) or answer
            for answer, outcome in zip(response.answers, response.outcomes, strict=True)
        ]

    async def _send_updates(self, address: str, updates: list[cpb.ExecutionUpdate]) -> list[Exception | None]:
        request = cpb.UpdateExecutionsRequest(updates=updates)
        response = await call(self._stub(address).UpdateExecutions, request, timeout=self.call_timeout)
        return [error_from_outcome(outcome) for outcome in response.outcomes]

    async def ask_for_bids(
        self, address: str, asks: Sequence[tuple[pb.Job, int]]
    ) -> list[BidAnswer | BaseException]:
        requests = []
        for job, shard_index in asks:
            ask = cpb.AskForBidRequest(shard_index=shard_index)
            ask.job.CopyFrom(job)
            requests.append(ask)
        return [
            result
            if isinstance(result, BaseException)
            else BidAnswer(
                accepted=result.accepted,
                execution_id=result.execution_id,
                reason=result.reason,
                node_id=result.node_id,
                busy=result.busy,
            )
            for result in await self._asks.submit_many(address, requests)
        ]

    async def update_executions(
        self, address: str, updates: Sequence[ExecutionUpdate]
    ) -> list[BaseException | None]:
        results = await self._updates.submit_many(address, [_update_message(u) for u in updates])
        return [result if isinstance(result, BaseException) else None for result in results]

    async def stream_logs(
        self, address: str, execution_id: str, follow: bool
    ) -> AsyncGenerator[tuple[bool, bytes], None]:
        """StreamExecutionLogs, not coalesced; no deadline (a followed run lasts as long as it lasts)."""
        request = cpb.StreamExecutionLogsRequest(execution_id=execution_id, follow=follow)
        async with contextlib.aclosing(stream(self._stub(address).StreamExecutionLogs, request)) as responses:
            async for response in responses:
                yield response.stderr, response.data

    async def close(self) -> None:
        await self._asks.close()
        await self._updates.close()
        channels, self._channels = self._channels, {}
        for channel, _ in channels.values():
            await channel.close()


def _update_message(update: ExecutionUpdate) -> cpb.ExecutionUpdate:
    match update:
        case NotifyBidAccepted():
            return cpb.ExecutionUpdate(bid_accepted=cpb.BidAcceptedRequest(execution_id=update.execution_id))
        case NotifyBidRejected():
            rejected = cpb.BidRejectedRequest(execution_id=update.execution_id, reason=update.reason)
            return cpb.ExecutionUpdate(bid_rejected=rejected)
        case NotifyResultAccepted():
            accepted = cpb.ResultAcceptedRequest(execution_id=update.execution_id)
            return cpb.ExecutionUpdate(result_accepted=accepted)
        case NotifyResultRejected():
            result = cpb.ResultRejectedRequest(execution_id=update.execution_id, reason=update.reason)
            return cpb.ExecutionUpdate(result_rejected=result)
        case CancelExecution():
            cancel = cpb.CancelExecutionRequest(execution_id=update.execution_id, reason=update.reason)
            return cpb.ExecutionUpdate(cancel_execution=cancel)


def _bytes(message: Any) -> int:
    return message.ByteSize()
