"""Whether a compute node bids on a job (Bacalhau v0.3's bid strategies).

The strategies run in order and the first refusal wins; each refusal carries a reason a user can read
(it becomes the job's `BidCancelled` event status on the requester). Cheap checks on the job come
first, the external probes last (they are the slowest, and are only asked about jobs the node could
take). Order:

 1. the job's engine has an installed executor   "executor Docker not installed"
 2. the job's verifier is supported              "verifier Deterministic not installed"
 3. the job's publisher is supported             "publisher Ipfs not installed"
 4. the job's timeout is in range (Timeout > 0)  "job timeout 7200s exceeds maximum allowed 3600s"
                                                 "job timeout 0.1s below minimum allowed 0.5s"
 5. reject-stateless: the job has inputs         "stateless jobs not accepted"
 6. locality local: every input is on this node  "not all inputs are local"
 6b. URL inputs a run downloads within the limit "a run of this job downloads up to 150 URL inputs, more
                                                 than the 100 this node allows (url_download_max_inputs)"
 7. the job's resource strings can be read       the parser's error, e.g. "Spec.Resources.CPU: ..."
 8. usage within the per-job maximum             "job requirements exceed max allowed per job: cpu 2 > 1"
 9. usage within the available capacity          "not enough capacity available" (busy: the only
                                                 transient refusal; the requester asks again later)
10. the probe command exits 0                    "command `C` returned non-zero exit code 3"
11. the probe URL answers 200                    "url `U` returned 503 status code"
                                                 "url `U` could not be reached: ..."
                                                 "url `U` did not answer within 5s"

Usage = the job's resources with defaults filled in (`capacity.job_usage`). The available-capacity
check over-commits: a node bids while running + queued + the job stay within its total times the
over-commit factor (2 by default, as v0.3's); accepted executions that do not fit yet wait in the
node's run queue. (v0.3 multiplied what was left instead, so a busy node stopped bidding at once.)

Differences from v0.3.15, on purpose:

* Locality `local` really means local (v0.3 mapped both flag values to Anywhere). Only `Spec.Inputs`
  count, as in v0.3: contexts (code, Wasm modules) are small and fetched wherever the data is. A job
  without inputs passes. A job carries no selection policy of its own (in v0.3 neither: the
  `JobSelectionPolicy` is the node's), so the node's policy is the only one. All strategies apply
  even when a probe is set (v0.3's code comment says probes "override" locality, its code ran both).
* A strategy that fails (an unreachable probe URL, a storage that cannot say whether it holds an
  input) refuses with the cause instead of aborting the bid.
* An unspecified verifier or publisher counts as Noop (the requester's default).
"""

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import enums, pb
from bacalhau_grpc.common.model import resources as res
from bacalhau_grpc.compute.domain.capacity import CapacityTracker, job_usage
from bacalhau_grpc.compute.domain.probes import DEFAULT_PROBE_TIMEOUT, ask_command, ask_http, probe_payload

log = logging.getLogger(__name__)

# v0.3 `DefaultOverCommitFactor` of the available-capacity strategy.
OVER_COMMIT_FACTOR = 2.0
LOCAL = pb.JobSelectionDataLocality.JOB_SELECTION_DATA_LOCALITY_LOCAL
ANYWHERE = pb.JobSelectionDataLocality.JOB_SELECTION_DATA_LOCALITY_ANYWHERE

# Whether this node holds an input's data already (the storage providers answer).
IsLocal = Callable[[pb.StorageSpec], Awaitable[bool]]


async def nothing_is_local(spec: pb.StorageSpec) -> bool:
    """The answer of a node without storage providers: it holds no input."""
    return False


@dataclass(frozen=True)
class BidPolicy:
    """The node operator's job selection: everything the strategies need besides the node's parts."""

    min_timeout: float = 0.5
    max_timeout: float = 3600.0
    # pb.JobSelectionDataLocality: LOCAL (inputs must be on this node) or ANYWHERE.
    locality: int = ANYWHERE
    reject_stateless: bool = False
    probe_http: str = ""
    probe_exec: str = ""
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT
    over_commit_factor: float = OVER_COMMIT_FACTOR
    # The most URL inputs one run (a shard) may download.
    max_url_inputs: int = 100


DEFAULT_BID_POLICY = BidPolicy()


@dataclass(frozen=True, slots=True)
class BidRequest:
    """What the strategies look at: the job, the shard, and the job's usage once it is known."""

    job: pb.Job
    shard_index: int
    usage: pb.ResourceUsageData | None = None


@dataclass(frozen=True, slots=True)
class BidDecision:
    accepted: bool
    reason: str = ""
    # The job's usage (with defaults), when the strategies got that far.
    usage: pb.ResourceUsageData | None = None
    # Refused only for want of free capacity now (a `transient` strategy): asking again later may win.
    busy: bool = False
    # Which check refused (its class name, e.g. "AvailableCapacity"): the metrics' bounded reason label.
    refused_by: str = ""


class BidStrategy(Protocol):
    """One check: None to go on, or the reason for refusing (directly or from a coroutine)."""

    def check(self, request: BidRequest) -> str | Awaitable[str | None] | None: ...


def _seconds(value: float) -> str:
    return f"{value:g}s"


def verifier_of(spec: pb.Spec) -> int:
    return spec.verifier or pb.Verifier.VERIFIER_NOOP


def publisher_of(spec: pb.Spec) -> int:
    return spec.publisher or pb.Publisher.PUBLISHER_NOOP


@dataclass(frozen=True)
class EngineInstalled:
    is_installed: Callable[[int], bool]

    def check(self, request: BidRequest) -> str | None:
        engine = request.job.spec.engine
        if self.is_installed(engine):
            return None
        return f"executor {enums.ENGINE.name(engine)} not installed"


@dataclass(frozen=True)
class VerifierSupported:
    verifiers: Collection[int]

    def check(self, request: BidRequest) -> str | None:
        verifier = verifier_of(request.job.spec)
        if verifier in self.verifiers:
            return None
        return f"verifier {enums.VERIFIER.name(verifier)} not installed"


@dataclass(frozen=True)
class PublisherSupported:
    publishers: Collection[int]

    def check(self, request: BidRequest) -> str | None:
        publisher = publisher_of(request.job.spec)
        if publisher in self.publishers:
            return None
        return f"publisher {enums.PUBLISHER.name(publisher)} not installed"


@dataclass(frozen=True)
class TimeoutInRange:
    """Only a job with a timeout (> 0) is checked; 0 means "the requester's default" and always passes."""

    minimum: float
    maximum: float

    def check(self, request: BidRequest) -> str | None:
        timeout = request.job.spec.timeout
        if not math.isfinite(timeout) or timeout < 0:
            return f"job timeout {timeout!r} is not a number of seconds >= 0"
        if timeout <= 0:
            return None
        if timeout > self.maximum:
            return f"job timeout {_seconds(timeout)} exceeds maximum allowed {_seconds(self.maximum)}"
        if timeout < self.minimum:
            return f"job timeout {_seconds(timeout)} below minimum allowed {_seconds(self.minimum)}"
        return None


_SIZE_UNITS = (("Pb", 1024**5), ("Tb", 1024**4), ("Gb", 1024**3), ("Mb", 1024**2), ("Kb", 1024))


def _size(value: int) -> str:
    """Bytes in the largest 1024-based unit that divides them (as a resource string: `2Gb`)."""
    for unit, size in _SIZE_UNITS:
        if value and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}b"


def _over(usage: pb.ResourceUsageData, limit: pb.ResourceUsageData) -> list[str]:
    """The fields of `usage` above `limit`, as `memory 2Gb > 1Gb`."""
    over = []
    if usage.cpu > limit.cpu:
        over.append(f"cpu {usage.cpu:g} > {limit.cpu:g}")
    if usage.memory > limit.memory:
        over.append(f"memory {_size(usage.memory)} > {_size(limit.memory)}")
    if usage.disk > limit.disk:
        over.append(f"disk {_size(usage.disk)} > {_size(limit.disk)}")
    if usage.gpu > limit.gpu:
        over.append(f"gpu {usage.gpu} > {limit.gpu}")
    return over


@dataclass(frozen=True)
class MaxCapacity:
    """Refuses usage above the per-job limits, naming what is over (v0.3's text, then the details)."""

    per_job: pb.ResourceUsageData

    def check(self, request: BidRequest) -> str | None:
        if request.usage is None or res.less_than_eq(request.usage, self.per_job):
            return None
        return f"job requirements exceed max allowed per job: {', '.join(_over(request.usage, self.per_job))}"


@dataclass(frozen=True)
class AvailableCapacity:
    """Refuses a job when what running and queued executions claim, plus the job, would be more than
    the total times the over-commit factor (the queue holds the excess until it fits). The refusal is
    transient: the node has room again once executions end, and the requester asks it again then."""

    transient = True
    tracker: CapacityTracker
    over_commit_factor: float = OVER_COMMIT_FACTOR

    def check(self, request: BidRequest) -> str | None:
        if request.usage is None:
            return None
        claimed = res.add(self.tracker.running, self.tracker.queued)
        room = res.sub(res.multi(self.tracker.total, self.over_commit_factor), claimed)
        if not res.less_than_eq(request.usage, room):
            return "not enough capacity available"
        return None


@dataclass(frozen=True)
class StatelessJob:
    """With reject-stateless on, a job without inputs is refused."""

    reject_stateless: bool

    def check(self, request: BidRequest) -> str | None:
        if self.reject_stateless and not request.job.spec.inputs:
            return "stateless jobs not accepted"
        return None


def _describe_input(spec: pb.StorageSpec) -> str:
    source = enums.STORAGE_SOURCE_TYPE.name(spec.storage_source)
    return f"{source} {spec.cid or spec.url or spec.name or spec.path}".strip()


@dataclass(frozen=True)
class InputLocality:
    """With locality LOCAL, every input of the job must be on this node (`is_local`)."""

    locality: int
    is_local: IsLocal = nothing_is_local

    async def check(self, request: BidRequest) -> str | None:
        if self.locality != LOCAL:
            return None
        for spec in request.job.spec.inputs:
            try:
                local = await self.is_local(spec)
            except Exception as exc:
                return f"cannot tell whether input {_describe_input(spec)} is local: {exc}"
            if not local:
                return "not all inputs are local"
        return None


URL_DOWNLOAD = pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD


def url_downloads_per_run(spec: pb.Spec) -> int:
    """The most URL volumes one run of the job downloads: every URL context, and every URL input, or
    for a sharded job at most a batch of them (a shard downloads only the URLs its batch holds)."""
    contexts = sum(1 for volume in spec.contexts if volume.storage_source == URL_DOWNLOAD)
    inputs = sum(1 for volume in spec.inputs if volume.storage_source == URL_DOWNLOAD)
    if spec.sharding.glob_pattern:
        inputs = min(inputs, max(spec.sharding.batch_size, 1))
    return contexts + inputs


@dataclass(frozen=True)
class UrlInputCount:
    """A run of the job downloads at most `limit` URLs."""

    limit: int

    def check(self, request: BidRequest) -> str | None:
        count = url_downloads_per_run(request.job.spec)
        if count > self.limit:
            return (
                f"a run of this job downloads up to {count} URL inputs, more than the {self.limit} "
                "this node allows (url_download_max_inputs)"
            )
        return None


@dataclass(frozen=True)
class ExternalCommand:
    """The probe command (`bash -c`) must exit 0."""

    command: str
    node_id: str
    timeout: float = DEFAULT_PROBE_TIMEOUT

    async def check(self, request: BidRequest) -> str | None:
        return await ask_command(self.command, probe_payload(self.node_id, request.job), self.timeout)


@dataclass(frozen=True)
class ExternalHTTP:
    """The probe URL must answer the POST with 200."""

    url: str
    node_id: str
    timeout: float = DEFAULT_PROBE_TIMEOUT

    async def check(self, request: BidRequest) -> str | None:
        return await ask_http(self.url, probe_payload(self.node_id, request.job), self.timeout)


class Bidder:
    """Runs the strategies: `pre` ones on the job alone, then the job's usage is worked out, then the
    `usage` ones, then the `external` ones (probes). The first refusal wins; a strategy that raises
    refuses with the error."""

    def __init__(
        self,
        pre: Sequence[BidStrategy],
        usage: Sequence[BidStrategy],
        external: Sequence[BidStrategy] = (),
    ) -> None:
        self.pre = list(pre)
        self.usage = list(usage)
        self.external = list(external)

    async def decide(self, job: pb.Job, shard_index: int) -> BidDecision:
        request = BidRequest(job, shard_index)
        refusal = await _first_refusal(self.pre, request)
        if refusal is not None:
            return BidDecision(False, refusal[0], refused_by=type(refusal[1]).__name__)
        try:
            usage = job_usage(job.spec)
        except InvalidArgumentError as exc:
            return BidDecision(False, str(exc), refused_by="InvalidResources")
        request = BidRequest(job, shard_index, usage)
        refusal = await _first_refusal([*self.usage, *self.external], request)
        if refusal is not None:
            reason, strategy = refusal
            busy = getattr(strategy, "transient", False)
            return BidDecision(False, reason, usage, busy=busy, refused_by=type(strategy).__name__)
        return BidDecision(True, "", usage)


async def _first_refusal(
    strategies: Sequence[BidStrategy], request: BidRequest
) -> tuple[str, BidStrategy] | None:
    """The first strategy's refusal, with the strategy that refused."""
    for strategy in strategies:
        try:
            reason = strategy.check(request)
            if inspect.isawaitable(reason):
                reason = await reason
        except Exception as exc:
            log.exception("bid strategy %s failed on job %s", type(strategy).__name__, request.job.id)
            return f"{type(strategy).__name__} failed: {exc}", strategy
        if reason is not None:
            return reason, strategy
    return None


def default_bidder(
    *,
    is_installed: Callable[[int], bool],
    verifiers: Collection[int],
    publishers: Collection[int],
    per_job: pb.ResourceUsageData,
    tracker: CapacityTracker,
    policy: BidPolicy = DEFAULT_BID_POLICY,
    node_id: str = "",
    is_local: IsLocal = nothing_is_local,
) -> Bidder:
    """The Bacalhau v0.3 bid strategies that apply to this project, in the order of this module's docstring.
    `node_id` is what the probes are told; `is_local` answers for the locality check."""
    external: list[BidStrategy] = []
    if policy.probe_exec:
        external.append(ExternalCommand(policy.probe_exec, node_id, policy.probe_timeout))
    if policy.probe_http:
        external.append(ExternalHTTP(policy.probe_http, node_id, policy.probe_timeout))
    return Bidder(
        pre=[
            EngineInstalled(is_installed),
            VerifierSupported(frozenset(verifiers)),
            PublisherSupported(frozenset(publishers)),
            TimeoutInRange(policy.min_timeout, policy.max_timeout),
            StatelessJob(policy.reject_stateless),
            InputLocality(policy.locality, is_local),
            UrlInputCount(policy.max_url_inputs),
        ],
        usage=[MaxCapacity(per_job), AvailableCapacity(tracker, policy.over_commit_factor)],
        external=external,
    )
