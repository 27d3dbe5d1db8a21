"""The domain's ComputePort over gRPC: one cached channel per compute node address."""

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import grpc

from bacalhau_grpc.common.batching import Coalescer
from bacalhau_grpc.common.channels import DEFAULT_TIMEOUT, call, open_channel, stream
from bacalhau_grpc.common.errors import DeadlineExceededError, UnavailableError
from bacalhau_grpc.common.grpc_errors import RemoteError, error_from_outcome
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2 as cpb
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2_grpc as cgrpc
from bacalhau_grpc.requester.domain.ports import BidAnswer

# BidAccepted and ResultAccepted are idempotent on the node: a call that may not have arrived (the node was
# unreachable or did not answer in time) is tried this many times in all, with a short back-off, before
# the node counts as lost and the shard replaces it.
ATTEMPTS = 3
RETRY_DELAY = 0.2


class GrpcComputeClient:
    """Calls compute nodes; every call has a deadline and failures raise typed BacalhauErrors.

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

    async def ask_for_bid(self, address: str, job: pb.Job, shard_index: int) -> BidAnswer:
        ask = cpb.AskForBidRequest(shard_index=shard_index)
        ask.job.CopyFrom(job)
        response = await self._asks.submit(address, ask)
        return BidAnswer(
            accepted=response.accepted,
            execution_id=response.execution_id,
            reason=response.reason,
            node_id=response.node_id,
            busy=response.busy,
        )

    async def _update(self, address: str, update: cpb.ExecutionUpdate, *, attempts: int = 1) -> None:
        for attempt in range(1, attempts + 1):
            try:
                await self._updates.submit(address, update)
                return
            except (UnavailableError, DeadlineExceededError):
                if attempt == attempts:
                    raise
                await asyncio.sleep(RETRY_DELAY * attempt)

    async def bid_accepted(self, address: str, execution_id: str) -> None:
        accepted = cpb.BidAcceptedRequest(execution_id=execution_id)
        await self._update(address, cpb.ExecutionUpdate(bid_accepted=accepted), attempts=ATTEMPTS)

    async def bid_rejected(self, address: str, execution_id: str, reason: str) -> None:
        rejected = cpb.BidRejectedRequest(execution_id=execution_id, reason=reason)
        await self._update(address, cpb.ExecutionUpdate(bid_rejected=rejected))

    async def result_accepted(self, address: str, execution_id: str) -> None:
        accepted = cpb.ResultAcceptedRequest(execution_id=execution_id)
        await self._update(address, cpb.ExecutionUpdate(result_accepted=accepted), attempts=ATTEMPTS)

    async def result_rejected(self, address: str, execution_id: str, reason: str) -> None:
        rejected = cpb.ResultRejectedRequest(execution_id=execution_id, reason=reason)
        await self._update(address, cpb.ExecutionUpdate(result_rejected=rejected))

    async def cancel_execution(self, address: str, execution_id: str, reason: str) -> None:
        cancel = cpb.CancelExecutionRequest(execution_id=execution_id, reason=reason)
        await self._update(address, cpb.ExecutionUpdate(cancel_execution=cancel))

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


def _bytes(message: Any) -> int:
    return message.ByteSize()
