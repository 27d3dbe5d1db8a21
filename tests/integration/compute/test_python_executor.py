"""The Python and Language engines on real wasmtime and CPython 3.12.0 for WASI.

The compiled interpreter is kept in pytest's cache folder, so only the first run on a machine pays
the ~10 s compile; later runs load it in milliseconds. One runtime is shared by the whole module.
"""

import asyncio
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bacalhau_grpc.common.model import checks, pb
from bacalhau_grpc.compute.domain.capacity import job_usage
from bacalhau_grpc.compute.domain.executions import new_execution
from bacalhau_grpc.compute.domain.proposals import folder_hash
from bacalhau_grpc.compute.domain.runs import ExecutorError, Mount, RunContext, prepare_outputs
from bacalhau_grpc.compute.executors.python_wasm import (
    LanguageExecutor,
    PythonWasmExecutor,
)
from bacalhau_grpc.compute.executors.wasm import WasmExecutor
from bacalhau_grpc.compute.executors.wasm_runtime import WasmRuntime
from tests.unit.compute.support import make_job

WASM = Path(__file__).resolve().parents[2] / "wasm"

DETERMINISM_PROBE = """
import datetime, os, random, time, uuid
print(datetime.datetime.fromtimestamp(time.time(), datetime.timezone.utc).isoformat())
print(time.time(), time.monotonic(), random.random(), hash("x"), os.urandom(4).hex(), uuid.uuid4())
time.sleep(3600)
print("an hour later:", time.time())
with open("/outputs/numbers.txt", "w") as f:
    f.write(" ".join(str(random.randrange(1000)) for _ in range(10)))
"""


@pytest.fixture(scope="module")
def runtime(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WasmRuntime]:
    cache = pytestconfig.cache
    runtime = WasmRuntime(
        cache_dir=cache.mkdir("wasm-modules") if cache else tmp_path_factory.mktemp("wasm-modules")
    )
    runtime.retain()  # the module's: executors made by tests never close it
    asyncio.run(PythonWasmExecutor(runtime).prepare())
    yield runtime
    asyncio.run(runtime.close())


@pytest.fixture
def python(runtime: WasmRuntime) -> PythonWasmExecutor:
    return PythonWasmExecutor(runtime)


@pytest.fixture
def language(runtime: WasmRuntime) -> LanguageExecutor:
    return LanguageExecutor(WasmExecutor(runtime), PythonWasmExecutor(runtime))


def python_job(
    command: str = "",
    *,
    program_path: str = "",
    engine: int = pb.Engine.ENGINE_PYTHON_WASM,
    language: str = "python",
    version: str = "",
    deterministic: bool = True,
    job_id: str = "",
    memory: str = "",
) -> pb.Job:
    job = make_job(engine=engine, memory=memory)
    if job_id:
        job.id = job_id
    job.spec.language.language = language
    job.spec.language.language_version = version
    job.spec.language.deterministic = deterministic
    job.spec.language.command = command
    job.spec.language.program_path = program_path
    job.spec.outputs.add(name="outputs", path="/outputs")
    return job


def run_context(
    job: pb.Job,
    result_dir: Path,
    *,
    context: Path | None = None,
    inputs: tuple[Mount, ...] = (),
    timeout: float = 30.0,
) -> RunContext:
    return RunContext(
        new_execution(job, 0, job_usage(job.spec)),
        "node-1",
        contexts=(Mount(context, "/job"),) if context else (),
        inputs=inputs,
        outputs=prepare_outputs(result_dir, job.spec.outputs),
        result_dir=result_dir,
        timeout=timeout,
    )


async def test_hello_from_a_command(python: PythonWasmExecutor, tmp_path: Path):
    result = await python.run(run_context(python_job("print('hello from python')"), tmp_path))
    assert (result.exit_code, result.stdout, result.stderr) == (0, b"hello from python\n", b"")
    assert (tmp_path / "stdout").read_text() == "hello from python\n"
    assert (tmp_path / "exitCode").read_text() == "0"
    assert result.note == "ran on CPython 3.12.0 (WASI)"


async def test_a_program_in_the_job_context_reads_inputs_and_writes_outputs(
    python: PythonWasmExecutor, tmp_path: Path
):
    context = tmp_path / "context"
    (context / "lib").mkdir(parents=True)
    (context / "lib" / "shout.py").write_text("def shout(text):\n    return text.upper()\n")
    (context / "main.py").write_text(
        textwrap.dedent("""
            import sys
            sys.path.insert(0, "/job/lib")
            from shout import shout
            text = open("/inputs/words.txt").read()
            open("/outputs/shouted.txt", "w").write(shout(text))
            print("argv:", sys.argv)
        """)
    )
    data = tmp_path / "data"
    data.mkdir()
    (data / "words.txt").write_text("compute over data")
    job = python_job(program_path="main.py")
    result = await python.run(
        run_context(job, tmp_path / "results", context=context, inputs=(Mount(data, "/inputs"),))
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == b"argv: ['/job/main.py']\n"
    assert (tmp_path / "results" / "outputs" / "shouted.txt").read_text() == "COMPUTE OVER DATA"


async def test_the_job_context_and_inputs_are_read_only(python: PythonWasmExecutor, tmp_path: Path):
    context = tmp_path / "context"
    context.mkdir()
    (context / "main.py").write_text("open('/job/new.txt', 'w')\n")
    result = await python.run(
        run_context(python_job(program_path="main.py"), tmp_path / "results", context=context)
    )
    assert result.exit_code == 1 and b"/job/new.txt" in result.stderr
    assert sorted(p.name for p in context.iterdir()) == ["main.py"]


async def test_an_exception_is_a_result_with_its_traceback(python: PythonWasmExecutor, tmp_path: Path):
    result = await python.run(run_context(python_job("print('before')\nraise ValueError('boom')"), tmp_path))
    assert result.exit_code == 1 and result.stdout == b"before\n"
    assert result.stderr.startswith(b"Traceback (most recent call last):")
    assert result.stderr.endswith(b"ValueError: boom\n")
    assert (tmp_path / "exitCode").read_text() == "1"
    result = await python.run(run_context(python_job("import sys; sys.exit(42)"), tmp_path / "exit"))
    assert result.exit_code == 42


async def test_the_same_job_gives_the_same_result_every_time(python: PythonWasmExecutor, tmp_path: Path):
    job_id = "8c7f3c4a-0b1d-4d7e-9a43-6f1c2b3d4e5f"
    first = await python.run(run_context(python_job(DETERMINISM_PROBE, job_id=job_id), tmp_path / "first"))
    second = await python.run(run_context(python_job(DETERMINISM_PROBE, job_id=job_id), tmp_path / "second"))
    assert first.exit_code == 0, first.stderr
    assert first.stdout == second.stdout
    assert folder_hash(tmp_path / "first") == folder_hash(tmp_path / "second")
    lines = first.stdout.decode().splitlines()
    assert lines[0].startswith("2000-01-01T00:00:00")
    start, later = float(lines[1].split()[0]), float(lines[2].split()[-1])
    assert 3600 <= later - start < 3601  # the hour of sleep passed on the virtual clock, at once
    other = await python.run(run_context(python_job(DETERMINISM_PROBE), tmp_path / "other-job"))
    assert other.stdout.splitlines()[1] != first.stdout.splitlines()[1]  # random bytes are seeded per job


async def test_python_versions_3_x_run_on_3_12(language: LanguageExecutor, tmp_path: Path):
    job = python_job(
        "import sys; print(sys.version_info[:3])", engine=pb.Engine.ENGINE_LANGUAGE, version="3.10"
    )
    result = await language.run(run_context(job, tmp_path))
    assert result.stdout == b"(3, 12, 0)\n"
    assert result.note == "Python 3.10 requested, ran on CPython 3.12.0 (WASI)"


async def test_the_language_engine_runs_wasm_2_0(language: LanguageExecutor, tmp_path: Path):
    job = python_job(engine=pb.Engine.ENGINE_LANGUAGE, language="wasm", version="2.0")
    result = await language.run(run_context(job, tmp_path, context=WASM / "hello.wasm"))
    assert result.stdout.startswith(b"hello from wasm\n")


@pytest.mark.parametrize(
    ("name", "version", "deterministic", "message"),
    [
        ("python", "3.10", False, "non-deterministic python 3.10 not supported yet"),
        ("python", "2.7", True, "python 2.7 is not supported (supported: python 3.x, wasm 2.0)"),
        ("wasm", "1.0", True, "wasm 1.0 is not supported (supported: python 3.x, wasm 2.0)"),
        ("ruby", "3.2", True, "ruby 3.2 is not supported (supported: python 3.x, wasm 2.0)"),
        ("", "", True, "(no language) (no version) is not supported (supported: python 3.x, wasm 2.0)"),
    ],
)
async def test_unsupported_languages_are_refused(
    language: LanguageExecutor, tmp_path: Path, name: str, version: str, deterministic: bool, message: str
):
    job = python_job(
        "print(1)",
        engine=pb.Engine.ENGINE_LANGUAGE,
        language=name,
        version=version,
        deterministic=deterministic,
    )
    assert checks.engine_error(job.spec)[0] == message  # what the requester checks at submission
    with pytest.raises(ExecutorError) as error:
        await language.run(run_context(job, tmp_path))
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("command", "program_path", "requirements", "message"),
    [
        ("", "", "", "the job has neither a Command nor a ProgramPath: there is no Python program to run"),
        ("", "../etc/passwd", "", "the ProgramPath '../etc/passwd' is outside the job context (/job)"),
        ("", "/etc/passwd", "", "the ProgramPath '/etc/passwd' is outside the job context (/job)"),
        (
            "print(1)",
            "",
            "requirements.txt",
            "installing requirements (requirements.txt) is not supported: "
            "programs run offline with the standard library only",
        ),
    ],
)
async def test_bad_programs_are_refused(
    python: PythonWasmExecutor,
    tmp_path: Path,
    command: str,
    program_path: str,
    requirements: str,
    message: str,
):
    job = python_job(command, program_path=program_path)
    job.spec.language.requirements_path = requirements
    assert checks.engine_error(job.spec)[0] == message
    with pytest.raises(ExecutorError) as error:
        await python.run(run_context(job, tmp_path))
    assert str(error.value) == message


async def test_a_program_missing_from_the_job_context_is_refused(python: PythonWasmExecutor, tmp_path: Path):
    context = tmp_path / "context"
    context.mkdir()
    job = python_job(program_path="main.py")
    assert checks.engine_error(job.spec) is None  # only the node running it can look inside the context
    with pytest.raises(ExecutorError) as error:
        await python.run(run_context(job, tmp_path / "results", context=context))
    assert str(error.value) == "the ProgramPath 'main.py' is not a file in the job context (/job)"


async def test_a_runaway_program_times_out(python: PythonWasmExecutor, tmp_path: Path):
    started = time.monotonic()
    with pytest.raises(ExecutorError, match=r"^execution timed out after 1s: the module was interrupted$"):
        await python.run(
            run_context(python_job("print('looping', flush=True)\nwhile True: pass"), tmp_path, timeout=1)
        )
    assert time.monotonic() - started < 2.5
    assert (tmp_path / "stdout").read_text() == "looping\n" and (tmp_path / "exitCode").read_text() == "137"


async def test_memory_beyond_the_limit_is_a_memory_error(python: PythonWasmExecutor, tmp_path: Path):
    job = python_job("data = bytearray(200 * 2**20)", memory="64Mi")
    result = await python.run(run_context(job, tmp_path))
    assert result.exit_code == 1 and result.stderr.endswith(b"MemoryError\n")


async def test_cancel_stops_a_runaway_program_and_leaves_another_running(
    python: PythonWasmExecutor, tmp_path: Path
):
    loop_forever = python_job("print('looping', flush=True)\nwhile True: pass")
    first = run_context(loop_forever, tmp_path / "first", timeout=60)
    second = run_context(
        python_job("print('looping', flush=True)\nwhile True: pass"), tmp_path / "second", timeout=60
    )
    first_run = asyncio.create_task(python.run(first))
    second_run = asyncio.create_task(python.run(second))

    def looping(context: RunContext) -> bool:
        stdout = context.result_dir / "stdout"  # type: ignore[operator]
        return stdout.exists() and stdout.read_bytes() == b"looping\n"

    deadline = time.monotonic() + 30
    while not (looping(first) and looping(second)):
        assert time.monotonic() < deadline, "the programs did not start"
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await python.cancel(first.execution.id)
    with pytest.raises(ExecutorError, match="execution cancelled: the module was interrupted"):
        await first_run
    assert time.monotonic() - started < 1.0
    assert (tmp_path / "first" / "exitCode").read_text() == "137"
    assert not second_run.done() and python.runtime.is_running(second.execution.id)
    await python.cancel(second.execution.id)
    with pytest.raises(ExecutorError, match="execution cancelled"):
        await second_run
