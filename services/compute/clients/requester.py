"""The compute node's calls to the requester: registration, heartbeats and the execution callbacks.

* `run` registers the node (retrying with back-off, 0.1 s doubling to 2 s, until it succeeds), then sends
  a heartbeat every `heartbeat_interval` (from the requester's answer), or sooner when `wake` is set
  (capacity freed after the node refused a bid as busy: the requester then asks it again), at most one
  every `MIN_HEARTBEAT_GAP`; a heartbeat answered NOT_FOUND (the requester forgot the node, e.g. it
  restarted) registers again.
* The callbacks (`RequesterCallbacks` of the domain) report OnRunComplete, OnComputeFailure,
  OnPublishComplete and OnCancelComplete, coalesced into ReportExecutions calls (`common.batching`); a
  report that fails in a way a retry can mend (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED) is retried
  with back-off a few times before it is given up (and logged by the node). The requester takes a
  repeated report as the same report. Each callback runs in a job span (`span`, e.g.
  `telemetry.JobTraces().span`), so it carries the job's trace to the requester.

Every call has a deadline (`call_timeout`).
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.batching import Coalescer
from bacalhau_grpc.common.errors import DeadlineExceededError, NotFoundError, UnavailableError
from bacalhau_grpc.common.grpc_errors import error_from_outcome
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.executions import Execution
from bacalhau_grpc.pb.requester.v1 import requester_node_service_pb2_grpc as rngrpc
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb

log = logging.getLogger(__name__)

REGISTER_BACKOFF_START = 0.1
REGISTER_BACKOFF_MAX = 2.0
DEFAULT_HEARTBEAT_INTERVAL = 2.0
MIN_HEARTBEAT_GAP = 0.05
CALLBACK_ATTEMPTS = 5
CALLBACK_BACKOFF_START = 0.1


class RequesterClient:
    """One long-lived channel to the requester."""

    def __init__(
        self,
        address: str,
        node_id: str,
        *,
        call_timeout: float = channels.DEFAULT_TIMEOUT,
        callback_attempts: int = CALLBACK_ATTEMPTS,
        span: Callable[..., contextlib.AbstractContextManager[Any]] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.address = address
        self.node_id = node_id
        self.call_timeout = call_timeout
        self.callback_attempts = callback_attempts
        self._span = span
        # TLS with the node's certificate (the requester's node port), or None: plaintext.
        self._channel = channels.open_channel(address, credentials=credentials)
        self._stub = rngrpc.RequesterNodeServiceStub(self._channel)
        # Reports leave one at a time while the requester keeps up, in batches when many are due.
        self._reports: Coalescer[None, rpb.ExecutionReport, None] = Coalescer(
            self._send_reports, size=lambda report: report.ByteSize()
        )
        self.registered = asyncio.Event()
        # The same connection fetches content the requester holds (uploaded job contexts).
        self.channel = self._channel
        self.requester_node_id = ""
        self.heartbeat_interval = DEFAULT_HEARTBEAT_INTERVAL
        self.registrations = 0
        self.heartbeats = 0
        self.calls: dict[str, int] = {}

    async def close(self) -> None:
        await self._reports.close()
        await self._channel.close()

    # -------------------------------------------------------------------------------------------
    # Registration and heartbeats
    # -------------------------------------------------------------------------------------------

    async def register(self, node_info: pb.NodeInfo) -> None:
        """RegisterNode, retried with back-off until the requester answers."""
        delay = REGISTER_BACKOFF_START
        while True:
            try:
                response = await self._call(
                    self._stub.RegisterNode, rpb.RegisterNodeRequest(node=node_info), "RegisterNode"
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info(
                    "could not register with the requester at %s (%s); retrying in %.1fs",
                    self.address,
                    exc,
                    delay,
                    extra={"node_id": self.node_id},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, REGISTER_BACKOFF_MAX)
                continue
            self.requester_node_id = response.requester_node_id
            interval = response.heartbeat_interval.ToTimedelta().total_seconds()
            self.heartbeat_interval = interval if interval > 0 else DEFAULT_HEARTBEAT_INTERVAL
            self.registrations += 1
            self.registered.set()
            log.info(
                "registered with requester %s at %s",
                self.requester_node_id,
                self.address,
                extra={"node_id": self.node_id},
            )
            return

    async def run(
        self,
        node_info: Callable[[], pb.NodeInfo],
        available_capacity: Callable[[], pb.ResourceUsageData],
        wake: asyncio.Event | None = None,
        load: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        """Registers, then heartbeats until cancelled (re-registering whenever the requester asks);
        setting `wake` sends the next heartbeat early. `load()`: (running, queued) executions, which
        the heartbeats carry."""
        await self.register(node_info())
        wake = wake or asyncio.Event()
        while True:
            await asyncio.sleep(MIN_HEARTBEAT_GAP)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(self.heartbeat_interval - MIN_HEARTBEAT_GAP, 0.0))
            wake.clear()
            request = rpb.HeartbeatRequest(node_id=self.node_id, available_capacity=available_capacity())
            if load is not None:
                request.running_executions, request.queued_executions = load()
            try:
                await self._call(self._stub.Heartbeat, request, "Heartbeat")
                self.heartbeats += 1
            except asyncio.CancelledError:
                raise
            except NotFoundError:
                log.info(
                    "the requester does not know this node; registering again",
                    extra={"node_id": self.node_id},
                )
                await self.register(node_info())
            except Exception as exc:
                log.warning("heartbeat to %s failed: %s", self.address, exc, extra={"node_id": self.node_id})

    # -------------------------------------------------------------------------------------------
    # RequesterCallbacks
    # -------------------------------------------------------------------------------------------

    async def on_run_complete(self, execution: Execution) -> None:
        request = rpb.OnRunCompleteRequest(
            execution_id=execution.id,
            job_id=execution.job_id,
            shard_index=execution.shard_index,
            node_id=self.node_id,
            verification_proposal=execution.proposal,
            run_output=execution.run_output,
            status=execution.status,
        )
        await self._callback(rpb.ExecutionReport(run_complete=request), "OnRunComplete", execution)

    async def on_compute_failure(self, execution: Execution, error: str) -> None:
        request = rpb.OnComputeFailureRequest(
            execution_id=execution.id,
            job_id=execution.job_id,
            shard_index=execution.shard_index,
            node_id=self.node_id,
            error=error,
        )
        await self._callback(rpb.ExecutionReport(compute_failure=request), "OnComputeFailure", execution)

    async def on_publish_complete(self, execution: Execution) -> None:
        request = rpb.OnPublishCompleteRequest(
            execution_id=execution.id,
            job_id=execution.job_id,
            shard_index=execution.shard_index,
            node_id=self.node_id,
            published_result=execution.published_result,
            status=execution.status,
        )
        await self._callback(rpb.ExecutionReport(publish_complete=request), "OnPublishComplete", execution)

    async def on_cancel_complete(self, execution: Execution) -> None:
        request = rpb.OnCancelCompleteRequest(
            execution_id=execution.id,
            job_id=execution.job_id,
            shard_index=execution.shard_index,
            node_id=self.node_id,
        )
        await self._callback(rpb.ExecutionReport(cancel_complete=request), "OnCancelComplete", execution)

    # -------------------------------------------------------------------------------------------

    async def _callback(self, report: rpb.ExecutionReport, name: str, execution: Execution) -> None:
        if self._span is None:
            await self._retried(report, name)
            return
        job_id, shard_index = execution.job_id, execution.shard_index
        with self._span(f"compute.{name}", job_id=job_id, node_id=self.node_id, shard_index=shard_index):
            await self._retried(report, name)

    async def _retried(self, report: rpb.ExecutionReport, name: str) -> None:
        delay = CALLBACK_BACKOFF_START
        for attempt in range(1, self.callback_attempts + 1):
            try:
                self.calls[name] = self.calls.get(name, 0) + 1
                await self._reports.submit(None, report)
                return
            except Exception as exc:
                if attempt == self.callback_attempts or not _worth_retrying(exc):
                    raise
                await asyncio.sleep(delay)
                delay *= 2

    async def _send_reports(self, _: None, reports: list[rpb.ExecutionReport]) -> list[Exception | None]:
        request = rpb.ReportExecutionsRequest(reports=reports)
        response = await self._call(self._stub.ReportExecutions, request, "ReportExecutions")
        return [error_from_outcome(outcome) for outcome in response.outcomes]

    async def _call(self, method: Callable[..., Awaitable[Any]], request: Any, name: str) -> Any:
        self.calls[name] = self.calls.get(name, 0) + 1
        return await channels.call(method, request, timeout=self.call_timeout)


def _worth_retrying(exc: Exception) -> bool:
    """A failure that says nothing about the report itself: the call may not have reached the requester."""
    if isinstance(exc, UnavailableError | DeadlineExceededError):
        return True
    return getattr(exc, "code", None) == grpc.StatusCode.CANCELLED
