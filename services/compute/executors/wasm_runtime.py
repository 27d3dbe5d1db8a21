"""The wasmtime runtime shared by the WASM and Python executors: one engine, the module cache
(`wasm_modules`), one epoch ticker (`wasm_interrupts`), a thread pool for guests, and a way to stop one
guest without touching the others.

Engine. One `wasmtime.Engine` with epoch interruption on; every module is compiled by (or deserialized
into) it, through the runtime's `ModuleCache`.

Guests run on the runtime's thread pool, never on the event loop: `run` awaits the pool. Each guest
has its own `Store` (limits below), its WASI context (argv, env, preopened folders,
stdout/stderr written straight to files) and, when it has import modules, its own `Linker`; guests
without import modules share one linker.

Limits (the store's limiter, `Store.set_limits`). wasmtime's limits are per memory and per table, so:
* memory: the job's limit is the total over all the linear memories the guest's modules define (the
  main module and its import modules; wasmtime enables multi-memory): each of the N memories may grow to
  limit / N, and the store may hold N memories. One memory (the usual case) gets the whole limit.
* instances: 1 + the number of import modules (WASI is host functions, not an instance).
* tables: MAX_TABLES per guest, each at most MAX_TABLE_ELEMENTS entries (CPython's table has ~5,900);
  a `table.grow` past it returns -1 to the guest. Tables are outside the memory limit (8-16 bytes an
  entry: at most ~13 MB a guest with these defaults).
* module size: a module (or import module) bigger than the runtime's `max_module_bytes` (default
  DEFAULT_MAX_MODULE_BYTES, 64 MiB; the CPython interpreter is 26 MB) is refused before it is read
  (`wasm_modules`).
* compile time counts against the job's deadline: the module is compiled (or found in the cache) on the
  guest's thread, and `run` stops waiting at the deadline. A compile cannot be interrupted, so it goes on
  in the background (its result is cached for the next job), but the job times out at its deadline and
  the guest never starts.

Stopping a guest (timeouts and cancel): each guest has a `GuestControl` (its deadline and stop flag), which
an epoch-deadline callback reads on the guest's thread every tick (`wasm_interrupts`); `run` stops waiting
at the deadline, and `stop` sets the flag.

The guest's world: wasmtime's WASI (preopened folders, argv, env, stdout/stderr), with virtual clocks,
sleeps and randomness and a `proc_exit` that takes any code (`wasm_clocks`).
"""

import asyncio
import contextlib
import functools
import math
import threading
import time
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from bacalhau_grpc.compute.domain.runs import ExecutorError
from bacalhau_grpc.compute.executors.wasm_clocks import VirtualWorld, new_linker, set_current_world
from bacalhau_grpc.compute.executors.wasm_interrupts import EpochTicker, GuestControl, Stop, unwatch, watch
from bacalhau_grpc.compute.executors.wasm_modules import (
    DEFAULT_MAX_MODULE_BYTES,
    DEFAULT_MODULE_CACHE_ENTRIES,
    LoadedModule,
    ModuleCache,
    check_entry_point,
    wasmtime_cause,
)

# Threads that run guests (a guest occupies one for its whole run).
DEFAULT_GUEST_THREADS = 32
# Tables a guest's store may hold, and entries any one table may have (`table.grow` past it gets -1).
MAX_TABLES = 10
MAX_TABLE_ELEMENTS = 100_000
# How long a cancelled `run` waits for its guest to unwind before giving up on it.
STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Preopen:
    """A host folder the guest sees at `guest` (an absolute path)."""

    host: Path
    guest: str
    writable: bool = False


@dataclass(frozen=True, slots=True)
class Guest:
    """One guest run: the module, its WASI world, its limits."""

    module: Path
    argv: tuple[str, ...]
    stdout: Path
    stderr: Path
    env: tuple[tuple[str, str], ...] = ()
    preopens: tuple[Preopen, ...] = ()
    entry_point: str = "_start"
    # Instantiated first, each registered under its name-section name, else its file name without .wasm.
    import_modules: tuple[Path, ...] = ()
    # Bytes all its linear memories together may grow to; 0 for no limit.
    memory_limit: int = 0
    # `time.monotonic()` past which the guest is interrupted.
    deadline: float = math.inf
    # Seeds the guest's random bytes.
    seed: bytes = b""
    # Keep the compiled module in the on-disk cache too (for big modules: the interpreter).
    persist_module: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a guest run ended: an exit code, an interruption, or a trap."""

    exit_code: int | None = None
    stopped: Stop | None = None
    # wasmtime's message when the guest trapped (e.g. "wasm trap: wasm `unreachable` instruction executed").
    trap: str = ""
    # Bytes of the module's memory in use at the end.
    memory_used: int = 0


class WasmRuntime:
    """The engine, module cache, ticker and guest threads shared by the WASM and Python executors.

    `cache_dir`: where persisted compiled modules go (the node's `<data dir>/wasm-cache`); None keeps
    them in memory only. `max_module_bytes`: bigger modules are refused (0: no bound). Executors
    `retain` the runtime when made and `release` it in their `close`; the last release closes it (stops
    running guests, the threads and the ticker). `close` does it at once.
    """

    def __init__(
        self,
        *,
        cache_dir: Path | None = None,
        threads: int = DEFAULT_GUEST_THREADS,
        module_cache_entries: int = DEFAULT_MODULE_CACHE_ENTRIES,
        max_module_bytes: int = DEFAULT_MAX_MODULE_BYTES,
    ) -> None:
        config = wasmtime.Config()
        config.epoch_interruption = True
        config.wasm_multi_memory = True  # wasmtime's default; the memory limit is split among them
        self.engine = wasmtime.Engine(config)
        self.modules = ModuleCache(self.engine, cache_dir, module_cache_entries, max_module_bytes)
        self._linker = new_linker(self.engine)
        self._ticker = EpochTicker(self.engine)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wasm-guest")
        self._controls: dict[str, set[GuestControl]] = {}
        self._users = 0
        self._closed = False
        # At interpreter exit the pool's threads are joined: stop the guests first, or a spinning guest
        # would hold the process until its timeout (a runtime nobody closed, e.g. after a crash).
        # A private stdlib function (runs before the pool's threads are joined), absent from typeshed.
        threading._register_atexit(functools.partial(_stop_guests_of, weakref.ref(self)))  # type: ignore[attr-defined]

    # lifecycle

    def retain(self) -> None:
        self._users += 1

    async def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            await self.close()

    async def close(self) -> None:
        """Stops every running guest, then the guest threads and the ticker. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.stop_all()
        await asyncio.to_thread(self._pool.shutdown, wait=True)  # stopped guests unwind within a tick
        self._ticker.close()

    # modules and guests

    async def load(self, path: Path, *, persist: bool = False) -> LoadedModule:
        """Compiles (or finds) a module ahead of its first run, e.g. the interpreter at start-up."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, functools.partial(self.modules.load, path, persist=persist)
        )

    async def run(self, execution_id: str, guest: Guest) -> Outcome:
        """Runs the guest on a pool thread. Raises ExecutorError when it cannot run (not a module, a
        missing entry point or import...). If the awaiting task is cancelled, the guest is stopped."""
        if self._closed:
            raise ExecutorError("the WASM runtime is shut down")
        control = GuestControl(guest.deadline)
        self._controls.setdefault(execution_id, set()).add(control)
        future = asyncio.get_running_loop().run_in_executor(self._pool, self._run_guest, guest, control)
        try:
            if math.isfinite(guest.deadline):
                # Loading (compiling) the modules counts against the deadline: past it, the job times
                # out even if the compiler is still busy (it finishes in the background; see above).
                await asyncio.wait([future], timeout=max(0.0, guest.deadline - time.monotonic()))
                if not future.done():
                    control.stop(Stop.TIMEOUT)
                    if control.loading:  # the guest thread sees the stop before it starts the guest
                        future.add_done_callback(_retrieve)
                        return Outcome(stopped=Stop.TIMEOUT)
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            control.stop(Stop.CANCELLED)
            await asyncio.wait([future], timeout=STOP_GRACE_SECONDS)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: the caller was cancelled and wants no result
            raise
        finally:
            controls = self._controls.get(execution_id, set())
            controls.discard(control)
            if not controls:
                self._controls.pop(execution_id, None)

    def stop(self, execution_id: str, reason: Stop = Stop.CANCELLED) -> bool:
        """Interrupts the execution's running guest (within about a tick); False if none runs."""
        controls = self._controls.get(execution_id, set())
        for control in controls:
            control.stop(reason)
        return bool(controls)

    def stop_all(self) -> None:
        for execution_id in list(self._controls):
            self.stop(execution_id)

    def is_running(self, execution_id: str) -> bool:
        return bool(self._controls.get(execution_id))

    # on a guest thread

    def _run_guest(self, guest: Guest, control: GuestControl) -> Outcome:
        try:
            main = self.modules.load(guest.module, persist=guest.persist_module)
            check_entry_point(main.module, guest.entry_point)
            imports = [self.modules.load(path) for path in guest.import_modules]
        finally:
            control.loading = False
        stopped = control.check()  # e.g. the compile took the job's whole time
        if stopped is not None:
            return Outcome(stopped=stopped)
        store = wasmtime.Store(self.engine)
        handle = watch(store, control)
        self._ticker.guest_started()
        set_current_world(VirtualWorld(guest.seed, control))
        try:
            limits = store_limits(guest, [main, *imports])
            control.memories = limits["memories"]
            store.set_limits(**limits)
            store.set_wasi(_wasi_config(guest))
            return self._instantiate_and_call(store, guest, main, imports, control)
        finally:
            set_current_world(None)
            self._ticker.guest_finished()
            store.close()
            unwatch(handle)

    def _instantiate_and_call(
        self,
        store: wasmtime.Store,
        guest: Guest,
        main: LoadedModule,
        imports: list[LoadedModule],
        control: GuestControl,
    ) -> Outcome:
        instance: wasmtime.Instance | None = None
        try:
            linker = self._linker_with(store, guest, imports, control) if imports else self._linker
            instance = _instantiate(linker, store, main.module, guest.module.name, guest, control)
            exports = instance.exports(store)
            _initialize(store, exports, guest.entry_point)
            exports[guest.entry_point](store)  # type: ignore[operator]
            # 0, unless it called proc_exit and then returned (no `unreachable` after the call)
            exit_code = control.exit_code if control.exit_code is not None else 0
        except wasmtime.ExitTrap as exit_:
            exit_code = exit_.code
        except (wasmtime.Trap, wasmtime.WasmtimeError) as error:
            used = _memory_used(store, instance)
            if control.exit_code is not None:
                return Outcome(exit_code=control.exit_code, memory_used=used)
            if control.stopped is not None:
                return Outcome(stopped=control.stopped, memory_used=used)
            return Outcome(trap=wasmtime_cause(error), memory_used=used)
        return Outcome(exit_code=exit_code, memory_used=_memory_used(store, instance))

    def _linker_with(
        self, store: wasmtime.Store, guest: Guest, imports: list[LoadedModule], control: GuestControl
    ) -> wasmtime.Linker:
        """A linker of this guest's own, with its import modules instantiated and registered by name."""
        linker = new_linker(self.engine)
        for path, loaded in zip(guest.import_modules, imports, strict=True):
            name = loaded.declared_name or path.stem
            instance = _instantiate(linker, store, loaded.module, path.name, guest, control)
            _initialize(store, instance.exports(store), "")
            linker.define_instance(store, name, instance)
        return linker


def store_limits(guest: Guest, modules: list[LoadedModule]) -> dict[str, int]:
    """The store limiter's settings for a guest of these modules (see the module docstring)."""
    memories = sum(loaded.memories for loaded in modules)
    limits = {
        "instances": len(modules),
        "memories": memories,
        "tables": MAX_TABLES,
        "table_elements": MAX_TABLE_ELEMENTS,
    }
    if guest.memory_limit > 0:
        limits["memory_size"] = guest.memory_limit // max(1, memories)
    return limits


def _retrieve(future: "asyncio.Future[Outcome]") -> None:
    if not future.cancelled():
        future.exception()  # nobody awaits it any more: no "exception was never retrieved"


def _stop_guests_of(runtime: "weakref.ref[WasmRuntime]") -> None:
    alive = runtime()
    if alive is not None:
        alive.stop_all()


def _wasi_config(guest: Guest) -> wasmtime.WasiConfig:
    config = wasmtime.WasiConfig()
    config.argv = list(guest.argv)
    config.env = [list(pair) for pair in guest.env]
    for preopen in guest.preopens:
        try:
            config.preopen_dir(str(preopen.host), preopen.guest, preopen.writable)
        except wasmtime.WasmtimeError:
            raise ExecutorError(f"cannot give the module {preopen.host} at {preopen.guest}") from None
    for stream, path in (("stdout", guest.stdout), ("stderr", guest.stderr)):
        try:
            setattr(config, f"{stream}_file", str(path))
        except wasmtime.WasmtimeError:
            raise ExecutorError(f"cannot write the module's {stream} to {path}") from None
    return config


def _instantiate(
    linker: wasmtime.Linker,
    store: wasmtime.Store,
    module: wasmtime.Module,
    label: str,
    guest: Guest,
    control: GuestControl,
) -> wasmtime.Instance:
    """Links and instantiates; link failures become ExecutorErrors in v0.3's words. A trap or an
    interruption (in a start function) propagates as it is."""
    try:
        return linker.instantiate(store, module)
    except wasmtime.WasmtimeError as error:
        if control.stopped is not None:
            raise
        message = str(error).strip()
        if message.startswith("unknown import: `"):
            name = message.split("`")[1]
            raise ExecutorError(f"no export found for '{name}' required by module {label}") from None
        if "memory" in message and guest.memory_limit > 0:
            message += f" (the job's memory limit is {guest.memory_limit / 2**20:g} MiB"
            if control.memories > 1:
                share = guest.memory_limit / control.memories / 2**20
                message += f" in total: {share:.1f} MiB for each of its {control.memories} memories"
            message += ")"
        raise ExecutorError(f"cannot instantiate {label}: {message}") from None


def _initialize(store: wasmtime.Store, exports: Mapping[str, object], entry_point: str) -> None:
    """Runs a WASI reactor's `_initialize` (its libc set-up) before any other of its exports is called."""
    initialize = exports.get("_initialize")
    if isinstance(initialize, wasmtime.Func) and entry_point != "_initialize":
        initialize(store)


def _memory_used(store: wasmtime.Store, instance: wasmtime.Instance | None) -> int:
    if instance is None:
        return 0
    with contextlib.suppress(wasmtime.WasmtimeError, ValueError):
        memory = instance.exports(store).get("memory")
        if isinstance(memory, wasmtime.Memory):
            return memory.data_len(store)
    return 0
