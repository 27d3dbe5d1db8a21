"""The VerifierService servicer: decode, one domain call, encode."""

import logging

from bacalhau_grpc.common.telemetry import job_span
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2 as vpb
from bacalhau_grpc.pb.verifier.v1 import verifier_service_pb2_grpc as vgrpc
from bacalhau_grpc.verifier.domain import verification

log = logging.getLogger(__name__)


class VerifierServicer(vgrpc.VerifierServiceServicer):
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id

    async def Verify(self, request: vpb.VerifyRequest, context) -> vpb.VerifyResponse:
        return self._verify(request.job, request.shard_index, request.executions)

    async def VerifyShards(self, request: vpb.VerifyShardsRequest, context) -> vpb.VerifyShardsResponse:
        return vpb.VerifyShardsResponse(
            results=[self._verify(r.job, r.shard_index, r.executions) for r in request.requests]
        )

    def _verify(self, job, shard_index: int, executions) -> vpb.VerifyResponse:
        with job_span("verify", job_id=job.id, node_id=self.node_id, shard_index=shard_index):
            verdicts = verification.verify(job, shard_index, executions)
        log.info(
            "verified shard %d: %d of %d results accepted",
            shard_index,
            sum(v.accepted for v in verdicts),
            len(verdicts),
            extra={"job_id": job.id, "node_id": self.node_id},
        )
        return vpb.VerifyResponse(
            verdicts=[
                vpb.Verdict(
                    execution_id=v.execution_id, node_id=v.node_id, accepted=v.accepted, reason=v.reason
                )
                for v in verdicts
            ]
        )

    async def GetVerifierInfo(
        self, request: vpb.GetVerifierInfoRequest, context
    ) -> vpb.GetVerifierInfoResponse:
        return vpb.GetVerifierInfoResponse(
            formats=[
                # The stub wants the enum wrapper type; protobuf takes any int for an enum field.
                vpb.ProposalFormat(verifier=verifier, description=description)  # type: ignore[arg-type]
                for verifier, description in verification.PROPOSAL_FORMATS.items()
            ]
        )
