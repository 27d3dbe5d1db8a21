"""What the compute domain needs from the outside, as interfaces: the executors that run executions, the
volumes a run mounts, the publishers of results and the machine's capacity. The concrete ones live in
`compute/executors/`, `compute/storage/`, `compute/publishers/` and `compute/host.py`, and `app.py` hands
them to the domain; the requester is reached through `RequesterCallbacks` (`domain/node.py`).

An executor's `run(context)` gets a `RunContext` (`domain/runs.py`): the execution (job, shard), the
prepared inputs (contexts and the shard's input volumes, local paths to mount read-only at their job
paths), the outputs (fresh writable folders `result_dir/<Name>` to mount at their job paths), the result
folder and the run's timeout. It writes `stdout`, `stderr` and `exitCode` into the result folder and
returns a `RunResult` (the heads of the streams and the exit code, plus the summary sent to the
requester), or raises `ExecutorError` (the run could not happen: the execution fails). A non-zero exit
code is a RESULT, not an error. Cancellation is asyncio cancellation of the task that awaits `run`; an
executor that runs something outside the event loop (a container, a guest thread) stops it in `cancel`.
`run_with_timeout` bounds a run by the job's `Spec.Timeout` (600 s when unset, as v0.3's compute node).

Volumes are prepared to read-only `Mount`s where the job sees them (`checks.mount_path`), or
`StorageError` says which could not be and why.

A publisher returns the StorageSpec the requester records as the published result, or raises (the
execution fails and the requester is told).
"""

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from bacalhau_grpc.common.model import enums, pb
from bacalhau_grpc.compute.domain.executions import Execution
from bacalhau_grpc.compute.domain.runs import BACKSTOP_SLACK, ExecutorError, Mount, RunContext, RunResult

# -- executors ---------------------------------------------------------------------------------------


class Executor(Protocol):
    """Runs executions of one engine."""

    @property
    def engine(self) -> int:
        """The `pb.Engine` this executor runs."""
        ...

    def is_installed(self) -> bool: ...

    async def run(self, context: RunContext) -> RunResult: ...

    async def cancel(self, execution_id: str) -> None:
        """Stops whatever the run started outside the event loop; the run's task is cancelled too."""
        ...


async def run_with_timeout(executor: Executor, context: RunContext) -> RunResult:
    """`executor.run`, bounded by `context.timeout`: "execution timed out after 2.5s" past it.

    Executors that enforce the timeout themselves (`enforces_timeout = True`: they kill a container or
    interrupt a guest and say so, keeping what it wrote) get BACKSTOP_SLACK more seconds before this
    backstop cancels them."""
    slack = BACKSTOP_SLACK if getattr(executor, "enforces_timeout", False) else 0.0
    try:
        async with asyncio.timeout(context.timeout + slack):
            return await executor.run(context)
    except TimeoutError:
        await executor.cancel(context.execution.id)
        raise ExecutorError(f"execution timed out after {context.timeout:g}s") from None


# -- volumes -----------------------------------------------------------------------------------------


class StorageError(Exception):
    """A volume could not be prepared; the text says which and why."""


class VolumesPort(Protocol):
    """Prepares a run's volumes on this node (`compute.storage.inputs.RunInputs`)."""

    async def prepare(
        self, volumes: Sequence[pb.StorageSpec], *, field: str, scratch: Path
    ) -> tuple[Mount, ...]:
        """The volumes as read-only mounts, in order. StorageError names the first that failed, e.g.
        "Spec.inputs[1] (IPFS Qm…): could not fetch …". Files a volume downloads go under `scratch`
        (the execution's scratch folder)."""
        ...

    async def prepare_shard(self, job: pb.Job, shard_index: int, scratch: Path) -> tuple[Mount, ...]:
        """A sharded job's inputs for one shard: the mounts of its batch (StorageError as `prepare`;
        InvalidArgumentError when no atom matches or the job has no such shard)."""
        ...


class NoVolumes:
    """A node without storage providers: volumes it is asked for fail with StorageError."""

    async def prepare(
        self, volumes: Sequence[pb.StorageSpec], *, field: str, scratch: Path
    ) -> tuple[Mount, ...]:
        for index, volume in enumerate(volumes):
            source = enums.STORAGE_SOURCE_TYPE.name(volume.storage_source)
            raise StorageError(
                f"{field}[{index}] ({source} {volume.cid or volume.url}): "
                f"this node has no storage provider for {source}"
            )
        return ()

    async def prepare_shard(self, job: pb.Job, shard_index: int, scratch: Path) -> tuple[Mount, ...]:
        return await self.prepare(job.spec.inputs, field="Spec.inputs", scratch=scratch)


# -- publishers --------------------------------------------------------------------------------------


class Publisher(Protocol):
    @property
    def publisher(self) -> int:
        """The `pb.Publisher` this implements."""
        ...

    def is_installed(self) -> bool: ...

    async def publish(self, execution: Execution, result: RunResult | None) -> pb.StorageSpec:
        """Publishes the execution's results (`result` is None when they are known only from the
        stored summary, e.g. after a restart)."""
        ...


# -- the host ----------------------------------------------------------------------------------------


class HostCapacity(Protocol):
    """The machine's totals a node may offer (`compute.host.machine_capacity`), measured for a node that
    keeps its data under `data_dir` (its free disk). It may block (it runs `nvidia-smi`)."""

    def __call__(self, data_dir: Path) -> pb.ResourceUsageData: ...
