"""The requester's compute client coalesces calls to one node: while a node is busy with earlier calls,
the asks (and updates) due meanwhile go out together as one AskForBids (UpdateExecutions) call, so a job
with thousands of shards does not overrun the node's gRPC server (a real server on 127.0.0.1:0)."""

import asyncio

import grpc

from bacalhau_grpc.common.batching import DEFAULT_MAX_IN_FLIGHT
from bacalhau_grpc.common.errors import NotFoundError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2 as cpb
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2_grpc as cgrpc
from bacalhau_grpc.requester.clients.compute import GrpcComputeClient
from bacalhau_grpc.requester.domain.shard_fsm import NotifyBidAccepted
from tests.batch_fakes import BatchedCompute

ASKS = 1000


class CountingNode(BatchedCompute, cgrpc.ComputeServiceServicer):
    """Answers every ask with a bid; forgets nothing but execution "e-lost"."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.in_flight = 0
        self.peak = 0

    async def AskForBids(self, request, context):
        self.batches.append(len(request.asks))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0)  # let the client queue more meanwhile
            return await super().AskForBids(request, context)
        finally:
            self.in_flight -= 1

    async def AskForBid(self, request, context):
        return cpb.AskForBidResponse(accepted=True, execution_id=f"e-{request.shard_index}", node_id="n")

    async def BidAccepted(self, request, context):
        if request.execution_id == "e-lost":
            await context.abort(grpc.StatusCode.NOT_FOUND, "execution e-lost not found")
        return cpb.BidAcceptedResponse()


async def _serve(servicer):
    server = grpc.aio.server()
    cgrpc.add_ComputeServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_many_asks_at_once_go_out_in_a_few_batches_with_every_answer_in_place():
    node = CountingNode()
    server, address = await _serve(node)
    client = GrpcComputeClient(call_timeout=30)
    try:
        job = pb.Job(id="job-1")
        # Each ask on its own, as a requester busy with many jobs makes them.
        batches = await asyncio.wait_for(
            asyncio.gather(*(client.ask_for_bids(address, [(job, i)]) for i in range(ASKS))), 30
        )
        answers = [answer for (answer,) in batches]
    finally:
        await client.close()
        await server.stop(0)
    assert [a.execution_id for a in answers] == [f"e-{i}" for i in range(ASKS)]
    assert sum(node.batches) == ASKS
    assert len(node.batches) < ASKS // 50, node.batches
    assert node.peak <= DEFAULT_MAX_IN_FLIGHT


async def test_one_failed_update_fails_only_its_item():
    node = CountingNode()
    server, address = await _serve(node)
    client = GrpcComputeClient(call_timeout=30)
    try:
        results = await client.update_executions(
            address,
            [NotifyBidAccepted("n", "e-1"), NotifyBidAccepted("n", "e-lost"), NotifyBidAccepted("n", "e-2")],
        )
    finally:
        await client.close()
        await server.stop(0)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], NotFoundError)
    assert str(results[1]) == "execution e-lost not found"
