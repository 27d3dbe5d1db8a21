"""Bid strategies: order, reasons, usage with defaults, capacity, job selection (the probes against
real servers and commands are in test_probes.py)."""

import asyncio

import pytest

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.bidding import (
    ANYWHERE,
    LOCAL,
    AvailableCapacity,
    Bidder,
    BidPolicy,
    BidRequest,
    MaxCapacity,
    TimeoutInRange,
    default_bidder,
    nothing_is_local,
)
from bacalhau_grpc.compute.domain.capacity import CapacityTracker
from tests.unit.compute.support import make_job

GiB = 1024**3
MiB = 1024**2
TOTAL = pb.ResourceUsageData(cpu=2.0, memory=4 * GiB, disk=10 * GiB, gpu=0)


def bidder(
    *, per_job=TOTAL, tracker=None, verifiers=None, publishers=None, is_local=nothing_is_local, **policy
):
    return default_bidder(
        is_installed=lambda engine: engine == pb.Engine.ENGINE_NOOP,
        verifiers=verifiers or [pb.Verifier.VERIFIER_NOOP, pb.Verifier.VERIFIER_DETERMINISTIC],
        publishers=publishers or [pb.Publisher.PUBLISHER_NOOP],
        per_job=per_job,
        tracker=tracker or CapacityTracker(TOTAL),
        policy=BidPolicy(**policy),
        node_id="node-000000000001",
        is_local=is_local,
    )


def with_inputs(job, *cids, contexts=()):
    for cid in cids:
        job.spec.inputs.add(storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS, cid=cid, path="/in")
    for cid in contexts:
        job.spec.contexts.add(
            storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS, cid=cid, path="/c"
        )
    return job


def held_here(*cids):
    """An `is_local` that holds exactly these CIDs."""

    async def is_local(spec):
        return spec.cid in cids

    return is_local


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
    cases = [
        (make_job(cpu="1.5"), "cpu 1.5 > 1"),
        (make_job(memory="2Gb"), "memory 2Gb > 1Gb"),
        (make_job(disk="1500Mb"), "disk 1500Mb > 1Gb"),
        (make_job(gpu="1"), "gpu 1 > 0"),
        (make_job(cpu="3", gpu="2"), "cpu 3 > 1, gpu 2 > 0"),
    ]
    for job, over in cases:
        decision = await bidder(per_job=per_job).decide(job, 0)
        assert (decision.accepted, decision.reason) == (
            False,
            f"job requirements exceed max allowed per job: {over}",
        )


def test_max_capacity_strategy_alone():
    strategy = MaxCapacity(pb.ResourceUsageData(cpu=1.0, memory=GiB))
    assert strategy.check(BidRequest(make_job(), 0, pb.ResourceUsageData(cpu=1.0, memory=GiB))) is None
    assert strategy.check(BidRequest(make_job(), 0, pb.ResourceUsageData(cpu=1.001))) is not None


def test_available_capacity_allows_running_plus_queued_up_to_twice_the_total():
    tracker = CapacityTracker(pb.ResourceUsageData(cpu=1.0, memory=GiB))
    strategy = AvailableCapacity(tracker)
    two_cores = BidRequest(make_job(), 0, pb.ResourceUsageData(cpu=2.0))
    assert strategy.check(two_cores) is None  # 1 core x 2, nothing claimed
    assert tracker.try_reserve("e-running", pb.ResourceUsageData(cpu=0.5))
    assert strategy.check(two_cores) == "not enough capacity available"
    # 0.5 running + 1.5 = 2 x the total (v0.3 allowed only (1 - 0.5) x 2 = 1).
    assert strategy.check(BidRequest(make_job(), 0, pb.ResourceUsageData(cpu=1.5))) is None
    tracker.release("e-running")
    assert strategy.check(two_cores) is None


async def test_a_node_with_a_full_queue_refuses_with_the_capacity_reason():
    tracker = CapacityTracker(TOTAL)
    assert tracker.try_reserve("e-running", TOTAL)
    assert (await bidder(tracker=tracker).decide(make_job(), 0)).accepted  # it may queue
    queued = asyncio.create_task(tracker.reserve("e-queued", TOTAL))
    await asyncio.sleep(0)  # let it enter the queue
    assert tracker.queue_length() == 1
    decision = await bidder(tracker=tracker).decide(make_job(), 0)
    assert (decision.accepted, decision.reason, decision.busy) == (
        False,
        "not enough capacity available",
        True,
    )
    queued.cancel()


async def test_only_the_capacity_refusal_is_busy():
    """Busy means "ask again later": every other refusal stays the same whatever runs."""
    decision = await bidder(per_job=pb.ResourceUsageData(cpu=0.5, memory=GiB)).decide(make_job(cpu="1"), 0)
    assert (decision.accepted, decision.busy) == (False, False)
    assert decision.reason.startswith("job requirements exceed max allowed per job")


def test_the_over_commit_factor_is_the_policy_s():
    tracker = CapacityTracker(pb.ResourceUsageData(cpu=1.0, memory=GiB))
    three_cores = BidRequest(make_job(), 0, pb.ResourceUsageData(cpu=3.0))
    assert AvailableCapacity(tracker, 2.0).check(three_cores) == "not enough capacity available"
    assert AvailableCapacity(tracker, 3.0).check(three_cores) is None


async def test_stateless_jobs_are_refused_only_when_the_node_says_so():
    stateless = make_job()
    assert (await bidder().decide(stateless, 0)).accepted
    decision = await bidder(reject_stateless=True).decide(stateless, 0)
    assert (decision.accepted, decision.reason) == (False, "stateless jobs not accepted")
    # Contexts are not inputs: a job with only a context is still stateless.
    only_context = with_inputs(make_job(), contexts=["QmCode"])
    assert (
        await bidder(reject_stateless=True).decide(only_context, 0)
    ).reason == "stateless jobs not accepted"
    assert (await bidder(reject_stateless=True).decide(with_inputs(make_job(), "QmData"), 0)).accepted


async def test_locality_local_takes_only_jobs_whose_inputs_are_all_here():
    local = bidder(locality=LOCAL, is_local=held_here("QmA", "QmB"))
    assert (await local.decide(with_inputs(make_job(), "QmA", "QmB"), 0)).accepted
    decision = await local.decide(with_inputs(make_job(), "QmA", "QmElsewhere"), 0)
    assert (decision.accepted, decision.reason) == (False, "not all inputs are local")
    # A job without inputs passes; contexts do not count.
    assert (await local.decide(make_job(), 0)).accepted
    assert (await local.decide(with_inputs(make_job(), "QmA", contexts=["QmCode"]), 0)).accepted


async def test_locality_anywhere_does_not_ask_the_storage():
    asked = []

    async def is_local(spec):
        asked.append(spec.cid)
        return False

    decision = await bidder(locality=ANYWHERE, is_local=is_local).decide(with_inputs(make_job(), "QmA"), 0)
    assert decision.accepted and asked == []


async def test_a_node_without_storage_holds_nothing_locally():
    decision = await bidder(locality=LOCAL).decide(with_inputs(make_job(), "QmA"), 0)
    assert decision.reason == "not all inputs are local"


async def test_a_storage_that_cannot_answer_is_a_refusal_with_the_cause():
    async def broken(spec):
        raise OSError("ipfs daemon unreachable")

    decision = await bidder(locality=LOCAL, is_local=broken).decide(with_inputs(make_job(), "QmA"), 0)
    assert (decision.accepted, decision.reason) == (
        False,
        "cannot tell whether input IPFS QmA is local: ipfs daemon unreachable",
    )


async def test_a_strategy_that_raises_refuses_with_the_error():
    class Broken:
        def check(self, request):
            raise RuntimeError("boom")

    decision = await Bidder(pre=[Broken()], usage=[]).decide(make_job(), 0)
    assert (decision.accepted, decision.reason) == (False, "Broken failed: boom")


async def test_the_documented_order():
    """Engine, verifier, publisher, timeout, stateless, locality, resources, per-job, available, probes."""
    tracker = CapacityTracker(TOTAL)
    node = bidder(
        tracker=tracker,
        max_timeout=10,
        reject_stateless=True,
        locality=LOCAL,
        is_local=held_here("QmA"),
        per_job=pb.ResourceUsageData(cpu=1.0, memory=GiB, disk=GiB),
        probe_exec="exit 4",
    )
    job = make_job(engine=pb.Engine.ENGINE_DOCKER, verifier=pb.Verifier.VERIFIER_DETERMINISTIC, timeout=60)
    job.spec.publisher = pb.Publisher.PUBLISHER_IPFS
    job.spec.resources.cpu = "lots"
    reasons = []
    fixes = [
        lambda: setattr(job.spec, "engine", pb.Engine.ENGINE_NOOP),
        lambda: setattr(job.spec, "publisher", pb.Publisher.PUBLISHER_NOOP),
        lambda: setattr(job.spec, "timeout", 5),
        lambda: with_inputs(job, "QmB"),
        lambda: setattr(job.spec.inputs[0], "cid", "QmA"),
        lambda: setattr(job.spec.resources, "cpu", "2"),
        lambda: setattr(job.spec.resources, "cpu", "1"),
        lambda: tracker.release("e-queued"),
    ]
    assert tracker.try_reserve("e-running", TOTAL)
    queued = asyncio.create_task(tracker.reserve("e-queued", TOTAL))
    await asyncio.sleep(0)  # let it enter the queue: the node has claimed twice its total
    for fix in [lambda: None, *fixes]:
        fix()
        reasons.append((await node.decide(job, 0)).reason.split(":")[0])
    assert reasons == [
        "executor Docker not installed",
        "publisher Ipfs not installed",  # the deterministic verifier is installed
        "job timeout 60s exceeds maximum allowed 10s",
        "stateless jobs not accepted",
        "not all inputs are local",
        "Spec.Resources.CPU",
        "job requirements exceed max allowed per job",
        "not enough capacity available",
        "command `exit 4` returned non-zero exit code 4",
    ]
    with pytest.raises(asyncio.CancelledError):
        await queued
