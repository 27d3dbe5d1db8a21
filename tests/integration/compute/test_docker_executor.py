"""The Docker executor against a real engine (the `docker_engine` fixture), with the tests' busybox image.

Each test runs real containers and checks what a user sees: the stream files and exit code in the
result folder, the errors, and the engine's containers (none is left behind).
"""

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.capacity import job_usage
from bacalhau_grpc.compute.domain.executions import new_execution
from bacalhau_grpc.compute.domain.runs import SUMMARY_BYTES, ExecutorError, Mount, RunContext, prepare_outputs
from bacalhau_grpc.compute.executors.docker import (
    LABEL_EXECUTION_ID,
    LABEL_JOB_ID,
    LABEL_NODE_ID,
    LABEL_SHARD_INDEX,
    NOFILE_LIMIT,
    DockerExecutor,
    container_config,
    container_name,
)
from tests.unit.compute.support import make_job

# Reads the job container's memory, CPU and pids limits (cgroup v1, else v2) and its network devices.
SHOW_LIMITS = """
if [ -d /sys/fs/cgroup/memory ]; then
  cat /sys/fs/cgroup/memory/memory.limit_in_bytes
  echo "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"
  cat /sys/fs/cgroup/pids/pids.max
else
  cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max
fi
ls /sys/class/net
"""


def docker_job(
    image: str,
    *entrypoint: str,
    env: tuple[str, ...] = (),
    workdir: str = "",
    cpu: str = "",
    memory: str = "",
    disk: str = "",
    gpu: str = "",
    timeout: float = 0.0,
) -> pb.Job:
    job = make_job(
        engine=pb.Engine.ENGINE_DOCKER, cpu=cpu, memory=memory, disk=disk, gpu=gpu, timeout=timeout
    )
    job.spec.docker.image = image
    job.spec.docker.entrypoint.extend(entrypoint)
    job.spec.docker.environment_variables.extend(env)
    job.spec.docker.working_directory = workdir
    return job


def run_context(
    job: pb.Job,
    node_id: str,
    result_dir: Path,
    *,
    timeout: float = 30.0,
    contexts: tuple[Mount, ...] = (),
    inputs: tuple[Mount, ...] = (),
    outputs: tuple[Mount, ...] = (),
) -> RunContext:
    result_dir.mkdir(parents=True, exist_ok=True)
    return RunContext(
        new_execution(job, 0, job_usage(job.spec)),
        node_id,
        contexts=contexts,
        inputs=inputs,
        outputs=outputs,
        result_dir=result_dir,
        timeout=timeout,
    )


@pytest.fixture
async def docker(docker_engine: str) -> AsyncIterator[aiodocker.Docker]:
    """A client of the engine of its own, to look at (and make) containers beside the executor."""
    client = aiodocker.Docker()
    yield client
    await client.close()


async def containers_of(docker: aiodocker.Docker, node_id: str, **filters: list[str]) -> list[dict]:
    listed = await docker.containers.list(
        all=True, filters={"label": [f"{LABEL_NODE_ID}={node_id}"], **filters}
    )
    return [c._container for c in listed]


@pytest.fixture
async def executor(docker: aiodocker.Docker) -> AsyncIterator[DockerExecutor]:
    """A started executor of a node of its own; no container of that node may outlive a test."""
    executor = DockerExecutor(f"test-{uuid.uuid4().hex[:10]}")
    await executor.start()
    assert executor.is_installed()
    yield executor
    leftovers = await containers_of(docker, executor.node_id)
    await executor.close()
    assert leftovers == [], "the executor left containers behind"


@contextlib.asynccontextmanager
async def started(docker: aiodocker.Docker, **settings: Any) -> AsyncIterator[DockerExecutor]:
    """A started executor of a node of its own with these settings; no container may outlive it."""
    executor = DockerExecutor(f"test-{uuid.uuid4().hex[:10]}", **settings)
    await executor.start()
    try:
        yield executor
    finally:
        leftovers = await containers_of(docker, executor.node_id)
        await executor.close()
    assert leftovers == [], "the executor left containers behind"


async def wait_until_running(docker: aiodocker.Docker, node_id: str, deadline: float = 15.0) -> dict:
    """The node's running container, once there is one."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        running = await containers_of(docker, node_id, status=["running"])
        if running:
            return running[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no container of {node_id} ran within {deadline}s")


# ---------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------


async def test_hello_world_is_on_stdout_and_in_the_result_folder(docker_engine, executor, tmp_path):
    job = docker_job(docker_engine, "echo", "hello world")
    result = await executor.run(run_context(job, executor.node_id, tmp_path))
    assert (result.stdout, result.stderr, result.exit_code) == (b"hello world\n", b"", 0)
    assert (tmp_path / "stdout").read_bytes() == b"hello world\n"
    assert (tmp_path / "stderr").read_bytes() == b""
    assert (tmp_path / "exitCode").read_text() == "0"
    assert result.result_dir == tmp_path
    summary = result.summary()
    assert summary.stdout == "hello world\n" and summary.exit_code == 0 and not summary.stdout_truncated


@pytest.mark.parametrize("code", [0, 1])
async def test_the_exit_code_is_a_result_and_stderr_is_kept_apart(docker_engine, executor, tmp_path, code):
    job = docker_job(docker_engine, "sh", "-c", f"echo out; echo err >&2; exit {code}")
    result = await executor.run(run_context(job, executor.node_id, tmp_path))
    assert (result.stdout, result.stderr, result.exit_code) == (b"out\n", b"err\n", code)
    assert (tmp_path / "exitCode").read_text() == str(code)


async def test_the_streams_are_copied_byte_for_byte(docker_engine, executor, tmp_path):
    data = os.urandom(300 * 1024)  # not UTF-8, and larger than one frame of Docker's stream
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "blob").write_bytes(data)
    job = docker_job(docker_engine, "sh", "-c", "cat /in/blob; cat /in/blob >&2")
    context = run_context(job, executor.node_id, tmp_path / "result", inputs=(Mount(tmp_path / "in", "/in"),))
    result = await executor.run(context)
    assert result.exit_code == 0
    assert (tmp_path / "result" / "stdout").read_bytes() == data
    assert (tmp_path / "result" / "stderr").read_bytes() == data


async def test_stdout_over_2_kib_is_cut_in_the_summary_only(docker_engine, executor, tmp_path):
    job = docker_job(docker_engine, "sh", "-c", "yes | head -c 3000")
    result = await executor.run(run_context(job, executor.node_id, tmp_path))
    assert (tmp_path / "stdout").read_bytes() == b"y\n" * 1500
    assert not result.stdout_truncated
    summary = result.summary()
    assert summary.stdout == "y\n" * (SUMMARY_BYTES // 2) and summary.stdout_truncated
    assert not summary.stderr_truncated


async def test_the_stream_cap_cuts_the_files_and_says_so(docker_engine, docker, tmp_path):
    executor = DockerExecutor(f"test-{uuid.uuid4().hex[:10]}", stream_cap=1000)
    await executor.start()
    try:
        job = docker_job(docker_engine, "sh", "-c", "yes abc | head -c 5000; echo small >&2")
        result = await executor.run(run_context(job, executor.node_id, tmp_path))
    finally:
        await executor.close()
    assert (tmp_path / "stdout").read_bytes() == (b"abc\n" * 250)
    assert (tmp_path / "stderr").read_bytes() == b"small\n"
    assert result.stdout_truncated and not result.stderr_truncated
    summary = result.summary()
    assert summary.stdout_truncated and not summary.stderr_truncated and summary.exit_code == 0


# ---------------------------------------------------------------------------------------------------
# What the job sees
# ---------------------------------------------------------------------------------------------------


async def test_env_workdir_and_the_job_spec_are_seen_inside(docker_engine, executor, tmp_path):
    job = docker_job(
        docker_engine,
        "sh",
        "-c",
        'echo "$GREETING"; echo "[$EMPTY]"; pwd; echo "$BACALHAU_JOB_SPEC"',
        env=("GREETING=hello there", "EMPTY="),
        workdir="/tmp/work",
    )
    result = await executor.run(run_context(job, executor.node_id, tmp_path))
    greeting, empty, cwd, spec = (tmp_path / "stdout").read_text().splitlines()
    assert (greeting, empty, cwd) == ("hello there", "[]", "/tmp/work")
    spec = json.loads(spec)
    assert spec["Engine"] == "Docker"
    assert spec["Docker"]["Image"] == docker_engine
    assert spec["Docker"]["EnvironmentVariables"] == ["GREETING=hello there", "EMPTY="]
    assert result.exit_code == 0


async def test_the_entrypoint_replaces_the_images_and_an_empty_one_runs_its_default(
    docker_engine, executor, tmp_path
):
    # The test image: ENTRYPOINT ["sh", "-c"], CMD ["echo image default"].
    default = await executor.run(run_context(docker_job(docker_engine), executor.node_id, tmp_path / "a"))
    assert default.stdout == b"image default\n"
    mine = docker_job(docker_engine, "echo", "mine")
    replaced = await executor.run(run_context(mine, executor.node_id, tmp_path / "b"))
    assert replaced.stdout == b"mine\n"  # not `sh -c echo mine`, and the image's CMD is not appended


async def test_limits_are_the_jobs_resources_and_only_loopback_exists(docker_engine, executor, tmp_path):
    job = docker_job(docker_engine, "sh", "-c", SHOW_LIMITS, cpu="500m", memory="64Mi")
    result = await executor.run(run_context(job, executor.node_id, tmp_path))
    assert result.exit_code == 0, result.stderr
    memory, cpu, pids, *networks = (tmp_path / "stdout").read_text().splitlines()
    assert int(memory) == 64 * 1024**2
    quota, period = cpu.split()
    assert int(quota) / int(period) == 0.5
    assert int(pids) == executor.pids_limit
    assert networks == ["lo"]


async def test_the_default_limits_are_what_the_node_reserves(docker_engine, executor, tmp_path):
    job = docker_job(docker_engine, "sh", "-c", SHOW_LIMITS)
    await executor.run(run_context(job, executor.node_id, tmp_path))
    memory, cpu, *_ = (tmp_path / "stdout").read_text().splitlines()
    quota, period = cpu.split()
    assert int(memory) == 100 * 1024**2  # v0.3's default job usage: 100 MiB, 100m CPU
    assert int(quota) / int(period) == 0.1


async def test_a_job_past_its_memory_limit_is_killed_and_the_result_says_why(
    docker_engine, executor, tmp_path
):
    job = docker_job(docker_engine, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1", memory="16Mi")
    result = await executor.run(run_context(job, executor.node_id, tmp_path))
    assert result.exit_code == 137  # a result: the job's own doing, not the executor's
    assert "out of memory" in result.note


async def test_inputs_are_read_only_and_outputs_are_collected(docker_engine, executor, tmp_path):
    inputs, code = tmp_path / "inputs", tmp_path / "code"
    inputs.mkdir()
    code.mkdir()
    (inputs / "data.txt").write_text("original\n")
    (code / "main.sh").write_text("echo from the context\n")
    result_dir = tmp_path / "result"
    outputs = prepare_outputs(result_dir, [pb.StorageSpec(name="outputs", path="/outputs")])
    script = (
        "sh /code/main.sh; cat /inputs/data.txt > /outputs/copy.txt; echo made > /outputs/new.txt; "
        "echo changed > /inputs/data.txt"
    )
    context = run_context(
        docker_job(docker_engine, "sh", "-c", script),
        executor.node_id,
        result_dir,
        contexts=(Mount(code, "/code"),),
        inputs=(Mount(inputs, "/inputs"),),
        outputs=outputs,
    )
    result = await executor.run(context)
    assert result.exit_code != 0  # the write to the input failed, so did the job's last command
    assert b"Read-only file system" in result.stderr
    assert result.stdout == b"from the context\n"
    assert (inputs / "data.txt").read_text() == "original\n"
    assert (result_dir / "outputs" / "copy.txt").read_text() == "original\n"
    assert (result_dir / "outputs" / "new.txt").read_text() == "made\n"


# ---------------------------------------------------------------------------------------------------
# Timeouts and cancellation
# ---------------------------------------------------------------------------------------------------


async def test_a_run_past_its_timeout_is_killed_and_says_so(docker_engine, executor, docker, tmp_path):
    job = docker_job(docker_engine, "sh", "-c", "echo started; sleep 30")
    start = time.monotonic()
    with pytest.raises(
        ExecutorError, match=r"^execution timed out after 1s: container killed \(exit code 137\)$"
    ):
        await executor.run(run_context(job, executor.node_id, tmp_path, timeout=1))
    assert time.monotonic() - start < 10
    assert (tmp_path / "stdout").read_bytes() == b"started\n"
    assert (tmp_path / "exitCode").read_text() == "137"
    assert await containers_of(docker, executor.node_id) == []


async def test_only_the_run_past_its_deadline_is_stopped(docker_engine, executor, tmp_path):
    ended: dict[str, float] = {}

    async def run(name: str, script: str, timeout: float):
        job = docker_job(docker_engine, "sh", "-c", script)
        try:
            return await executor.run(run_context(job, executor.node_id, tmp_path / name, timeout=timeout))
        finally:
            ended[name] = time.monotonic()

    long, short = await asyncio.gather(
        run("long", "sleep 30", timeout=1),
        run("short", "sleep 3; echo done", timeout=20),
        return_exceptions=True,
    )
    assert isinstance(long, ExecutorError) and "timed out after 1s" in str(long)
    assert not isinstance(short, BaseException), short
    assert (short.stdout, short.exit_code) == (b"done\n", 0)
    assert ended["long"] < ended["short"]


async def test_cancel_stops_the_running_container_and_removes_it(docker_engine, executor, docker, tmp_path):
    context = run_context(docker_job(docker_engine, "sleep", "30"), executor.node_id, tmp_path)
    run = asyncio.create_task(executor.run(context))
    running = await wait_until_running(docker, executor.node_id)
    assert running["Labels"][LABEL_EXECUTION_ID] == context.execution.id
    start = time.monotonic()
    await executor.cancel(context.execution.id)
    with pytest.raises(ExecutorError, match="execution cancelled: container killed"):
        await run
    assert time.monotonic() - start < 5
    assert await containers_of(docker, executor.node_id) == []


async def test_a_cancelled_run_task_still_removes_its_container(docker_engine, executor, docker, tmp_path):
    context = run_context(docker_job(docker_engine, "sleep", "30"), executor.node_id, tmp_path)
    run = asyncio.create_task(executor.run(context))
    await wait_until_running(docker, executor.node_id)
    start = time.monotonic()
    run.cancel()  # what the node does, before calling executor.cancel
    with pytest.raises(asyncio.CancelledError):
        await run
    await executor.cancel(context.execution.id)  # nothing left to stop
    end = time.monotonic() + 10
    while await containers_of(docker, executor.node_id) and time.monotonic() < end:
        await asyncio.sleep(0.05)  # the removal was shielded from the cancellation: it goes on
    assert await containers_of(docker, executor.node_id) == []
    assert time.monotonic() - start < 5


# ---------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------


async def test_a_missing_image_that_cannot_be_pulled_is_an_error_naming_it(executor, docker, tmp_path):
    image = "bacalhau-grpc/no-such-image:missing"
    with pytest.raises(
        ExecutorError, match=r"could not pull image bacalhau-grpc/no-such-image:missing .*: \S"
    ):
        await executor.run(run_context(docker_job(image, "true"), executor.node_id, tmp_path))
    assert await containers_of(docker, executor.node_id) == []


@pytest.mark.parametrize("program", ["no-such-program", "/no/such/program"])
async def test_an_entrypoint_that_does_not_exist_is_a_clear_error(
    docker_engine, executor, docker, tmp_path, program
):
    job = docker_job(docker_engine, program, "arg")
    with pytest.raises(ExecutorError, match=f"^Executable file not found: .*{program}"):
        await executor.run(run_context(job, executor.node_id, tmp_path))
    assert await containers_of(docker, executor.node_id) == []


@pytest.mark.parametrize(
    ("workdir", "env", "message"),
    [
        ("relative/dir", (), "working directory 'relative/dir' is not an absolute path"),
        (
            "",
            ("GOOD=1", "=value"),
            r"environment variable '=value' \(Spec.Docker.EnvironmentVariables\[1\]\)",
        ),
        ("", ("NO_EQUALS",), "environment variable 'NO_EQUALS' .* is not NAME=value"),
    ],
)
async def test_bad_docker_settings_are_clear_errors(docker_engine, executor, tmp_path, workdir, env, message):
    job = docker_job(docker_engine, "true", workdir=workdir, env=env)
    with pytest.raises(ExecutorError, match=message):
        await executor.run(run_context(job, executor.node_id, tmp_path))


# ---------------------------------------------------------------------------------------------------
# Containers: names, labels, clean-up
# ---------------------------------------------------------------------------------------------------


async def test_the_container_is_named_and_labelled_after_the_execution(
    docker_engine, executor, docker, tmp_path
):
    context = run_context(docker_job(docker_engine, "sleep", "30"), executor.node_id, tmp_path)
    run = asyncio.create_task(executor.run(context))
    running = await wait_until_running(docker, executor.node_id)
    await executor.cancel(context.execution.id)
    with pytest.raises(ExecutorError):
        await run
    assert running["Names"] == [f"/bacalhau-grpc-{executor.node_id}-{context.execution.id}"]
    assert running["Labels"][LABEL_JOB_ID] == context.job.id
    assert running["Labels"][LABEL_SHARD_INDEX] == "0"
    assert await containers_of(docker, executor.node_id) == []


async def test_start_removes_the_containers_a_crashed_process_of_the_node_left(docker_engine, docker):
    node_id, other_node = f"test-{uuid.uuid4().hex[:10]}", f"test-{uuid.uuid4().hex[:10]}"

    async def leftover(node: str, start: bool) -> None:
        config = {"Image": docker_engine, "Cmd": ["sleep 30"], "Labels": {LABEL_NODE_ID: node}}
        config["HostConfig"] = {"NetworkMode": "none"}
        container = await docker.containers.create(config, name=container_name(node, uuid.uuid4().hex))
        if start:
            await container.start()

    await leftover(node_id, start=True)
    await leftover(node_id, start=False)
    await leftover(other_node, start=False)
    assert len(await containers_of(docker, node_id)) == 2
    executor = DockerExecutor(node_id)
    await executor.start()
    try:
        assert await containers_of(docker, node_id) == []
        assert len(await containers_of(docker, other_node)) == 1  # another node's are not ours
    finally:
        await executor.close()
        other = DockerExecutor(other_node)
        await other.start()  # removes the other node's leftover
        await other.close()
    assert await containers_of(docker, other_node) == []


async def test_without_an_engine_the_executor_is_not_installed(tmp_path, caplog):
    executor = DockerExecutor("node-x", docker_host=f"unix://{tmp_path}/no-engine.sock", connect_timeout=2)
    with caplog.at_level(logging.WARNING):
        await executor.start()
    assert not executor.is_installed()
    assert "Docker executor not installed" in caplog.text and "no-engine.sock" in caplog.text
    await executor.close()


def test_gpus_are_requested_from_the_engine_when_the_job_asks_for_them():
    # No GPU here: this checks the request the engine gets (a real GPU run needs nvidia's runtime).
    job = docker_job("image", "true", gpu="2")
    context = RunContext(new_execution(job, 0, job_usage(job.spec)), "node-x")
    config = container_config(context, job_usage(job.spec), pids_limit=64)
    assert config["HostConfig"]["DeviceRequests"] == [{"Driver": "", "Count": 2, "Capabilities": [["gpu"]]}]
    assert "DeviceRequests" not in container_config(context, job_usage(make_job().spec), 64)["HostConfig"]


# ---------------------------------------------------------------------------------------------------
# The sandbox
# ---------------------------------------------------------------------------------------------------

# Reads the job's capabilities and no-new-privileges flag, its open-files limits, memory + swap limit
# (cgroup v1, else v2's swap alone), and its user.
SHOW_SANDBOX = """
grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status
ulimit -n; ulimit -Hn
if [ -d /sys/fs/cgroup/memory ]; then
  cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || echo unknown
else
  cat /sys/fs/cgroup/memory.swap.max
fi
id -u
"""
# Capability numbers (linux/capability.h).
CAP = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6, "SETUID": 7}
CAP_NET_RAW, CAP_SYS_CHROOT, CAP_SYS_ADMIN, CAP_MKNOD = 13, 18, 21, 27


async def test_jobs_cannot_gain_privileges_and_keep_only_the_listed_capabilities(
    docker_engine, executor, tmp_path
):
    job = docker_job(docker_engine, "sh", "-c", SHOW_SANDBOX, memory="64Mi")
    result = await executor.run(run_context(job, executor.node_id, tmp_path))
    assert result.exit_code == 0, result.stderr
    effective, bounding, no_new_privs, soft, hard, memory_swap, uid = result.stdout.decode().splitlines()
    kept = sum(1 << bit for bit in CAP.values())
    assert int(effective.split()[1], 16) == kept  # root in the container, with those alone
    assert int(bounding.split()[1], 16) == kept  # nothing more can be gained, not even by exec
    for bit in (CAP_NET_RAW, CAP_SYS_CHROOT, CAP_SYS_ADMIN, CAP_MKNOD):
        assert not int(effective.split()[1], 16) & (1 << bit)
    assert no_new_privs.split() == ["NoNewPrivs:", "1"]
    assert (int(soft), int(hard)) == NOFILE_LIMIT
    # Memory + swap is the memory limit (v1), or no swap at all (v2); "unknown": no swap accounting.
    assert memory_swap in (str(64 * 1024**2), "0", "unknown")
    assert uid == "0"  # the image's user


async def test_what_common_images_do_as_root_still_works(docker_engine, executor, tmp_path):
    result_dir = tmp_path / "result"
    outputs = prepare_outputs(result_dir, [pb.StorageSpec(name="outputs", path="/outputs")])
    # An entrypoint preparing a folder for an app user (CHOWN, FOWNER) and handing over to it (SETUID,
    # SETGID); root then writes into the user's private folder (DAC_OVERRIDE) and copies with the owner
    # kept (CHOWN, FOWNER).
    script = (
        "set -e; echo app:x:1000:1000::/tmp:/bin/sh >> /etc/passwd; mkdir /data; chown 1000:1000 /data; "
        "chmod 2700 /data; su app -s /bin/sh -c 'id -u > /data/who'; echo root > /data/root; "
        "cp -p /data/who /outputs/who; echo ok"
    )
    context = run_context(
        docker_job(docker_engine, "sh", "-c", script), executor.node_id, result_dir, outputs=outputs
    )
    result = await executor.run(context)
    assert (result.exit_code, result.stdout) == (0, b"ok\n"), result.stderr
    assert (result_dir / "outputs" / "who").read_text() == "1000\n"


async def test_outputs_past_the_jobs_disk_limit_stop_the_container_and_fail_the_run(
    docker_engine, executor, docker, tmp_path
):
    result_dir = tmp_path / "result"
    outputs = prepare_outputs(result_dir, [pb.StorageSpec(name="outputs", path="/outputs")])
    # It would write forever: only the watchdog stops it (the timeout is far away).
    script = "i=0; while true; do head -c 262144 /dev/zero > /outputs/part$i; i=$((i+1)); done"
    job = docker_job(docker_engine, "sh", "-c", script, disk="1Mi")
    start = time.monotonic()
    with pytest.raises(
        ExecutorError,
        match=r"^outputs exceeded the disk limit of 1048576 bytes \(1 MiB\) \(Resources\.Disk\): "
        r"\d+ bytes .* written, container stopped \(exit code 137\)$",
    ):
        await executor.run(run_context(job, executor.node_id, result_dir, timeout=60, outputs=outputs))
    assert time.monotonic() - start < 20
    assert (result_dir / "exitCode").read_text() == "137"
    assert await containers_of(docker, executor.node_id) == []


async def test_the_nodes_disk_limit_applies_to_jobs_without_one_also_after_the_exit(
    docker_engine, docker, tmp_path
):
    async with started(docker, disk_limit=1024**2) as executor:
        result_dir = tmp_path / "over"
        outputs = prepare_outputs(result_dir, [pb.StorageSpec(name="outputs", path="/outputs")])
        # Over the limit at once, then gone: the measure after the exit sees it whatever the watchdog did.
        job = docker_job(docker_engine, "sh", "-c", "head -c 1048577 /dev/zero > /outputs/big")
        with pytest.raises(
            ExecutorError,
            match=r"^outputs exceeded the disk limit of 1048576 bytes \(1 MiB\) "
            r"\(the node's --limit-job-disk\): 1048577 bytes",
        ):
            await executor.run(run_context(job, executor.node_id, result_dir, outputs=outputs))

        # Exactly the limit passes; a link to a big file counts as the link, not the file.
        result_dir = tmp_path / "within"
        outputs = prepare_outputs(result_dir, [pb.StorageSpec(name="outputs", path="/outputs")])
        script = "head -c 1048000 /dev/zero > /outputs/data; ln -s /bin/busybox /outputs/link; echo done"
        context = run_context(
            docker_job(docker_engine, "sh", "-c", script), executor.node_id, result_dir, outputs=outputs
        )
        result = await executor.run(context)
        assert (result.exit_code, result.stdout) == (0, b"done\n"), result.stderr


async def test_the_nodes_docker_user_runs_the_job(docker_engine, docker, tmp_path):
    async with started(docker, user="1234:2345") as executor:
        result_dir = tmp_path / "result"
        outputs = prepare_outputs(result_dir, [pb.StorageSpec(name="outputs", path="/outputs")])
        script = "id -u; id -g; grep CapEff /proc/self/status; echo written > /outputs/file"
        context = run_context(
            docker_job(docker_engine, "sh", "-c", script), executor.node_id, result_dir, outputs=outputs
        )
        result = await executor.run(context)
    assert result.exit_code == 0, result.stderr
    uid, gid, caps = result.stdout.decode().splitlines()
    assert (uid, gid) == ("1234", "2345")
    assert int(caps.split()[1], 16) == 0
    assert (result_dir / "outputs" / "file").read_text() == "written\n"
    assert (result_dir / "outputs" / "file").stat().st_uid == 1234


@pytest.mark.parametrize("user", ["root", "1000:", ":1000", "1000:1000:1", " 1000"])
def test_a_docker_user_that_is_not_uid_or_uid_gid_is_refused_naming_the_setting(user):
    with pytest.raises(InvalidArgumentError) as caught:
        DockerExecutor("node-x", user=user)
    assert caught.value.field == "docker_user"
