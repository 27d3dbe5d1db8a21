"""Whether a compute node bids on a job (v0.3's bid strategies, §3.2).

The strategies run in order and the first refusal wins; each refusal carries a reason a user can read
(it becomes the job's `BidCancelled` event status on the requester). Order:

1. the job's engine has an installed executor   "executor Docker not installed"
2. the job's verifier is supported              "verifier Deterministic not installed"
3. the job's publisher is supported             "publisher Ipfs not installed"
4. the job's timeout is in range (Timeout > 0)  "job timeout 7200s exceeds maximum allowed 3600s"
                                                "job timeout 0.1s below minimum allowed 0.5s"
5. the job's resource strings can be read       the parser's error, e.g. "Spec.Resources.CPU: ..."
6. usage within the per-job maximum             "job requirements exceed max allowed per job"
7. usage within the available capacity          "not enough capacity available"

Usage = the job's resources with defaults filled in (`capacity.job_usage`). The available-capacity
check allows v0.3's over-commit factor of 2: accepted executions that do not fit yet wait in the
node's run queue.

An unspecified verifier or publisher counts as Noop (the requester's default).
"""

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import enums, pb
from bacalhau_grpc.common.model import resources as res
from bacalhau_grpc.compute.domain.capacity import CapacityTracker, job_usage

# v0.3 `DefaultOverCommitFactor` of the available-capacity strategy.
OVER_COMMIT_FACTOR = 2.0


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


class BidStrategy(Protocol):
    """One check: None to go on, or the reason for refusing."""

    def check(self, request: BidRequest) -> str | None: ...


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


@dataclass(frozen=True)
class MaxCapacity:
    per_job: pb.ResourceUsageData

    def check(self, request: BidRequest) -> str | None:
        if request.usage is not None and not res.less_than_eq(request.usage, self.per_job):
            return "job requirements exceed max allowed per job"
        return None


@dataclass(frozen=True)
class AvailableCapacity:
    tracker: CapacityTracker
    over_commit_factor: float = OVER_COMMIT_FACTOR

    def check(self, request: BidRequest) -> str | None:
        if request.usage is None:
            return None
        room = res.multi(self.tracker.unclaimed(), self.over_commit_factor)
        if not res.less_than_eq(request.usage, room):
            return "not enough capacity available"
        return None


class Bidder:
    """Runs the strategies: `pre` ones on the job alone, then the job's usage is worked out, then the
    `usage` ones. The first refusal wins."""

    def __init__(self, pre: Sequence[BidStrategy], usage: Sequence[BidStrategy]) -> None:
        self.pre = list(pre)
        self.usage = list(usage)

    async def decide(self, job: pb.Job, shard_index: int) -> BidDecision:
        request = BidRequest(job, shard_index)
        for strategy in self.pre:
            reason = strategy.check(request)
            if reason is not None:
                return BidDecision(False, reason)
        try:
            usage = job_usage(job.spec)
        except InvalidArgumentError as exc:
            return BidDecision(False, str(exc))
        request = BidRequest(job, shard_index, usage)
        for strategy in self.usage:
            reason = strategy.check(request)
            if reason is not None:
                return BidDecision(False, reason, usage)
        return BidDecision(True, "", usage)


def default_bidder(
    *,
    is_installed: Callable[[int], bool],
    verifiers: Collection[int],
    publishers: Collection[int],
    min_timeout: float,
    max_timeout: float,
    per_job: pb.ResourceUsageData,
    tracker: CapacityTracker,
) -> Bidder:
    """The strategies of §3.2 that apply to this project, in order."""
    return Bidder(
        pre=[
            EngineInstalled(is_installed),
            VerifierSupported(frozenset(verifiers)),
            PublisherSupported(frozenset(publishers)),
            TimeoutInRange(min_timeout, max_timeout),
        ],
        usage=[MaxCapacity(per_job), AvailableCapacity(tracker)],
    )
