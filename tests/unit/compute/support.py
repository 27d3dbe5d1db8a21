"""Jobs and a recording requester for the compute node's unit tests."""

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.executions import Execution


def make_job(
    *,
    engine: int = pb.Engine.ENGINE_NOOP,
    verifier: int = pb.Verifier.VERIFIER_NOOP,
    publisher: int = pb.Publisher.PUBLISHER_NOOP,
    timeout: float = 0.0,
    cpu: str = "",
    memory: str = "",
    disk: str = "",
    gpu: str = "",
) -> pb.Job:
    job = pb.Job(id=str(uuid.uuid4()), api_version="V1beta1", requester_node_id="requester-0123456789ab")
    job.spec.engine = engine
    job.spec.verifier = verifier
    job.spec.publisher = publisher
    job.spec.timeout = timeout
    job.spec.resources.cpu = cpu
    job.spec.resources.memory = memory
    job.spec.resources.disk = disk
    job.spec.resources.gpu = gpu
    job.deal.concurrency = 1
    job.execution_plan.total_shards = 1
    return job


@dataclass
class RecordingRequester:
    """Implements the domain's RequesterCallbacks by recording every call (the node's outbound edge)."""

    calls: list[tuple[str, str, object]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _record(self, name: str, execution: Execution, detail: object = None) -> None:
        self.calls.append((name, execution.id, detail))
        self.changed.set()

    async def on_run_complete(self, execution: Execution) -> None:
        self._record("run_complete", execution, (execution.run_output, execution.proposal))

    async def on_compute_failure(self, execution: Execution, error: str) -> None:
        self._record("compute_failure", execution, error)

    async def on_publish_complete(self, execution: Execution) -> None:
        self._record("publish_complete", execution, execution.published_result)

    async def on_cancel_complete(self, execution: Execution) -> None:
        self._record("cancel_complete", execution)

    def of(self, execution_id: str) -> list[tuple[str, object]]:
        return [(name, detail) for name, eid, detail in self.calls if eid == execution_id]

    async def wait_for(self, name: str, execution_id: str, timeout: float = 5.0) -> object:
        """The detail of the first `name` call for the execution, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for call, detail in self.of(execution_id):
                if call == name:
                    return detail
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {name} for {execution_id}; calls: {self.of(execution_id)}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
