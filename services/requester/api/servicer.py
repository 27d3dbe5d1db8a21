"""RequesterService over gRPC: decode, one domain call, encode. Errors are BacalhauErrors that the common
server maps to status codes.

The caller of a client method is the ClientID its signed call metadata verified (`common.caller`,
checked before the servicer runs; anonymous without a signature), never a request field: the domain gets
it and decides (cancel: the owner only; reads: by the job visibility). What compute nodes call is the
node protocol, `api.node_servicer`.
"""

import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from bacalhau_grpc.common.caller import current_caller
from bacalhau_grpc.common.errors import FailedPreconditionError, InvalidArgumentError, UnauthenticatedError
from bacalhau_grpc.common.server import DEFAULT_MAX_MESSAGE_BYTES
from bacalhau_grpc.common.signing import verify_submission
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from bacalhau_grpc.requester.domain.lifecycle import Requester
from bacalhau_grpc.requester.domain.logs import job_logs
from bacalhau_grpc.requester.domain.nodes import NodeView

SERVICE_NAME = "bacalhau.requester.v1.RequesterService"
log = logging.getLogger(__name__)
_SORT_BY = {
    rpb.JOB_SORT_BY_UNSPECIFIED: "created_at",
    rpb.JOB_SORT_BY_CREATED_AT: "created_at",
    rpb.JOB_SORT_BY_ID: "id",
}


class RequesterServicer(rgrpc.RequesterServiceServicer):
    def __init__(
        self,
        requester: Requester,
        *,
        allow_unsigned: bool = False,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.requester = requester
        self.allow_unsigned = allow_unsigned
        # The server's send limit: a GetJob answer above it is refused with a hint, not a transport error.
        self.max_message_bytes = max_message_bytes

    async def SubmitJob(
        self, request: rpb.SubmitJobRequest, context: grpc.aio.ServicerContext
    ) -> rpb.SubmitJobResponse:
        caller = current_caller().client_id
        if request.signature or request.signed_payload:
            payload = verify_submission(request)  # the payload's verified signer owns the job
        elif caller is not None and request.HasField("payload"):
            # A signed call: the signature covers the whole request, so its ClientID owns the job.
            payload = request.payload
            payload.client_id = caller
            payload.job.client_id = caller
        elif self.allow_unsigned and request.HasField("payload"):
            payload = request.payload
        elif self.allow_unsigned:
            raise InvalidArgumentError("the request carries no payload", field="payload")
        else:
            raise UnauthenticatedError(
                "submissions must be signed: send signed_payload, signature and client_public_key "
                "(`bacalhau-grpc sign-job` makes them), or sign the call itself as the SDK does "
                "(the requester accepts unsigned payloads only with --allow-unsigned)"
            )
        job = await self.requester.submit(payload)
        return rpb.SubmitJobResponse(job=job)

    async def GetJob(
        self, request: rpb.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> rpb.GetJobResponse:
        job = await self.requester.get_job(
            request.job_id,
            caller=current_caller().client_id,
            events=not request.exclude_events,
            shard_states=not request.exclude_shard_states,
        )
        response = rpb.GetJobResponse(job=job)
        size = response.ByteSize()
        if size > self.max_message_bytes:
            left_out = [
                flag
                for flag, excluded in (
                    ("exclude_events", request.exclude_events),
                    ("exclude_shard_states", request.exclude_shard_states),
                )
                if not excluded
            ]
            raise FailedPreconditionError(
                f"job {job.job.id} is too big to answer whole ({size} bytes, over the requester's "
                f"{self.max_message_bytes}-byte message limit): ask GetJob with "
                f"{' and '.join(left_out) or 'exclude_events and exclude_shard_states'} set, then page its "
                "events with ListJobEvents and its shard states with ListJobShards "
                "(`bacalhau-grpc describe` does)"
            )
        return response

    async def ListJobs(
        self, request: rpb.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> rpb.ListJobsResponse:
        sort_by = _SORT_BY.get(request.sort_by)
        if sort_by is None:
            raise InvalidArgumentError(f"unknown sort order {request.sort_by}", field="sort_by")
        jobs, next_token = await self.requester.list_jobs(
            client_id=request.client_id,
            id_prefix=request.id_prefix,
            include_tags=request.include_tags,
            exclude_tags=request.exclude_tags,
            sort_by=sort_by,
            reverse=request.sort_reverse,
            page_size=request.page_size,
            page_token=request.page_token,
            states=request.states,
            caller=current_caller().client_id,
        )
        return rpb.ListJobsResponse(jobs=jobs, next_page_token=next_token)

    async def ListJobEvents(
        self, request: rpb.ListJobEventsRequest, context: grpc.aio.ServicerContext
    ) -> rpb.ListJobEventsResponse:
        events, next_token = await self.requester.list_job_events(
            request.job_id,
            page_size=request.page_size,
            page_token=request.page_token,
            caller=current_caller().client_id,
        )
        return rpb.ListJobEventsResponse(events=events, next_page_token=next_token)

    async def ListJobShards(
        self, request: rpb.ListJobShardsRequest, context: grpc.aio.ServicerContext
    ) -> rpb.ListJobShardsResponse:
        shards, next_token = await self.requester.list_job_shards(
            request.job_id,
            page_size=request.page_size,
            page_token=request.page_token,
            caller=current_caller().client_id,
        )
        return rpb.ListJobShardsResponse(shards=shards, next_page_token=next_token)

    async def WatchJobEvents(
        self, request: rpb.WatchJobEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[rpb.WatchJobEventsResponse]:
        events = await self.requester.watch_job_events(
            request.job_id, after_sequence=request.after_sequence, caller=current_caller().client_id
        )
        async for sequence, event in events:
            yield rpb.WatchJobEventsResponse(event=event, sequence=sequence)

    async def CancelJob(
        self, request: rpb.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> rpb.CancelJobResponse:
        # request.client_id is ignored (deprecated): the caller is who its signature says.
        job = await self.requester.cancel_job(
            request.job_id, client_id=current_caller().client_id, reason=request.reason
        )
        return rpb.CancelJobResponse(job=job)

    async def GetJobResults(
        self, request: rpb.GetJobResultsRequest, context: grpc.aio.ServicerContext
    ) -> rpb.GetJobResultsResponse:
        results = await self.requester.get_job_results(request.job_id, caller=current_caller().client_id)
        return rpb.GetJobResultsResponse(results=results)

    async def StreamJobLogs(
        self, request: rpb.StreamJobLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[rpb.StreamJobLogsResponse]:
        chunks = await job_logs(
            self.requester,
            request.job_id,
            shard_index=request.shard_index if request.HasField("shard_index") else None,
            node_id=request.node_id,
            follow=request.follow,
            caller=current_caller().client_id,
        )
        async with contextlib.aclosing(chunks):  # a client that leaves stops the streams from the nodes
            async for chunk in chunks:
                yield rpb.StreamJobLogsResponse(
                    execution_id=chunk.execution_id,
                    node_id=chunk.node_id,
                    shard_index=chunk.shard_index,
                    stderr=chunk.stderr,
                    data=chunk.data,
                )

    async def GetVersion(
        self, request: rpb.GetVersionRequest, context: grpc.aio.ServicerContext
    ) -> rpb.GetVersionResponse:
        return rpb.GetVersionResponse(version=self.requester.get_version())

    async def ListNodes(
        self, request: rpb.ListNodesRequest, context: grpc.aio.ServicerContext
    ) -> rpb.ListNodesResponse:
        views, next_token = await self.requester.list_nodes(
            page_size=request.page_size, page_token=request.page_token, caller=current_caller().client_id
        )
        return rpb.ListNodesResponse(nodes=[_node(view) for view in views], next_page_token=next_token)

    async def GetNode(
        self, request: rpb.GetNodeRequest, context: grpc.aio.ServicerContext
    ) -> rpb.GetNodeResponse:
        view = await self.requester.get_node(request.node_id, caller=current_caller().client_id)
        return rpb.GetNodeResponse(node=_node(view))


def _node(view: NodeView) -> rpb.Node:
    entry = view.entry
    node = rpb.Node(
        info=entry.info,
        role=rpb.NODE_ROLE_COMPUTE,
        state=rpb.NODE_STATE_LIVE if view.live else rpb.NODE_STATE_LOST,
        running_executions=entry.running,
        queued_executions=entry.queued,
    )
    if entry.available is not None:
        node.available_capacity.CopyFrom(entry.available)
    node.last_heartbeat.FromNanoseconds(int(entry.last_seen * 1e9))
    return node
