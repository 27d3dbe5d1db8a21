"""The WASM executor on real wasmtime, with the modules built from tests/wasm/*.c (`make wasm-modules`).

Each test runs real guests and checks what a user sees: the stream files, exit code and output folders
in the result folder, the summary, and the errors. One runtime is shared by the whole module.
"""

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wasmtime

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.capacity import job_usage
from bacalhau_grpc.compute.domain.executions import new_execution
from bacalhau_grpc.compute.domain.ports import run_with_timeout
from bacalhau_grpc.compute.domain.runs import SUMMARY_BYTES, ExecutorError, Mount, RunContext, prepare_outputs
from bacalhau_grpc.compute.executors.wasm import WasmExecutor
from bacalhau_grpc.compute.executors.wasm_clocks import VirtualWorld
from bacalhau_grpc.compute.executors.wasm_interrupts import GuestControl as _Control
from bacalhau_grpc.compute.executors.wasm_modules import DEFAULT_MAX_MODULE_BYTES, declared_module_name
from bacalhau_grpc.compute.executors.wasm_runtime import WasmRuntime
from tests.unit.compute.support import make_job
from tests.wasm.hostile import TABLE_GROW, THREE_MEMORIES

WASM = Path(__file__).resolve().parents[2] / "wasm"


@pytest.fixture(scope="module")
def runtime() -> Iterator[WasmRuntime]:
    runtime = WasmRuntime()
    runtime.retain()  # the module's: executors made by tests never close it
    yield runtime
    asyncio.run(runtime.close())


@pytest.fixture
def executor(runtime: WasmRuntime) -> WasmExecutor:
    return WasmExecutor(runtime)


def wasm_job(
    *params: str,
    entry_point: str = "",
    env: dict[str, str] | None = None,
    memory: str = "",
    outputs: tuple[tuple[str, str], ...] = (),
) -> pb.Job:
    job = make_job(engine=pb.Engine.ENGINE_WASM, memory=memory)
    job.spec.wasm.parameters.extend(params)
    job.spec.wasm.entry_point = entry_point
    job.spec.wasm.environment_variables.update(env or {})
    for name, path in outputs:
        job.spec.outputs.add(name=name, path=path)
    return job


def run_context(
    job: pb.Job,
    result_dir: Path,
    module: Path | None,
    *,
    timeout: float = 30.0,
    inputs: tuple[Mount, ...] = (),
    import_modules: tuple[Path, ...] = (),
) -> RunContext:
    outputs = prepare_outputs(result_dir, job.spec.outputs)
    return RunContext(
        new_execution(job, 0, job_usage(job.spec)),
        "node-1",
        contexts=(Mount(module, "/job"),) if module else (),
        inputs=inputs,
        import_modules=tuple(Mount(path, f"/imports/{path.name}") for path in import_modules),
        outputs=outputs,
        result_dir=result_dir,
        timeout=timeout,
    )


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition did not hold in time")
        await asyncio.sleep(0.01)


def spinning(context: RunContext) -> Callable[[], bool]:
    """True once the spin module has said it started (it then loops forever)."""
    stdout = context.result_dir / "stdout"  # type: ignore[operator]
    return lambda: stdout.exists() and b"spinning" in stdout.read_bytes()


async def test_hello_sees_its_parameters_and_sorted_environment(executor: WasmExecutor, tmp_path: Path):
    job = wasm_job("first", "second arg", env={"ZED": "last", "ALPHA": "1"})
    result = await executor.run(run_context(job, tmp_path, WASM / "hello.wasm"))
    expected = (
        "hello from wasm\nargv[0]=hello.wasm\nargv[1]=first\nargv[2]=second arg\nenv ALPHA=1\nenv ZED=last\n"
    )
    assert result.exit_code == 0 and result.stdout.decode() == expected
    assert (tmp_path / "stdout").read_text() == expected
    assert (tmp_path / "stderr").read_bytes() == b"" and (tmp_path / "exitCode").read_text() == "0"
    summary = result.summary()
    assert summary.stdout == expected and summary.exit_code == 0 and not summary.stdout_truncated
    assert result.result_dir == tmp_path and result.note == "ran on wasmtime 50.0.1"


@pytest.mark.parametrize("code", [0, 1, 3, 255])
async def test_the_exit_code_is_a_result(executor: WasmExecutor, tmp_path: Path, code: int):
    result = await executor.run(run_context(wasm_job(str(code)), tmp_path, WASM / "exit_code.wasm"))
    assert result.exit_code == code
    assert (tmp_path / "exitCode").read_text() == str(code)
    assert result.stdout == f"exiting with {code}\n".encode()


async def test_the_module_may_be_the_one_file_of_a_folder(executor: WasmExecutor, tmp_path: Path):
    folder = tmp_path / "context"
    folder.mkdir()
    shutil.copy(WASM / "hello.wasm", folder / "program.wasm")
    result = await executor.run(run_context(wasm_job(), tmp_path / "results", folder))
    assert result.stdout.startswith(b"hello from wasm\nargv[0]=program.wasm\n")


async def test_a_job_without_a_module_or_with_a_crowded_folder_fails(executor: WasmExecutor, tmp_path: Path):
    with pytest.raises(ExecutorError, match="WASM job expects one context containing code to run"):
        await executor.run(run_context(wasm_job(), tmp_path / "r1", None))
    folder = tmp_path / "context"
    folder.mkdir()
    shutil.copy(WASM / "hello.wasm", folder / "a.wasm")
    shutil.copy(WASM / "exit_code.wasm", folder / "b.wasm")
    with pytest.raises(ExecutorError, match="should be 1 file in /job but there are 2"):
        await executor.run(run_context(wasm_job(), tmp_path / "r2", folder))


async def test_a_file_that_is_not_webassembly_is_refused(executor: WasmExecutor, tmp_path: Path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(ExecutorError, match=r"script\.sh is not a WebAssembly module: it does not start"):
        await executor.run(run_context(wasm_job(), tmp_path / "results", script))
    broken = tmp_path / "broken.wasm"
    broken.write_bytes((WASM / "hello.wasm").read_bytes()[:100])
    with pytest.raises(ExecutorError, match=r"broken\.wasm is not a WebAssembly module: .*end-of-file"):
        await executor.run(run_context(wasm_job(), tmp_path / "results2", broken))


async def test_another_entry_point_runs(executor: WasmExecutor, tmp_path: Path):
    job = wasm_job(entry_point="greet")
    result = await executor.run(run_context(job, tmp_path, WASM / "entry_points.wasm"))
    assert (result.exit_code, result.stdout) == (0, b"greetings from greet\n")


@pytest.mark.parametrize(
    ("entry_point", "message"),
    [
        ("missing", "function 'missing' required but no WASM export with that name was found"),
        ("add", "function 'add' should take 0 parameters, it takes 2"),
        ("answer", "function 'answer' should return 0 results, it returns 1"),
        ("_start", "function '_start' required but no WASM export with that name was found"),
    ],
)
async def test_a_bad_entry_point_is_refused(executor: WasmExecutor, tmp_path: Path, entry_point, message):
    job = wasm_job(entry_point=entry_point)
    with pytest.raises(ExecutorError) as error:
        await executor.run(run_context(job, tmp_path, WASM / "entry_points.wasm"))
    assert str(error.value) == message


async def test_an_unresolved_import_is_named(executor: WasmExecutor, tmp_path: Path):
    with pytest.raises(ExecutorError) as error:
        await executor.run(run_context(wasm_job(), tmp_path, WASM / "unresolved_import.wasm"))
    assert str(error.value) == (
        "no export found for 'env::missing_function' required by module unresolved_import.wasm"
    )


async def test_import_modules_provide_functions_by_module_name(executor: WasmExecutor, tmp_path: Path):
    context = run_context(
        wasm_job(), tmp_path / "r1", WASM / "uses_math.wasm", import_modules=(WASM / "math.wasm",)
    )
    assert (await executor.run(context)).stdout == b"2 + 3 = 5\n"
    # The name comes from the module's name section, whatever its file is called.
    renamed = tmp_path / "QmSomeCid"
    shutil.copy(WASM / "math.wasm", renamed)
    assert declared_module_name(renamed.read_bytes()) == "math"
    context = run_context(wasm_job(), tmp_path / "r2", WASM / "uses_math.wasm", import_modules=(renamed,))
    assert (await executor.run(context)).stdout == b"2 + 3 = 5\n"


async def test_inputs_are_read_only_and_outputs_are_collected(executor: WasmExecutor, tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "words.txt").write_text("compute over data\n")
    inputs = (Mount(data, "/inputs"),)
    job = wasm_job("/inputs/words.txt", "/outputs/shout.txt", outputs=(("outputs", "/outputs"),))
    result = await executor.run(run_context(job, tmp_path / "r1", WASM / "files.wasm", inputs=inputs))
    assert result.exit_code == 0
    assert (tmp_path / "r1" / "outputs" / "shout.txt").read_text() == "COMPUTE OVER DATA\n"

    job = wasm_job("/inputs/words.txt", "/inputs/words.txt", outputs=(("outputs", "/outputs"),))
    result = await executor.run(run_context(job, tmp_path / "r2", WASM / "files.wasm", inputs=inputs))
    assert result.exit_code == 1
    assert result.stderr.startswith(b"cannot write /inputs/words.txt: ")
    assert (data / "words.txt").read_text() == "compute over data\n"


async def test_a_single_file_input_appears_at_its_path(executor: WasmExecutor, tmp_path: Path):
    source = tmp_path / "download-1234"
    source.write_text("one file\n")
    inputs = (Mount(source, "/data/input.txt"),)
    job = wasm_job("/data/input.txt", "/outputs/copy.txt", outputs=(("outputs", "/outputs"),))
    result = await executor.run(run_context(job, tmp_path / "r1", WASM / "files.wasm", inputs=inputs))
    assert result.exit_code == 0 and (tmp_path / "r1" / "outputs" / "copy.txt").read_text() == "ONE FILE\n"
    job = wasm_job("/data/input.txt", "/data/other.txt")
    result = await executor.run(run_context(job, tmp_path / "r2", WASM / "files.wasm", inputs=inputs))
    assert result.exit_code == 1 and result.stderr.startswith(b"cannot write /data/other.txt: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["download-1234", "r1", "r2"]


async def test_mounts_that_would_clash_are_refused(executor: WasmExecutor, tmp_path: Path):
    folder, other, file = tmp_path / "folder", tmp_path / "other", tmp_path / "file.txt"
    folder.mkdir()
    other.mkdir()
    file.write_text("x")
    clashes = [
        ((Mount(folder, "/data"), Mount(other, "/data/")), "two mounts at /data"),
        ((Mount(file, "/data/a.txt"), Mount(file, "/data/./a.txt")), "two mounts at /data/a.txt"),
        (
            (Mount(folder, "/data"), Mount(file, "/data/a.txt")),
            "cannot mount single files in /data: a folder is mounted there "
            "(WASI mounts folders only, so a file is shown through a folder of its own)",
        ),
        ((Mount(folder, "data"),), "cannot mount folder at 'data': the path is not absolute"),
        (
            (Mount(tmp_path / "nothing", "/data"),),
            f"{tmp_path / 'nothing'}, to be mounted at /data, does not exist",
        ),
    ]
    for index, (inputs, message) in enumerate(clashes):
        context = run_context(wasm_job(), tmp_path / f"r{index}", WASM / "hello.wasm", inputs=inputs)
        with pytest.raises(ExecutorError) as error:
            await executor.run(context)
        assert str(error.value) == message
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("wasm-files")) == []


async def test_output_beyond_2_kib_is_flagged_and_the_files_are_capped(runtime: WasmRuntime, tmp_path: Path):
    long_argument = "x" * 3000
    result = await WasmExecutor(runtime).run(
        run_context(wasm_job(long_argument), tmp_path / "r1", WASM / "hello.wasm")
    )
    summary = result.summary()
    assert summary.stdout_truncated and len(summary.stdout) == SUMMARY_BYTES and not result.stdout_truncated
    assert (tmp_path / "r1" / "stdout").stat().st_size > 3000

    capped = WasmExecutor(runtime, stream_cap=100)
    result = await capped.run(run_context(wasm_job(long_argument), tmp_path / "r2", WASM / "hello.wasm"))
    assert result.stdout_truncated and (tmp_path / "r2" / "stdout").stat().st_size == 100


async def test_memory_within_the_limit_is_fine_and_beyond_it_fails_clearly(
    executor: WasmExecutor, tmp_path: Path
):
    result = await executor.run(run_context(wasm_job("20"), tmp_path / "r1", WASM / "alloc.wasm"))
    assert result.stdout.startswith(b"allocated 20 MiB")
    job = wasm_job("200", memory="64Mi")
    with pytest.raises(ExecutorError) as error:
        await executor.run(run_context(job, tmp_path / "r2", WASM / "alloc.wasm"))
    assert str(error.value).startswith(
        "the module trapped: wasm trap: wasm `unreachable` instruction executed"
    )
    assert "it ran out of memory" in str(error.value) and "of the job's 64 MiB limit" in str(error.value)
    assert (tmp_path / "r2" / "stderr").read_text().startswith("malloc failed after 6")


async def test_a_timeout_stops_only_the_job_past_its_deadline(executor: WasmExecutor, tmp_path: Path):
    long = run_context(wasm_job(), tmp_path / "long", WASM / "spin.wasm", timeout=60)
    short = run_context(wasm_job(), tmp_path / "short", WASM / "spin.wasm", timeout=0.5)
    long_run = asyncio.create_task(executor.run(long))
    await wait_until(spinning(long))
    started = time.monotonic()
    with pytest.raises(ExecutorError) as error:
        await executor.run(short)
    assert 0.3 < time.monotonic() - started < 2.0
    assert str(error.value) == "execution timed out after 0.5s: the module was interrupted"
    assert (tmp_path / "short" / "exitCode").read_text() == "137"
    assert (tmp_path / "short" / "stdout").read_text() == "spinning\n"
    assert not long_run.done() and executor.runtime.is_running(long.execution.id)
    await executor.cancel(long.execution.id)
    with pytest.raises(ExecutorError, match="execution cancelled: the module was interrupted"):
        await long_run


async def test_cancel_stops_one_spinning_guest_promptly(executor: WasmExecutor, tmp_path: Path):
    first = run_context(wasm_job(), tmp_path / "first", WASM / "spin.wasm")
    second = run_context(wasm_job(), tmp_path / "second", WASM / "spin.wasm")
    first_run = asyncio.create_task(executor.run(first))
    second_run = asyncio.create_task(executor.run(second))
    await wait_until(lambda: spinning(first)() and spinning(second)())
    started = time.monotonic()
    await executor.cancel(first.execution.id)
    with pytest.raises(ExecutorError, match="execution cancelled: the module was interrupted"):
        await first_run
    assert time.monotonic() - started < 1.0
    assert (tmp_path / "first" / "exitCode").read_text() == "137"
    assert not second_run.done() and executor.runtime.is_running(second.execution.id)
    second_run.cancel()  # cancelling the awaiting task stops its guest too
    with pytest.raises(asyncio.CancelledError):
        await second_run
    assert not executor.runtime.is_running(second.execution.id)
    assert (tmp_path / "second" / "exitCode").read_text() == "137"


async def test_the_executors_timeout_error_comes_before_the_backstop(executor: WasmExecutor, tmp_path: Path):
    context = run_context(wasm_job(), tmp_path, WASM / "spin.wasm", timeout=0.3)
    with pytest.raises(ExecutorError, match=r"^execution timed out after 0\.3s: the module was interrupted$"):
        await run_with_timeout(executor, context)


async def test_compiled_modules_are_cached_in_memory_and_on_disk(tmp_path: Path):
    first = WasmRuntime(cache_dir=tmp_path / "cache")
    loaded = await first.load(WASM / "hello.wasm", persist=True)
    assert (await first.load(WASM / "hello.wasm", persist=True)).module is loaded.module
    [cached] = (tmp_path / "cache").glob("*.cwasm")
    assert cached.name.startswith(loaded.digest)
    await first.close()
    second = WasmRuntime(cache_dir=tmp_path / "cache")
    started = time.perf_counter()
    assert (await second.load(WASM / "hello.wasm", persist=True)).digest == loaded.digest
    assert time.perf_counter() - started < 0.5
    await second.close()


async def test_the_runtime_closes_with_its_last_executor(tmp_path: Path):
    runtime = WasmRuntime()
    one, two = WasmExecutor(runtime), WasmExecutor(runtime)
    assert (await one.run(run_context(wasm_job(), tmp_path / "r1", WASM / "hello.wasm"))).exit_code == 0
    await one.close()
    assert (await two.run(run_context(wasm_job(), tmp_path / "r2", WASM / "hello.wasm"))).exit_code == 0
    spin = run_context(wasm_job(), tmp_path / "r3", WASM / "spin.wasm")
    spin_run = asyncio.create_task(two.run(spin))
    await wait_until(spinning(spin))
    await two.close()  # the last user: running guests are stopped, then the threads
    with pytest.raises(ExecutorError, match="cancelled"):
        await spin_run
    with pytest.raises(ExecutorError, match="the WASM runtime is shut down"):
        await two.run(run_context(wasm_job(), tmp_path / "r4", WASM / "hello.wasm"))


def test_the_random_stream_depends_on_the_seed_only_not_on_how_it_is_read():
    whole = VirtualWorld(b"job/0", _Control(0)).random_bytes(100)
    pieces = VirtualWorld(b"job/0", _Control(0))
    assert b"".join(pieces.random_bytes(n) for n in (1, 31, 33, 0, 35)) == whole
    assert VirtualWorld(b"job/1", _Control(0)).random_bytes(100) != whole


# --- the sandbox's limits (the store limiter, module size, compile time) --------------------------------


def wat_module(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.wasm"
    path.write_bytes(wasmtime.wat2wasm(text))
    return path


async def test_three_memories_share_the_jobs_memory_limit(executor: WasmExecutor, tmp_path: Path):
    module = wat_module(tmp_path, "three", THREE_MEMORIES)
    job = wasm_job(memory="64Mi")  # 21.3 MiB a memory: the first three grows fit, the next three do not
    result = await executor.run(run_context(job, tmp_path / "r1", module))
    assert result.exit_code == 3
    big = wat_module(
        tmp_path, "big", '(module (memory 400) (memory 400) (memory 400) (func (export "_start")))'
    )
    with pytest.raises(ExecutorError) as error:
        await executor.run(run_context(job, tmp_path / "r2", big))
    message = str(error.value)
    assert message.startswith("cannot instantiate big.wasm: ") and "memory" in message
    assert message.endswith(
        "(the job's memory limit is 64 MiB in total: 21.3 MiB for each of its 3 memories)"
    )
    # With the default 100 MiB, all six grows (75 MiB in all) fit.
    result = await executor.run(run_context(wasm_job(), tmp_path / "r3", module))
    assert result.exit_code == 6


async def test_a_table_cannot_grow_by_a_million_entries(executor: WasmExecutor, tmp_path: Path):
    module = wat_module(tmp_path, "table", TABLE_GROW)
    result = await executor.run(run_context(wasm_job(), tmp_path, module))
    assert result.exit_code == 1  # the guest saw -1
    assert (tmp_path / "exitCode").read_text() == "1"


async def test_a_module_over_the_size_bound_is_refused_before_it_is_read(
    executor: WasmExecutor, tmp_path: Path
):
    huge = tmp_path / "huge.wasm"
    with huge.open("wb") as f:
        f.write(b"\0asm\1\0\0\0")
        f.truncate(DEFAULT_MAX_MODULE_BYTES + 1)  # sparse
    with pytest.raises(ExecutorError) as error:
        await executor.run(run_context(wasm_job(), tmp_path / "r1", huge))
    assert (
        str(error.value)
        == "the WASM module huge.wasm is 64.0 MiB, over the node's limit of 64 MiB for a module"
    )
    small = WasmRuntime(max_module_bytes=1024)
    with pytest.raises(
        ExecutorError, match=r"^the WASM module hello\.wasm is 0\.0 MiB, over the node's limit of 0\.0009765"
    ):
        await WasmExecutor(small).run(run_context(wasm_job(), tmp_path / "r2", WASM / "hello.wasm"))
    await small.close()


async def test_compiling_counts_against_the_timeout(tmp_path: Path):
    # Forty thousand functions take far longer to compile than the job's 0.05 s (bench/bench_wasm.py's
    # docstring has the figure): the job ends as timed out while the module is still compiling, and its
    # guest never runs.
    body = "(i32.add (local.get 0) (i32.mul (local.get 0) (i32.const 7)))"
    funcs = "".join(f'(func (export "f{i}") (param i32) (result i32) {body * 1})' for i in range(40000))
    module = wat_module(tmp_path, "slow", f'(module {funcs} (func (export "_start")))')
    runtime = WasmRuntime()
    timed_out = r"^execution timed out after 0\.05s: the module was interrupted$"
    with pytest.raises(ExecutorError, match=timed_out):
        await WasmExecutor(runtime).run(run_context(wasm_job(), tmp_path / "r1", module, timeout=0.05))
    assert (tmp_path / "r1" / "exitCode").read_text() == "137"
    await runtime.close()  # waits for the compile to end in the background
