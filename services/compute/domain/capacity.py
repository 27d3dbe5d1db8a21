"""A compute node's capacity: what it has, what one job may ask for, and what runs hold now.

* Machine capacity (v0.3 `pkg/capacity`): CPU = cores x 0.8, memory = 80 % of RAM, disk = 80 % of the
  free space where the node keeps its data, GPU = 0 (no GPU discovery here).
* Total = the configured strings, unset fields taken from the machine; per-job max = the configured
  strings, unset fields taken from the total.
* A job's usage = its `Spec.Resources` strings, unset fields taken from the defaults (CPU 100m,
  memory 100 MiB), as v0.3.
* `CapacityTracker` holds the usage of the executions that are running and queues (FIFO, as v0.3's
  executor buffer; a later, smaller execution may overtake a larger one) the ones that do not fit
  yet. CPU is counted in whole millicores so sums never drift.
"""

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.model import resources as res

# v0.3 `DefaultJobResourceRequirements` (CPU 100m, memory 100Mb).
DEFAULT_JOB_USAGE = pb.ResourceUsageData(cpu=0.1, memory=100 * 1024**2)
# The share of the machine a node offers by default (v0.3 `pkg/capacity`).
MACHINE_SHARE = 0.8


def machine_capacity(data_dir: Path) -> pb.ResourceUsageData:
    """80 % of this machine's CPU cores, RAM and free disk under `data_dir` (GPU 0)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        memory = 0
    probe = data_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    disk = shutil.disk_usage(probe).free
    return pb.ResourceUsageData(
        cpu=round(cores * MACHINE_SHARE, 3),
        memory=int(memory * MACHINE_SHARE),
        disk=int(disk * MACHINE_SHARE),
        gpu=0,
    )


def parse_limits(cpu: str, memory: str, disk: str, gpu: str, *, field_prefix: str) -> pb.ResourceUsageData:
    """Resource strings of a setting; errors name the setting (`<field_prefix>cpu`, ...)."""
    return pb.ResourceUsageData(
        cpu=res.parse_cpu(cpu, field=f"{field_prefix}cpu"),
        memory=res.parse_bytes(memory, field=f"{field_prefix}memory"),
        disk=res.parse_bytes(disk, field=f"{field_prefix}disk"),
        gpu=res.parse_gpu(gpu, field=f"{field_prefix}gpu"),
    )


@dataclass(frozen=True)
class Limits:
    """What a node offers in total, and the most one job may ask for."""

    total: pb.ResourceUsageData
    per_job: pb.ResourceUsageData


def resolve_limits(
    configured_total: pb.ResourceUsageData,
    configured_per_job: pb.ResourceUsageData,
    machine: pb.ResourceUsageData,
) -> Limits:
    """Total = configured, unset fields from the machine; per-job = configured, unset from the total.

    A per-job limit above the total is refused (InvalidArgumentError naming the `job_*` setting).
    """
    total = res.intersect(configured_total, machine)
    per_job = res.intersect(configured_per_job, total)
    for name in ("cpu", "memory", "disk", "gpu"):
        job_value, total_value = getattr(per_job, name), getattr(total, name)
        if job_value > total_value:
            raise InvalidArgumentError(
                f"the per-job limit {job_value:g} is above the node's total {total_value:g}",
                field=f"job_{name}",
            )
    return Limits(total=total, per_job=per_job)


def job_usage(spec: pb.Spec) -> pb.ResourceUsageData:
    """What a job asks for: its resource strings, unset fields from `DEFAULT_JOB_USAGE`.

    Raises InvalidArgumentError (field `Spec.Resources.<X>`) for a string that cannot be read.
    """
    asked = res.parse_resource_usage_config(spec.resources, field_prefix="Spec.Resources")
    return res.intersect(asked, DEFAULT_JOB_USAGE)


@dataclass(frozen=True, slots=True)
class _Amount:
    """An amount in integer units (CPU in millicores) so sums and differences are exact."""

    millicores: int
    memory: int
    disk: int
    gpu: int

    @classmethod
    def of(cls, usage: pb.ResourceUsageData) -> "_Amount":
        return cls(round(usage.cpu * 1000), usage.memory, usage.disk, usage.gpu)

    def __add__(self, other: "_Amount") -> "_Amount":
        return _Amount(
            self.millicores + other.millicores,
            self.memory + other.memory,
            self.disk + other.disk,
            self.gpu + other.gpu,
        )

    def __sub__(self, other: "_Amount") -> "_Amount":
        return _Amount(
            self.millicores - other.millicores,
            self.memory - other.memory,
            self.disk - other.disk,
            self.gpu - other.gpu,
        )

    def fits_in(self, room: "_Amount") -> bool:
        return (
            self.millicores <= room.millicores
            and self.memory <= room.memory
            and self.disk <= room.disk
            and self.gpu <= room.gpu
        )

    def to_pb(self) -> pb.ResourceUsageData:
        return pb.ResourceUsageData(
            cpu=max(self.millicores, 0) / 1000,
            memory=max(self.memory, 0),
            disk=max(self.disk, 0),
            gpu=max(self.gpu, 0),
        )


_ZERO = _Amount(0, 0, 0, 0)


class CapacityTracker:
    """The capacity held by running executions, and a FIFO queue of executions waiting for room."""

    def __init__(self, total: pb.ResourceUsageData) -> None:
        self.total = total
        self._total = _Amount.of(total)
        self._held: dict[str, _Amount] = {}
        self._running = _ZERO
        self._waiting: dict[str, tuple[_Amount, asyncio.Future[None]]] = {}
        self._queued = _ZERO

    @property
    def running(self) -> pb.ResourceUsageData:
        """The sum of what running executions hold."""
        return self._running.to_pb()

    @property
    def queued(self) -> pb.ResourceUsageData:
        """The sum of what queued executions ask for."""
        return self._queued.to_pb()

    def available(self) -> pb.ResourceUsageData:
        """Total minus what running executions hold (never below 0)."""
        return (self._total - self._running).to_pb()

    def unclaimed(self) -> pb.ResourceUsageData:
        """Total minus what running and queued executions hold or ask for (never below 0)."""
        return (self._total - self._running - self._queued).to_pb()

    def holding(self, execution_id: str) -> bool:
        return execution_id in self._held

    def queue_length(self) -> int:
        return len(self._waiting)

    def try_reserve(self, execution_id: str, usage: pb.ResourceUsageData) -> bool:
        """Holds `usage` for the execution if it fits now; True when it does (or already holds)."""
        if execution_id in self._held:
            return True
        amount = _Amount.of(usage)
        if not amount.fits_in(self._total - self._running):
            return False
        self._held[execution_id] = amount
        self._running = self._running + amount
        return True

    async def reserve(self, execution_id: str, usage: pb.ResourceUsageData) -> None:
        """Holds `usage` for the execution, waiting in the queue until it fits. Cancellable.

        An execution larger than the total would wait forever: the bid strategies refuse such jobs.
        """
        if self.try_reserve(execution_id, usage):
            return
        amount = _Amount.of(usage)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[execution_id] = (amount, future)
        self._queued = self._queued + amount
        try:
            await future
        except asyncio.CancelledError:
            if execution_id in self._waiting:
                self._dequeue(execution_id)
            elif future.done() and not future.cancelled():
                self.release(execution_id)  # granted just as it was cancelled
            raise

    def release(self, execution_id: str) -> None:
        """Frees what the execution holds (or drops it from the queue); starts queued ones that fit."""
        if execution_id in self._waiting:
            _, future = self._dequeue(execution_id)
            future.cancel()
            return
        amount = self._held.pop(execution_id, None)
        if amount is None:
            return
        self._running = self._running - amount
        self._grant_waiting()

    @asynccontextmanager
    async def holding_for(self, execution_id: str, usage: pb.ResourceUsageData) -> AsyncIterator[None]:
        """`reserve` on entry, `release` on exit."""
        await self.reserve(execution_id, usage)
        try:
            yield
        finally:
            self.release(execution_id)

    def _dequeue(self, execution_id: str) -> tuple[_Amount, asyncio.Future[None]]:
        amount, future = self._waiting.pop(execution_id)
        self._queued = self._queued - amount
        return amount, future

    def _grant_waiting(self) -> None:
        for execution_id, (amount, future) in list(self._waiting.items()):
            if future.done():
                self._dequeue(execution_id)
                continue
            if amount.fits_in(self._total - self._running):
                self._dequeue(execution_id)
                self._held[execution_id] = amount
                self._running = self._running + amount
                future.set_result(None)
