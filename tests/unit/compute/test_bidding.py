"""Bid strategies: order, reasons, usage with defaults, capacity."""

import pytest

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.bidding import (
    AvailableCapacity,
    BidRequest,
    MaxCapacity,
    TimeoutInRange,
    default_bidder,
)
from bacalhau_grpc.compute.domain.capacity import CapacityTracker
from tests.unit.compute.support import make_job

GiB = 1024**3
MiB = 1024**2
TOTAL = pb.ResourceUsageData(cpu=2.0, memory=4 * GiB, disk=10 * GiB, gpu=0)


def bidder(
    *, per_job=TOTAL, tracker=None, verifiers=None, publishers=None, min_timeout=0.5, max_timeout=3600
):
    return default_bidder(
        is_installed=lambda engine: engine == pb.Engine.ENGINE_NOOP,
        verifiers=verifiers or [pb.Verifier.VERIFIER_NOOP, pb.Verifier.VERIFIER_DETERMINISTIC],
        publishers=publishers or [pb.Publisher.PUBLISHER_NOOP],
        min_timeout=min_timeout,
        max_timeout=max_timeout,
        per_job=per_job,
        tracker=tracker or CapacityTracker(TOTAL),
    )


async def test_a_plain_noop_job_is_accepted_with_the_default_usage():
    decision = await bidder().decide(make_job(), 0)
    assert decision.accepted and decision.reason == ""
    assert decision.usage == pb.ResourceUsageData(cpu=0.1, memory=100 * MiB)


async def test_the_job_resources_replace_the_defaults_field_by_field():
    decision = await bidder().decide(make_job(cpu="500m", disk="1Gb"), 0)
    assert decision.usage == pb.ResourceUsageData(cpu=0.5, memory=100 * MiB, disk=GiB)


@pytest.mark.parametrize(
    ("engine", "reason"),
    [
        (pb.Engine.ENGINE_DOCKER, "executor Docker not installed"),
        (pb.Engine.ENGINE_WASM, "executor Wasm not installed"),
        (pb.Engine.ENGINE_PYTHON_WASM, "executor PythonWasm not installed"),
        (pb.Engine.ENGINE_UNSPECIFIED, "executor Engine(0) not installed"),
    ],
)
async def test_an_engine_without_executor_is_refused(engine, reason):
    decision = await bidder().decide(make_job(engine=engine), 0)
    assert not decision.accepted and decision.reason == reason


async def test_an_unsupported_verifier_is_refused():
    decision = await bidder(verifiers=[pb.Verifier.VERIFIER_NOOP]).decide(
        make_job(verifier=pb.Verifier.VERIFIER_DETERMINISTIC), 0
    )
    assert (decision.accepted, decision.reason) == (False, "verifier Deterministic not installed")


async def test_an_unsupported_publisher_is_refused():
    decision = await bidder().decide(make_job(publisher=pb.Publisher.PUBLISHER_IPFS), 0)
    assert (decision.accepted, decision.reason) == (False, "publisher Ipfs not installed")


async def test_unspecified_verifier_and_publisher_count_as_noop():
    job = make_job(verifier=pb.Verifier.VERIFIER_UNSPECIFIED, publisher=pb.Publisher.PUBLISHER_UNSPECIFIED)
    assert (await bidder().decide(job, 0)).accepted


@pytest.mark.parametrize(
    ("timeout", "reason"),
    [
        (7200.0, "job timeout 7200s exceeds maximum allowed 3600s"),
        (0.1, "job timeout 0.1s below minimum allowed 0.5s"),
        (float("nan"), "job timeout nan is not a number of seconds >= 0"),
        (-1.0, "job timeout -1.0 is not a number of seconds >= 0"),
        (0.0, None),
        (0.5, None),
        (3600.0, None),
    ],
)
def test_the_timeout_range(timeout, reason):
    strategy = TimeoutInRange(0.5, 3600.0)
    assert strategy.check(BidRequest(make_job(timeout=timeout), 0)) == reason


async def test_the_first_refusal_wins():
    job = make_job(engine=pb.Engine.ENGINE_DOCKER, publisher=pb.Publisher.PUBLISHER_IPFS, timeout=99999)
    assert (await bidder().decide(job, 0)).reason == "executor Docker not installed"
    job.spec.engine = pb.Engine.ENGINE_NOOP
    assert (await bidder().decide(job, 0)).reason == "publisher Ipfs not installed"
    job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
    assert (await bidder().decide(job, 0)).reason == "job timeout 99999s exceeds maximum allowed 3600s"


async def test_a_resource_string_that_cannot_be_read_is_a_refusal_with_the_error():
    decision = await bidder().decide(make_job(cpu="lots"), 0)
    assert not decision.accepted
    assert decision.reason.startswith("Spec.Resources.CPU: 'lots' is not a CPU amount")
    decision = await bidder().decide(make_job(memory="-1Gb"), 0)
    assert decision.reason.startswith("Spec.Resources.Memory: '-1Gb' is negative")


async def test_usage_above_the_per_job_maximum_is_refused():
    per_job = pb.ResourceUsageData(cpu=1.0, memory=GiB, disk=GiB, gpu=0)
    assert (await bidder(per_job=per_job).decide(make_job(cpu="1"), 0)).accepted
    for job in (make_job(cpu="1.5"), make_job(memory="2Gb"), make_job(disk="2Gb"), make_job(gpu="1")):
        decision = await bidder(per_job=per_job).decide(job, 0)
        assert (decision.accepted, decision.reason) == (False, "job requirements exceed max allowed per job")


def test_max_capacity_strategy_alone():
    strategy = MaxCapacity(pb.ResourceUsageData(cpu=1.0, memory=GiB))
    assert strategy.check(BidRequest(make_job(), 0, pb.ResourceUsageData(cpu=1.0, memory=GiB))) is None
    assert strategy.check(BidRequest(make_job(), 0, pb.ResourceUsageData(cpu=1.001))) is not None


def test_available_capacity_allows_over_commit_by_two_then_refuses():
    tracker = CapacityTracker(pb.ResourceUsageData(cpu=1.0, memory=GiB))
    strategy = AvailableCapacity(tracker)
    two_cores = BidRequest(make_job(), 0, pb.ResourceUsageData(cpu=2.0))
    assert strategy.check(two_cores) is None  # 1 core free x 2
    assert tracker.try_reserve("e-running", pb.ResourceUsageData(cpu=0.5))
    assert strategy.check(two_cores) == "not enough capacity available"
    assert strategy.check(BidRequest(make_job(), 0, pb.ResourceUsageData(cpu=1.0))) is None
    tracker.release("e-running")
    assert strategy.check(two_cores) is None


async def test_a_full_node_refuses_with_the_capacity_reason():
    tracker = CapacityTracker(TOTAL)
    assert tracker.try_reserve("e-big", TOTAL)
    decision = await bidder(tracker=tracker).decide(make_job(), 0)
    assert (decision.accepted, decision.reason) == (False, "not enough capacity available")
