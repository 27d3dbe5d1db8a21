"""A compute node's capacity: what it offers, what one job may ask for, and what runs hold now.

* The machine's totals come from outside the domain (the `HostCapacity` port, `domain/ports.py`; this
  machine's is `compute/host.py`: 80 % of the cores, RAM and free disk within the cgroup's limits, and
  the GPUs `nvidia-smi` lists).
* Total = the configured strings, unset fields taken from the machine; per-job max = the configured
  strings, unset fields taken from the total. A total above the machine is allowed (v0.3 needed
  `BACALHAU_CAPACITY_MANAGER_OVER_COMMIT` for that): tests and devstacks declare what they need.
* Start-up errors (v0.3 panicked): a per-job limit above the total, or below the default job usage -
  a job that asks for nothing would be refused by every node; so `limit_job_cpu=50m` is refused, as
  in v0.3, with an error naming the setting.
* A job's usage = its `Spec.Resources` strings, unset fields taken from the defaults (CPU 100m,
  memory 100 MiB), as v0.3.
* `CapacityTracker` holds the usage of the executions that are running and queues the ones that do
  not fit yet. CPU is counted in whole millicores so sums never drift. See its docstring for the
  queue's order.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bacalhau_grpc.common.errors import InvalidArgumentError, ResourceExhaustedError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.model import resources as res

# v0.3 `DefaultJobResourceRequirements` (CPU 100m, memory 100Mb).
DEFAULT_JOB_USAGE = pb.ResourceUsageData(cpu=0.1, memory=100 * 1024**2)


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
    *,
    total_prefix: str = "limit_total_",
    job_prefix: str = "limit_job_",
) -> Limits:
    """Total = configured, unset fields from the machine; per-job = configured, unset from the total.

    Raises InvalidArgumentError naming the setting to change (`<job_prefix>cpu`, ...) for a per-job
    limit above the total, and for a per-job limit below the default job usage (naming the total's
    setting when the per-job value came from the total).
    """
    total = res.intersect(configured_total, machine)
    per_job = res.intersect(configured_per_job, total)
    for name in ("cpu", "memory", "disk", "gpu"):
        job_value, total_value = getattr(per_job, name), getattr(total, name)
        if job_value > total_value:
            raise InvalidArgumentError(
                f"the per-job limit {_amount(name, job_value)} is above the node's total "
                f"{_amount(name, total_value)}",
                field=f"{job_prefix}{name}",
            )
        default = getattr(DEFAULT_JOB_USAGE, name)
        if job_value < default:
            setting = job_prefix if getattr(configured_per_job, name) > 0 else total_prefix
            raise InvalidArgumentError(
                f"{_amount(name, job_value)} is below the default job usage {_amount(name, default)}: "
                f"every job that does not set its {name} would be refused",
                field=f"{setting}{name}",
            )
    return Limits(total=total, per_job=per_job)


def _amount(name: str, value: float) -> str:
    if name == "cpu":
        return f"{value:g} CPU"
    if name == "gpu":
        return f"{value:g} GPU"
    return f"{int(value)} bytes"


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

# A waiting execution may be overtaken by later ones this many times, and for this many seconds.
MAX_OVERTAKES = 8
MAX_OVERTAKE_WAIT = 60.0


@dataclass(slots=True)
class _Waiter:
    amount: _Amount
    future: asyncio.Future[None]
    since: float
    overtaken: int = 0


class CapacityTracker:
    """The capacity held by running executions, and the queue of executions waiting for room.

    The queue is first come, first served: its head (the oldest waiting execution) starts as soon as
    it fits. While the head does not fit, a later execution that fits may start before it (overtake
    it, as in v0.3, which keeps the node busy) - but only while the head has been overtaken fewer than
    `max_overtakes` times and has waited less than `max_wait` seconds. After that nothing starts
    before the head: the running executions end and their room goes to it, so a big job is not
    starved by a stream of small ones. A new execution that finds a queue counts as overtaking too.
    """

    def __init__(
        self,
        total: pb.ResourceUsageData,
        *,
        max_overtakes: int = MAX_OVERTAKES,
        max_wait: float = MAX_OVERTAKE_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.max_overtakes = max_overtakes
        self.max_wait = max_wait
        self._clock = clock
        self._total = _Amount.of(total)
        self._held: dict[str, _Amount] = {}
        self._running = _ZERO
        self._waiting: dict[str, _Waiter] = {}
        self._queued = _ZERO
        # Called whenever what running and queued executions claim goes down (the node uses it to tell
        # the requester early that it has room again).
        self.on_freed: Callable[[], None] = lambda: None

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
        return self._room().to_pb()

    def unclaimed(self) -> pb.ResourceUsageData:
        """Total minus what running and queued executions hold or ask for (never below 0)."""
        return (self._total - self._running - self._queued).to_pb()

    def holding(self, execution_id: str) -> bool:
        return execution_id in self._held

    def queue_length(self) -> int:
        return len(self._waiting)

    def running_count(self) -> int:
        """How many executions hold capacity now."""
        return len(self._held)

    def try_reserve(self, execution_id: str, usage: pb.ResourceUsageData) -> bool:
        """Holds `usage` for the execution if it may start now: it fits, and the queue's head (if any)
        may still be overtaken. True when it does (or already holds)."""
        if execution_id in self._held:
            return True
        if execution_id in self._waiting:
            return False
        self._grant_waiting()
        amount = _Amount.of(usage)
        if not amount.fits_in(self._room()) or not self._head_may_be_overtaken():
            return False
        self._overtake_head()
        self._hold(execution_id, amount)
        return True

    async def reserve(self, execution_id: str, usage: pb.ResourceUsageData) -> None:
        """Holds `usage` for the execution, waiting in the queue until its turn. Cancellable.

        Raises ResourceExhaustedError for usage that would never fit the total (the bid strategies
        refuse such jobs; v0.3: "not enough capacity to run job").
        """
        amount = _Amount.of(usage)
        if not amount.fits_in(self._total):
            raise ResourceExhaustedError(
                f"not enough capacity to run job: it needs {res.usage_string(usage)}, "
                f"the node has {res.usage_string(self.total)}"
            )
        if self.try_reserve(execution_id, usage):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[execution_id] = _Waiter(amount, future, self._clock())
        self._queued = self._queued + amount
        try:
            await future
        except asyncio.CancelledError:
            if execution_id in self._waiting:
                self._dequeue(execution_id)
                self._grant_waiting()  # the next one may fit, or may be overtaken again
                self.on_freed()
            elif future.done() and not future.cancelled():
                self.release(execution_id)  # granted just as it was cancelled
            raise

    def release(self, execution_id: str) -> None:
        """Frees what the execution holds (or drops it from the queue); starts queued ones in turn."""
        if execution_id in self._waiting:
            self._dequeue(execution_id).future.cancel()
        else:
            amount = self._held.pop(execution_id, None)
            if amount is None:
                return
            self._running = self._running - amount
        self._grant_waiting()
        self.on_freed()

    @asynccontextmanager
    async def holding_for(self, execution_id: str, usage: pb.ResourceUsageData) -> AsyncIterator[None]:
        """`reserve` on entry, `release` on exit."""
        await self.reserve(execution_id, usage)
        try:
            yield
        finally:
            self.release(execution_id)

    def _room(self) -> _Amount:
        return self._total - self._running

    def _hold(self, execution_id: str, amount: _Amount) -> None:
        self._held[execution_id] = amount
        self._running = self._running + amount

    def _dequeue(self, execution_id: str) -> _Waiter:
        waiter = self._waiting.pop(execution_id)
        self._queued = self._queued - waiter.amount
        return waiter

    def _grant(self, execution_id: str) -> None:
        waiter = self._dequeue(execution_id)
        self._hold(execution_id, waiter.amount)
        waiter.future.set_result(None)

    def _head(self) -> _Waiter | None:
        return next(iter(self._waiting.values()), None)

    def _head_may_be_overtaken(self) -> bool:
        head = self._head()
        return head is None or (
            head.overtaken < self.max_overtakes and self._clock() - head.since < self.max_wait
        )

    def _overtake_head(self) -> None:
        head = self._head()
        if head is not None:
            head.overtaken += 1

    def _grant_waiting(self) -> None:
        """Starts the queue's head while it fits, then later executions that fit while the head lets
        them overtake it."""
        for execution_id, waiter in list(self._waiting.items()):
            if waiter.future.done():  # cancelled; its task has not run yet
                self._dequeue(execution_id)
            elif waiter.amount.fits_in(self._room()):
                self._grant(execution_id)
            else:
                break
        for execution_id, waiter in list(self._waiting.items())[1:]:
            if not self._head_may_be_overtaken():
                return
            if waiter.future.done():
                self._dequeue(execution_id)
            elif waiter.amount.fits_in(self._room()):
                self._overtake_head()
                self._grant(execution_id)
