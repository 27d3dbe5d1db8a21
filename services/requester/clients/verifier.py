"""The domain's VerifierPort over gRPC."""

from collections.abc import Sequence

import grpc

from bacalhau_grpc.common.batching import Coalescer
from bacalhau_grpc.common.channels import DEFAULT_TIMEOUT, call, open_channel
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2 as vpb
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2_grpc as vgrpc
from bacalhau_grpc.requester.domain.ports import VerifyRequest
from bacalhau_grpc.requester.domain.shard_fsm import Verdict


class GrpcVerifierClient:
    """Verify requests are coalesced (`common.batching`) into VerifyShards calls when many are due."""

    def __init__(
        self,
        address: str,
        *,
        call_timeout: float = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.address = address
        self.call_timeout = call_timeout
        self.credentials = credentials  # TLS (the requester's certificate), or None: plaintext
        self._channel: grpc.aio.Channel | None = None
        self._stub: vgrpc.VerifierServiceStub | None = None
        self._requests: Coalescer[None, vpb.VerifyRequest, vpb.VerifyResponse] = Coalescer(
            self._send, size=lambda request: request.ByteSize()
        )

    def _get_stub(self) -> vgrpc.VerifierServiceStub:
        if self._stub is None:
            self._channel = open_channel(self.address, credentials=self.credentials)
            self._stub = vgrpc.VerifierServiceStub(self._channel)
        return self._stub

    async def verify_shards(self, requests: Sequence[VerifyRequest]) -> list[list[Verdict] | BaseException]:
        messages = []
        for job, shard_index, proposals in requests:
            request = vpb.VerifyRequest(shard_index=shard_index)
            request.job.CopyFrom(job)
            for proposal in proposals:
                item = request.executions.add(
                    execution_id=proposal.execution_id,
                    node_id=proposal.node_id,
                    verification_proposal=proposal.proposal,
                )
                if proposal.run_output is not None:
                    item.run_output.CopyFrom(proposal.run_output)
            messages.append(request)
        return [
            result
            if isinstance(result, BaseException)
            else [
                Verdict(execution_id=v.execution_id, node_id=v.node_id, accepted=v.accepted, reason=v.reason)
                for v in result.verdicts
            ]
            for result in await self._requests.submit_many(None, messages)
        ]

    async def _send(self, _: None, requests: list[vpb.VerifyRequest]) -> list[vpb.VerifyResponse]:
        batch = vpb.VerifyShardsRequest(requests=requests)
        response = await call(self._get_stub().VerifyShards, batch, timeout=self.call_timeout)
        return list(response.results)

    async def close(self) -> None:
        await self._requests.close()
        if self._channel is not None:
            channel, self._channel, self._stub = self._channel, None, None
            await channel.close()
