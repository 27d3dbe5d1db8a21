"""Docker job overhead: DockerExecutor.run of a trivial job against raw runs of the same container.

Three ways to run `true` in the tests' busybox image (scripts/test-images.sh) with no network, on the
same engine, interleaved run by run so they see the same machine:

* `docker run`: the CLI, `docker run --rm --network none IMAGE true` (what a user would time);
* Engine API: the bare create, start, wait, remove through aiodocker (the least any client does),
  once with a minimal config and once with the executor's own container config (log driver none,
  limits, labels), which leaves only the executor's own work in the difference;
* executor: `DockerExecutor.run` of a job whose entrypoint is `true` (validation, image check, limits,
  labels, attach, stream files, exitCode, removal).

Prints p50 and p90 per way and the executor's overhead over each raw run (goal: <= 50 ms at p50).
Needs an engine (`make docker-engine`); builds the image when it is missing.
Run with `python bench/bench_docker.py --runs 30`.
"""

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiodocker

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.capacity import job_usage
from bacalhau_grpc.compute.domain.executions import new_execution
from bacalhau_grpc.compute.domain.runs import RunContext
from bacalhau_grpc.compute.executors.docker import DEFAULT_PIDS_LIMIT, DockerExecutor, container_config

IMAGE = "bacalhau-grpc/busybox:test"
REPO = Path(__file__).resolve().parent.parent
GOAL_MS = 50.0
WARMUP = 3
NO_NETWORK = {"HostConfig": {"NetworkMode": "none"}}
CLI = "docker run (CLI)"
API = "Engine API create/start/wait/remove"
API_SAME_CONFIG = "  the same, with the executor's config"
OURS = "DockerExecutor.run"


def executor_config(node_id: str) -> dict[str, Any]:
    """The container config the executor uses for the job (log driver none, limits, labels, ...)."""
    job = true_job()
    context = RunContext(new_execution(job, 0, job_usage(job.spec)), node_id)
    return container_config(context, job_usage(job.spec), DEFAULT_PIDS_LIMIT)


def true_job() -> pb.Job:
    job = pb.Job(id=str(uuid.uuid4()), api_version="V1beta1")
    job.spec.engine = pb.Engine.ENGINE_DOCKER
    job.spec.docker.image = IMAGE
    job.spec.docker.entrypoint.append("true")
    return job


async def cli_run() -> None:
    process = await asyncio.create_subprocess_exec(
        "docker", "run", "--rm", "--network", "none", IMAGE, "true", stdout=subprocess.DEVNULL
    )
    if await process.wait() != 0:
        raise RuntimeError(f"docker run failed ({process.returncode})")


def api_run(docker: aiodocker.Docker, config: dict[str, Any]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        container = await docker.containers.create(config)
        try:
            await container.start()
            status = await container.wait()
            if status["StatusCode"] != 0:
                raise RuntimeError(f"the container exited with {status['StatusCode']}")
        finally:
            await container.delete(force=True)

    return run


def executor_run(executor: DockerExecutor, results: Path) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        job = true_job()
        result_dir = results / job.id
        result_dir.mkdir()
        context = RunContext(
            new_execution(job, 0, job_usage(job.spec)), executor.node_id, result_dir=result_dir
        )
        result = await executor.run(context)
        if result.exit_code != 0:
            raise RuntimeError(f"the job exited with {result.exit_code}")

    return run


async def timed(run: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await run()
    return (time.perf_counter() - start) * 1000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def ensure_image(docker: aiodocker.Docker) -> None:
    try:
        await docker.images.inspect(IMAGE)
    except aiodocker.DockerError:
        subprocess.run([str(REPO / "scripts" / "test-images.sh")], check=True)


async def main(runs: int) -> None:
    docker = aiodocker.Docker()
    executor = DockerExecutor(f"bench-{uuid.uuid4().hex[:8]}")
    try:
        version = await docker.version()
        await ensure_image(docker)
        await executor.start()
        with tempfile.TemporaryDirectory(prefix="bench-docker-") as results:
            ways = {
                CLI: cli_run,
                API: api_run(docker, {"Image": IMAGE, "Entrypoint": ["true"], **NO_NETWORK}),
                API_SAME_CONFIG: api_run(docker, executor_config(executor.node_id)),
                OURS: executor_run(executor, Path(results)),
            }
            for run in ways.values():
                for _ in range(WARMUP):
                    await run()
            times: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(runs):  # interleaved, so every way sees the same machine
                for name, run in ways.items():
                    times[name].append(await timed(run))
    finally:
        await executor.close()
        await docker.close()

    print(
        f"Docker job overhead: `true` in {IMAGE}, --network none, engine {version['Version']} "
        f"(API {version['ApiVersion']}); {runs} runs per way, interleaved, after {WARMUP} warm-up runs\n"
    )
    print(f"{'way':<40}{'p50 ms':>10}{'p90 ms':>10}{'min ms':>10}{'mean ms':>10}")
    for name, values in times.items():
        print(
            f"{name:<40}{percentile(values, 0.5):>10.1f}{percentile(values, 0.9):>10.1f}"
            f"{min(values):>10.1f}{statistics.fmean(values):>10.1f}"
        )
    ours = percentile(times[OURS], 0.5)
    print()
    for raw in (CLI, API, API_SAME_CONFIG):
        base = percentile(times[raw], 0.5)
        verdict = "within" if ours - base <= GOAL_MS else "OVER"
        print(
            f"executor vs {raw.strip()}: {ours - base:+.1f} ms at p50 ({ours / base:.2f}x); "
            f"{verdict} the goal of <= {GOAL_MS:g} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    asyncio.run(main(parser.parse_args().runs))
