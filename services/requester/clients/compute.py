"""The domain's ComputePort over gRPC: one cached channel per compute node address."""

import asyncio

import grpc

from bacalhau.compute.v1 import compute_service_pb2 as cpb
from bacalhau.compute.v1 import compute_service_pb2_grpc as cgrpc
from bacalhau_grpc.common.channels import DEFAULT_TIMEOUT, call, open_channel
from bacalhau_grpc.common.errors import DeadlineExceededError, UnavailableError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.ports import BidAnswer

# BidAccepted and ResultAccepted are idempotent on the node: a call that may not have arrived (the node was
# unreachable or did not answer in time) is tried this many times in all, with a short back-off, before
# the node counts as lost and the shard replaces it.
ATTEMPTS = 3
RETRY_DELAY = 0.2
# At most this many AskForBid calls in flight per node; the others wait their turn (their deadline starts
# when they are sent). A sharded job asks for one bid per shard at once: thousands of calls in flight
# would overrun the node's gRPC server (past about 1,000 requests not yet handled it cancels new ones)
# and the call deadline. The shard's negotiation timeout bounds the wait.
MAX_ASKS_IN_FLIGHT = 16


class GrpcComputeClient:
    """Calls compute nodes; every call has a deadline and failures raise typed BacalhauErrors."""

    def __init__(self, *, call_timeout: float = DEFAULT_TIMEOUT) -> None:
        self.call_timeout = call_timeout
        self._channels: dict[str, tuple[grpc.aio.Channel, cgrpc.ComputeServiceStub]] = {}
        self._asks: dict[str, asyncio.Semaphore] = {}

    def _stub(self, address: str) -> cgrpc.ComputeServiceStub:
        cached = self._channels.get(address)
        if cached is None:
            channel = open_channel(address)
            cached = (channel, cgrpc.ComputeServiceStub(channel))
            self._channels[address] = cached
        return cached[1]

    async def ask_for_bid(self, address: str, job: pb.Job, shard_index: int) -> BidAnswer:
        request = cpb.AskForBidRequest(shard_index=shard_index)
        request.job.CopyFrom(job)
        slots = self._asks.setdefault(address, asyncio.Semaphore(MAX_ASKS_IN_FLIGHT))
        async with slots:
            response = await call(self._stub(address).AskForBid, request, timeout=self.call_timeout)
        return BidAnswer(
            accepted=response.accepted,
            execution_id=response.execution_id,
            reason=response.reason,
            node_id=response.node_id,
        )

    async def _retried(self, address: str, method_name: str, request) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await call(getattr(self._stub(address), method_name), request, timeout=self.call_timeout)
                return
            except (UnavailableError, DeadlineExceededError):
                if attempt == ATTEMPTS:
                    raise
                await asyncio.sleep(RETRY_DELAY * attempt)

    async def bid_accepted(self, address: str, execution_id: str) -> None:
        await self._retried(address, "BidAccepted", cpb.BidAcceptedRequest(execution_id=execution_id))

    async def bid_rejected(self, address: str, execution_id: str, reason: str) -> None:
        await call(
            self._stub(address).BidRejected,
            cpb.BidRejectedRequest(execution_id=execution_id, reason=reason),
            timeout=self.call_timeout,
        )

    async def result_accepted(self, address: str, execution_id: str) -> None:
        await self._retried(address, "ResultAccepted", cpb.ResultAcceptedRequest(execution_id=execution_id))

    async def result_rejected(self, address: str, execution_id: str, reason: str) -> None:
        await call(
            self._stub(address).ResultRejected,
            cpb.ResultRejectedRequest(execution_id=execution_id, reason=reason),
            timeout=self.call_timeout,
        )

    async def cancel_execution(self, address: str, execution_id: str, reason: str) -> None:
        await call(
            self._stub(address).CancelExecution,
            cpb.CancelExecutionRequest(execution_id=execution_id, reason=reason),
            timeout=self.call_timeout,
        )

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel, _ in channels.values():
            await channel.close()
