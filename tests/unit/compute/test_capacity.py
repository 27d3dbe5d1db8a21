"""Capacity: limits from settings and the machine, job usage, the run queue."""

import asyncio
import os

import pytest

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.capacity import (
    DEFAULT_JOB_USAGE,
    CapacityTracker,
    job_usage,
    parse_limits,
    resolve_limits,
)
from bacalhau_grpc.compute.host import cgroup_limits, gpu_count, machine_capacity
from tests.unit.compute.support import make_job

GiB = 1024**3
MiB = 1024**2


def usage(cpu=0.0, memory=0, disk=0, gpu=0):
    return pb.ResourceUsageData(cpu=cpu, memory=memory, disk=disk, gpu=gpu)


def test_machine_capacity_is_80_percent_of_this_machine(tmp_path):
    import shutil

    machine = machine_capacity(tmp_path)
    assert machine.cpu == pytest.approx(len(os.sched_getaffinity(0)) * 0.8)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert machine.memory == int(ram * 0.8)
    assert 0 < machine.disk <= shutil.disk_usage(tmp_path).free
    assert machine.gpu == gpu_count()
    assert machine_capacity(tmp_path, gpus=2).gpu == 2
    # A data folder that does not exist yet is measured on its nearest existing parent.
    assert machine_capacity(tmp_path / "not" / "yet").disk > 0


def test_limits_take_unset_fields_from_the_machine_then_the_total():
    machine = usage(1.6, 8 * GiB, 100 * GiB, 0)
    total = parse_limits("1", "", "", "", field_prefix="limit_total_")
    per_job = parse_limits("", "1Gb", "", "", field_prefix="limit_job_")
    limits = resolve_limits(total, per_job, machine)
    assert limits.total == usage(1.0, 8 * GiB, 100 * GiB, 0)
    assert limits.per_job == usage(1.0, GiB, 100 * GiB, 0)


def test_a_per_job_limit_above_the_total_names_the_setting():
    with pytest.raises(InvalidArgumentError) as error:
        resolve_limits(usage(cpu=1), usage(cpu=2), usage(cpu=8, memory=GiB))
    assert error.value.field == "limit_job_cpu"
    assert str(error.value) == "limit_job_cpu: the per-job limit 2 CPU is above the node's total 1 CPU"


@pytest.mark.parametrize(
    ("total", "per_job", "field", "message"),
    [
        (usage(), usage(cpu=0.05), "limit_job_cpu", "0.05 CPU is below the default job usage 0.1 CPU"),
        (usage(), usage(memory=50 * MiB), "limit_job_memory", "52428800 bytes is below the default"),
        # The per-job limit came from the total: the total's setting is the one to change.
        (usage(memory=64 * MiB), usage(), "limit_total_memory", "67108864 bytes is below the default"),
    ],
)
def test_a_per_job_limit_below_the_default_job_usage_names_the_setting(total, per_job, field, message):
    machine = usage(8, 8 * GiB, 100 * GiB)
    with pytest.raises(InvalidArgumentError) as error:
        resolve_limits(total, per_job, machine)
    assert error.value.field == field
    assert error.value.reason.startswith(message)
    assert "would be refused" in error.value.reason


def test_the_default_job_usage_itself_is_a_valid_per_job_limit():
    limits = resolve_limits(usage(), usage(cpu=0.1, memory=100 * MiB), usage(8, 8 * GiB, 100 * GiB))
    assert limits.per_job == usage(0.1, 100 * MiB, 100 * GiB)


def test_a_setting_that_cannot_be_read_names_the_setting():
    with pytest.raises(InvalidArgumentError) as error:
        parse_limits("", "lots", "", "", field_prefix="limit_total_")
    assert error.value.field == "limit_total_memory"


def test_job_usage_fills_in_the_defaults():
    assert usage(0.1, 100 * MiB) == DEFAULT_JOB_USAGE
    assert job_usage(make_job().spec) == usage(0.1, 100 * MiB)
    assert job_usage(make_job(cpu="2", gpu="1").spec) == usage(2.0, 100 * MiB, 0, 1)
    with pytest.raises(InvalidArgumentError) as error:
        job_usage(make_job(gpu="x").spec)
    assert error.value.field == "Spec.Resources.GPU"


def test_cpu_is_counted_exactly():
    tracker = CapacityTracker(usage(cpu=1.6))
    for i in range(16):  # 16 x 0.1 would be 1.6000000000000003 in floats
        assert tracker.try_reserve(f"e-{i}", usage(cpu=0.1)), i
    assert not tracker.try_reserve("e-16", usage(cpu=0.1))
    assert tracker.available() == usage()
    assert tracker.running == usage(cpu=1.6)


async def test_reserve_waits_in_fifo_order_and_small_ones_may_overtake():
    tracker = CapacityTracker(usage(cpu=2.0, memory=GiB))
    await tracker.reserve("a", usage(cpu=1.0, memory=600 * MiB))
    started: list[str] = []

    async def run(name, amount):
        await tracker.reserve(name, amount)
        started.append(name)

    big = asyncio.create_task(run("big", usage(cpu=1.0, memory=600 * MiB)))
    small = asyncio.create_task(run("small", usage(cpu=0.5, memory=100 * MiB)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert started == ["small"]  # the small one fits beside "a", the big one does not
    assert tracker.queue_length() == 1 and tracker.queued == usage(cpu=1.0, memory=600 * MiB)
    tracker.release("a")
    await asyncio.wait_for(big, 1)
    await small
    assert started == ["small", "big"]
    assert tracker.running == usage(cpu=1.5, memory=700 * MiB)
    assert tracker.queue_length() == 0 and tracker.queued == usage()


async def test_a_cancelled_wait_leaves_the_queue():
    tracker = CapacityTracker(usage(cpu=1.0))
    assert tracker.try_reserve("a", usage(cpu=1.0))
    waiting = asyncio.create_task(tracker.reserve("b", usage(cpu=1.0)))
    await asyncio.sleep(0)
    assert tracker.queue_length() == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert tracker.queue_length() == 0 and tracker.unclaimed() == usage()
    tracker.release("a")
    assert tracker.available() == usage(cpu=1.0) and not tracker.holding("b")


async def test_holding_for_releases_on_exit_even_on_error():
    tracker = CapacityTracker(usage(cpu=1.0))
    with pytest.raises(RuntimeError):
        async with tracker.holding_for("a", usage(cpu=1.0)):
            assert tracker.holding("a")
            raise RuntimeError("boom")
    assert not tracker.holding("a") and tracker.available() == usage(cpu=1.0)


def fake_tool(tmp_path, body: str) -> tuple[str, ...]:
    """A real executable standing in for nvidia-smi, called with nvidia-smi's arguments."""
    path = tmp_path / "nvidia-smi"
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)
    return (str(path), "--query-gpu=index", "--format=csv,noheader")


def test_gpus_are_the_lines_nvidia_smi_prints(tmp_path):
    body = 'test "$*" = "--query-gpu=index --format=csv,noheader" || exit 2\nprintf "0\\n1\\n\\n"'
    assert gpu_count(fake_tool(tmp_path, body)) == 2


@pytest.mark.parametrize("body", ["exit 9", 'echo "NVIDIA-SMI has failed" >&2; exit 255', "true"])
def test_a_failing_or_silent_nvidia_smi_means_no_gpu(tmp_path, body):
    assert gpu_count(fake_tool(tmp_path, body)) == 0


def test_a_hanging_nvidia_smi_means_no_gpu(tmp_path):
    assert gpu_count(fake_tool(tmp_path, "exec sleep 60"), timeout=0.3) == 0


def test_no_nvidia_smi_means_no_gpu(tmp_path):
    assert gpu_count((str(tmp_path / "nvidia-smi"), "--query-gpu=index")) == 0


def cgroup_tree(root, files: dict[str, str]):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_cgroup_v2_limit_caps_the_machine_tightest_along_the_path(tmp_path):
    root = cgroup_tree(
        tmp_path / "cg",
        {
            "cgroup.controllers": "cpu memory",
            "kubepods/cpu.max": "max 100000",
            "kubepods/memory.max": str(3 * GiB),
            "kubepods/pod1/cpu.max": "150000 100000",  # 1.5 cores
            "kubepods/pod1/memory.max": "max",
        },
    )
    proc = cgroup_tree(tmp_path, {"self-cgroup": "0::/kubepods/pod1\n"}) / "self-cgroup"
    assert cgroup_limits(root, proc) == (1.5, 3 * GiB)
    machine = machine_capacity(tmp_path, cgroup_root=root, proc_cgroup=proc)
    assert machine.cpu == pytest.approx(min(1.5, len(os.sched_getaffinity(0))) * 0.8)
    assert machine.memory == int(3 * GiB * 0.8)


def test_cgroup_v1_limits_and_unlimited_groups(tmp_path):
    root = cgroup_tree(
        tmp_path / "cg",
        {
            "cpu/docker/abc/cpu.cfs_quota_us": "50000",
            "cpu/docker/abc/cpu.cfs_period_us": "100000",
            "memory/docker/abc/memory.limit_in_bytes": str(512 * 1024**2),
            "memory/memory.limit_in_bytes": "9223372036854771712",  # unlimited
        },
    )
    proc = (
        cgroup_tree(tmp_path, {"self-cgroup": "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n"})
        / "self-cgroup"
    )
    assert cgroup_limits(root, proc) == (0.5, 512 * 1024**2)
    unlimited = cgroup_tree(
        tmp_path / "free", {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}
    )
    free_proc = cgroup_tree(tmp_path, {"free-cgroup": "2:cpu,cpuacct:/\n4:memory:/\n"}) / "free-cgroup"
    assert cgroup_limits(unlimited, free_proc) == (None, None)
    assert cgroup_limits(root, tmp_path / "no-such-file") == (None, None)
