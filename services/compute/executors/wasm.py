"""The WASM executor: runs a job's WebAssembly module (WASI preview 1) on wasmtime, in-process.

What a job sees (as under Bacalhau v0.3's WASM executor, with the differences noted):
* The module is `Contexts[0]`: a file, or a folder holding exactly one file. Its import modules
  (`Spec.Wasm.ImportModules`, same rule) are instantiated first, each registered under the module name
  in its `name` section (as wazero did), else its file name without `.wasm`; then WASI.
* The entry point (`Spec.Wasm.EntryPoint`, default `_start`) must be an exported function with no
  parameters and no results. A reactor's `_initialize` runs first when the module has one.
* argv = [module file name, parameters...]; the environment in sorted key order.
* Files: every input (and any context after the module's) at its path, read-only; every output folder
  (`result_dir/<Name>`) at its path, writable (v0.3 mounted outputs at their Name; a job writes where
  its spec says). A URL input's path is its file's, `<Path>/<name>` (`checks.mount_path`), as in Docker,
  so two URL inputs sit side by side in one folder (v0.3 mounted the file at Path itself).
  Read-only is wasmtime's `preopen_dir(host, guest, fs_mutable=False)` (wasmtime-py 50.0.1 takes that
  one flag, though its docstring speaks of dir_perms/file_perms): writes fail with EPERM.
  WASI can only preopen folders, so a single-file input is shown by preopening a folder of our own at
  the file's parent path that holds a hard link to it (a copy across filesystems): the guest sees the
  file at its path, and nothing else in that folder. Two mounts cannot share a path.
* Exit code: the guest's `proc_exit` code, 0 when the entry point returns (v0.3 reported -1 then; a
  program that returns normally succeeded). A non-zero exit is a result, not an error.
* stdout and stderr go straight to `result_dir/stdout` and `result_dir/stderr`, cut at the node's cap
  afterwards; the summary holds their first 2 KiB.
* Limits (v0.3 had none; see `wasm_runtime`): memory = the job's `Resources.Memory` (default 100 MiB)
  in total over the linear memories the modules define (split evenly among them); tables at most
  MAX_TABLES per guest of MAX_TABLE_ELEMENTS entries each (a bigger `table.grow` returns -1); instances
  = the module and its import modules; a module over the node's bound (64 MiB) is refused before it is
  read; time = the run's timeout, compiling the module included: at it (up to 0.1 s early, so this
  comes before `run_with_timeout`'s generic backstop) the guest is interrupted, the streams and exit
  code 137 (as a killed container) are kept, and the run fails "execution timed out after Xs: the
  module was interrupted".
  `cancel` interrupts the guest the same way (see `wasm_interrupts` for how one guest is stopped alone).
* Clocks and random bytes are virtual and seeded by job ID and shard, so every node prints the same.
"""

import asyncio
import contextlib
import math
import os
import posixpath
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.capacity import job_usage
from bacalhau_grpc.compute.domain.runs import STDERR, STDOUT, ExecutorError, Mount, RunContext, RunResult
from bacalhau_grpc.compute.executors.results import DEFAULT_STREAM_CAP, cap_file, collect, write_exit_code
from bacalhau_grpc.compute.executors.wasm_interrupts import Stop
from bacalhau_grpc.compute.executors.wasm_modules import WASMTIME_VERSION
from bacalhau_grpc.compute.executors.wasm_runtime import Guest, Outcome, Preopen, WasmRuntime

# The exit code written when a guest is interrupted (timeout or cancel), as `docker kill` gives.
INTERRUPTED_EXIT_CODE = 137
# The guest is stopped this much before the run's timeout (at most a tenth of it), so the executor's own
# error (and the result files) comes before `run_with_timeout`'s backstop fires.
TIMEOUT_HEADROOM_SECONDS = 0.1
# Near its limit, a failing guest's error says it ran out of memory.
_OUT_OF_MEMORY_MARGIN = 2 * 2**20


class WasmExecutor:
    """Runs Engine=WASM jobs on a (shared) `WasmRuntime`."""

    engine = pb.Engine.ENGINE_WASM
    # Interrupts the guest at the job's timeout and says so (see base.run_with_timeout).
    enforces_timeout = True

    def __init__(self, runtime: WasmRuntime | None = None, *, stream_cap: int = DEFAULT_STREAM_CAP) -> None:
        self.runtime = runtime or WasmRuntime()
        self.runtime.retain()
        self.stream_cap = stream_cap

    def is_installed(self) -> bool:
        return True

    async def run(self, context: RunContext) -> RunResult:
        started = time.monotonic()
        module = module_file(context.contexts[0] if context.contexts else None, "code to run")
        imports = tuple(module_file(mount, "an import module") for mount in context.import_modules)
        wasm = context.spec.wasm
        return await run_guest(
            self.runtime,
            context,
            started=started,
            module=module,
            contexts=context.contexts[1:],  # the first is the module itself
            argv=(module.name, *wasm.parameters),
            env=environment(wasm.environment_variables),
            entry_point=wasm.entry_point or "_start",
            import_modules=imports,
            stream_cap=self.stream_cap,
            note=f"ran on wasmtime {WASMTIME_VERSION}",
        )

    async def cancel(self, execution_id: str) -> None:
        self.runtime.stop(execution_id)

    async def close(self) -> None:
        await self.runtime.release()


def module_file(mount: Mount | None, what: str) -> Path:
    """The .wasm file of a context: the file itself, or the one file in the folder."""
    if mount is None:
        raise ExecutorError("WASM job expects one context containing code to run")
    if mount.source.is_file():
        return mount.source
    if not mount.source.is_dir():
        raise ExecutorError(f"the context holding {what} ({mount.target}) is missing: {mount.source}")
    entries = sorted(mount.source.iterdir())
    if len(entries) != 1 or not entries[0].is_file():
        raise ExecutorError(
            f"should be 1 file in {mount.target or mount.source} but there are {len(entries)}"
        )
    return entries[0]


def environment(variables: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The guest's environment, sorted by key; keys and values a shell could hold."""
    for key, value in variables.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ExecutorError(f"invalid environment variable {key}={value}")
    return tuple(sorted(variables.items()))


def job_seed(context: RunContext) -> bytes:
    """Seeds the guest's random bytes: the same shard of the same job gets the same bytes on every node."""
    return f"{context.job.id}/{context.execution.shard_index}".encode()


def memory_limit(spec: pb.Spec) -> int:
    try:
        return job_usage(spec).memory
    except InvalidArgumentError as error:
        raise ExecutorError(str(error)) from None


def guest_deadline(started: float, timeout: float) -> float:
    if not math.isfinite(timeout) or timeout <= 0:
        return math.inf
    return started + timeout - min(TIMEOUT_HEADROOM_SECONDS, timeout / 10)


async def run_guest(
    runtime: WasmRuntime,
    context: RunContext,
    *,
    started: float,
    module: Path,
    contexts: tuple[Mount, ...],
    argv: tuple[str, ...],
    env: tuple[tuple[str, str], ...],
    entry_point: str = "_start",
    import_modules: tuple[Path, ...] = (),
    persist_module: bool = False,
    stream_cap: int = DEFAULT_STREAM_CAP,
    note: str = "",
) -> RunResult:
    """Runs one guest for `context` and turns its outcome into the result folder and a RunResult (or
    an ExecutorError). The guest sees `contexts` and the inputs read-only and the outputs writable, each
    at its path (a context without a path is not shown). Shared by the WASM and Python executors."""
    if context.result_dir is None:
        raise ExecutorError("the run has no result folder")
    result_dir = context.result_dir
    limit = memory_limit(context.spec)
    shown = tuple(mount for mount in contexts if mount.target)
    async with guest_filesystem((*shown, *context.inputs, *context.outputs)) as preopens:
        guest = Guest(
            module=module,
            argv=argv,
            env=env,
            preopens=preopens,
            stdout=result_dir / STDOUT,
            stderr=result_dir / STDERR,
            entry_point=entry_point,
            import_modules=import_modules,
            memory_limit=limit,
            deadline=guest_deadline(started, context.timeout),
            seed=job_seed(context),
            persist_module=persist_module,
        )
        try:
            outcome = await runtime.run(context.execution.id, guest)
        except asyncio.CancelledError:
            _keep_streams(result_dir, stream_cap)
            write_exit_code(result_dir, INTERRUPTED_EXIT_CODE)
            raise
    stdout_cut, stderr_cut = _keep_streams(result_dir, stream_cap)
    if outcome.stopped is not None:
        write_exit_code(result_dir, INTERRUPTED_EXIT_CODE)
        if outcome.stopped is Stop.TIMEOUT:
            raise ExecutorError(f"execution timed out after {context.timeout:g}s: the module was interrupted")
        raise ExecutorError("execution cancelled: the module was interrupted")
    if outcome.exit_code is None:
        raise ExecutorError(f"the module trapped: {outcome.trap}{_memory_note(outcome, limit)}")
    result = collect(result_dir, outcome.exit_code, stdout_truncated=stdout_cut, stderr_truncated=stderr_cut)
    return replace(result, note=note)


def _keep_streams(result_dir: Path, cap: int) -> tuple[bool, bool]:
    return cap_file(result_dir / STDOUT, cap), cap_file(result_dir / STDERR, cap)


def _memory_note(outcome: Outcome, limit: int) -> str:
    if limit <= 0 or limit - outcome.memory_used > max(_OUT_OF_MEMORY_MARGIN, limit // 20):
        return ""
    return (
        f" (it ran out of memory: {outcome.memory_used / 2**20:.1f} MiB in use of the job's "
        f"{limit / 2**20:g} MiB limit, Spec.Resources.Memory)"
    )


@contextlib.asynccontextmanager
async def guest_filesystem(mounts: Iterable[Mount]) -> AsyncIterator[tuple[Preopen, ...]]:
    """The preopened folders that show `mounts` at their paths (see the module docstring for files)."""
    preopens: dict[str, Preopen] = {}
    files_by_folder: dict[str, list[Mount]] = {}
    for mount in mounts:
        target = _guest_path(mount)
        if mount.source.is_dir():
            _add_preopen(preopens, Preopen(mount.source, target, writable=not mount.read_only))
        elif mount.source.is_file():
            files_by_folder.setdefault(posixpath.dirname(target), []).append(mount)
        else:
            raise ExecutorError(f"{mount.source}, to be mounted at {target}, does not exist")
    if not files_by_folder:
        yield tuple(preopens.values())
        return
    staging = Path(tempfile.mkdtemp(prefix="wasm-files-"))
    try:
        for folder, holder in (await asyncio.to_thread(_stage_files, files_by_folder, staging)).items():
            _add_preopen(preopens, Preopen(holder, folder), single_files=True)
        yield tuple(preopens.values())
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stage_files(files_by_folder: dict[str, list[Mount]], staging: Path) -> dict[str, Path]:
    """One folder per guest folder holding single files, with a link to (or a copy of) each file."""
    holders = {}
    for index, (folder, files) in enumerate(sorted(files_by_folder.items())):
        holder = holders[folder] = staging / str(index)
        holder.mkdir()
        for mount in files:
            destination = holder / posixpath.basename(_guest_path(mount))
            if destination.exists():
                raise ExecutorError(f"two mounts at {_guest_path(mount)}")
            _link_or_copy(mount.source, destination)
    return holders


def _guest_path(mount: Mount) -> str:
    if not mount.target.startswith("/"):
        raise ExecutorError(f"cannot mount {mount.source.name} at {mount.target!r}: the path is not absolute")
    return posixpath.normpath(mount.target)


def _add_preopen(preopens: dict[str, Preopen], preopen: Preopen, *, single_files: bool = False) -> None:
    if preopen.guest in preopens:
        if single_files:
            raise ExecutorError(
                f"cannot mount single files in {preopen.guest}: a folder is mounted there "
                "(WASI mounts folders only, so a file is shown through a folder of its own)"
            )
        raise ExecutorError(f"two mounts at {preopen.guest}")
    preopens[preopen.guest] = preopen


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source.resolve(), destination)
    except OSError:
        shutil.copyfile(source, destination)
