"""WASM executor benchmarks: trivial jobs straight through `WasmExecutor.run` (no network, no node).

Prints, for tests/wasm/hello.wasm with a warm module cache: jobs/s and the p50/p99 time per job with 1
job in flight (sequential) and with several in flight; then the Python engine's hello world: the
interpreter's first compile (cold), its load from the on-disk cache in a fresh runtime, and a job's
time once loaded. Every job writes its result folder (stdout, stderr, exitCode), so the figures
include the filesystem: `--dir /dev/shm` shows the executor without the disk.

Figures measured on the development machine, for comparison: a floor of 1.5 ms per trivial WASM job
(`FLOOR_MS`, the figure the sequential rate is compared with); about 10 s of CPU for the Python engine's
first compile of the CPython interpreter; and over a second to compile a module of 40,000 small exported
functions, twenty times the 0.05 s timeout that tests/integration/compute/test_wasm_executor.py gives
such a module to show that compiling counts against a job's timeout.

Run with `make bench` (or `python bench/bench_wasm.py --jobs 2000`).
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.capacity import job_usage
from bacalhau_grpc.compute.domain.executions import new_execution
from bacalhau_grpc.compute.domain.runs import Mount, RunContext
from bacalhau_grpc.compute.executors.python_wasm import PythonWasmExecutor
from bacalhau_grpc.compute.executors.wasm import WasmExecutor
from bacalhau_grpc.compute.executors.wasm_runtime import WasmRuntime

ROOT = Path(__file__).resolve().parents[1]
HELLO = ROOT / "tests" / "wasm" / "hello.wasm"
# The WASM floor, 1.5 ms per job, as measured on the development machine (see the module docstring).
FLOOR_MS = 1.5


def hello_context(result_dir: Path, index: int) -> RunContext:
    job = pb.Job(id=f"bench-{index}", api_version="V1beta1")
    job.spec.engine = pb.Engine.ENGINE_WASM
    job.spec.wasm.parameters.append(str(index))
    result_dir.mkdir(parents=True)
    return RunContext(
        new_execution(job, 0, job_usage(job.spec)),
        "bench-node",
        contexts=(Mount(HELLO, "/job"),),
        result_dir=result_dir,
        timeout=60,
    )


def python_context(result_dir: Path) -> RunContext:
    job = pb.Job(id="bench-python", api_version="V1beta1")
    job.spec.engine = pb.Engine.ENGINE_PYTHON_WASM
    job.spec.language.command = "print('hello')"
    result_dir.mkdir(parents=True)
    return RunContext(
        new_execution(job, 0, job_usage(job.spec)), "bench-node", result_dir=result_dir, timeout=600
    )


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


async def wasm_scenario(executor: WasmExecutor, work: Path, jobs: int, in_flight: int) -> dict:
    contexts = [hello_context(work / f"{in_flight}-{i}", i) for i in range(jobs)]
    queue = iter(contexts)
    latencies: list[float] = []

    async def worker() -> None:
        for context in queue:
            started = time.perf_counter()
            result = await executor.run(context)
            latencies.append(time.perf_counter() - started)
            assert result.exit_code == 0 and result.stdout.startswith(b"hello from wasm")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "name": "sequential" if in_flight == 1 else f"{in_flight} in flight",
        "rate": jobs / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
    }


async def python_figures(work: Path, runs: int) -> dict:
    cache = work / "cache"
    cold_runtime = WasmRuntime(cache_dir=cache)
    started = time.perf_counter()
    await PythonWasmExecutor(cold_runtime).prepare()
    cold = time.perf_counter() - started
    await cold_runtime.close()

    runtime = WasmRuntime(cache_dir=cache)
    python = PythonWasmExecutor(runtime)
    started = time.perf_counter()
    await python.prepare()
    cached = time.perf_counter() - started
    latencies = []
    for i in range(runs):
        context = python_context(work / f"python-{i}")
        started = time.perf_counter()
        result = await python.run(context)
        latencies.append(time.perf_counter() - started)
        assert result.stdout == b"hello\n", result.stderr
    await python.close()
    latencies.sort()
    return {
        "cold": cold,
        "cached": cached * 1000,
        "p50": statistics.median(latencies) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
        "note": result.note,
    }


async def main(jobs: int, in_flight: list[int], python_runs: int, folder: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-wasm-", dir=folder) as tmp:
        work = Path(tmp)
        executor = WasmExecutor(WasmRuntime())
        await executor.runtime.load(HELLO)  # warm module cache
        await wasm_scenario(executor, work / "warm-up", 50, 1)
        print(
            f"WASM executor: {HELLO.name} ({HELLO.stat().st_size // 1024} KiB), warm module cache, "
            f"{jobs} jobs each, result folders under {tmp}\n"
        )
        results = [await wasm_scenario(executor, work, jobs, n) for n in in_flight]
        await executor.close()
        print(f"{'scenario':<16}" + "".join(f"{h:>10}" for h in ("jobs/s", "p50 ms", "p99 ms")))
        for r in results:
            print(f"{r['name']:<16}{r['rate']:>10.1f}{r['p50']:>10.2f}{r['p99']:>10.2f}")
        sequential = results[0]
        print(
            f"\nsequential: {1000 / sequential['rate']:.2f} ms per job, "
            f"{FLOOR_MS / (1000 / sequential['rate']):.2f}x the WASM floor ({FLOOR_MS} ms per job)"
        )
        python = await python_figures(work / "python", python_runs)
        print(
            f"\nPython hello (print('hello'), {python['note']}):\n"
            f"  interpreter compile, cold:           {python['cold']:.1f} s\n"
            f"  interpreter load from the disk cache: {python['cached']:.1f} ms\n"
            f"  job once loaded, p50 / p99:           {python['p50']:.1f} / {python['p99']:.1f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--python-runs", type=int, default=20)
    parser.add_argument("--dir", help="where the result folders go (default: the system's temp folder)")
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.in_flight, args.python_runs, args.dir))
