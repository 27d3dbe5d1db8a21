"""The wasmtime runtime shared by the WASM and Python executors: one engine, a module cache, one epoch
ticker, a thread pool for guests, and a way to stop one guest without touching the others.

Engine. One `wasmtime.Engine` with epoch interruption on. Compiled code depends on the engine's config,
so every module is compiled by (or deserialized into) this one engine.

Module cache. Compiled modules are kept by the SHA-256 of their bytes in an in-memory LRU. Modules
loaded with `persist=True` (the 26 MB CPython interpreter: ~10 s to compile on this machine) are also
serialized to `cache_dir/<sha256>-<engine tag>.cwasm`, which a later process maps back in about a
millisecond (`Module.deserialize_file`). A cache file that no longer fits the engine (another wasmtime
version or config) is recompiled and rewritten. wasmtime's own `Config.cache` is not used: it keeps its
files under the user's home directory; this cache lives where the node says. Deserializing runs the
native code in the file, so the cache folder must be writable by the node only (it is made 0700).

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
  DEFAULT_MAX_MODULE_BYTES, 64 MiB; the CPython interpreter is 26 MB) is refused before it is read.
* compile time counts against the job's deadline: the module is compiled (or found in the cache) on the
  guest's thread, and `run` stops waiting at the deadline. A compile cannot be interrupted, so it goes on
  in the background (its result is cached for the next job), but the job times out at its deadline and
  the guest never starts.

Stopping a guest (timeouts and cancel). One ticker thread increments the engine's epoch every
TICK_SECONDS while any guest runs. Every store gets an epoch-deadline *callback* (the C API's
`wasmtime_store_epoch_deadline_callback`; wasmtime-py 50.0.1 binds it in its private `_ffi` module
but does not wrap it) and a deadline one tick ahead. Each tick the callback runs on the guest's own
thread and looks at that guest's `_Control`: past its deadline or asked to stop, it returns an error
(the guest unwinds with it); otherwise it sets the next deadline a tick ahead. So a timeout or a cancel
stops exactly one guest, within about a tick, while the others keep running.

  Why not the simpler "set that store's deadline to 0, then increment the epoch" from the event loop:
  tried here, it does not stop a guest spinning in a tight loop. Compiled code keeps the store's
  deadline in a register and reloads it only once the epoch passes the old deadline, so lowering the
  deadline from another thread goes unseen (and bumping the epoch alone would hit every store whose
  deadline is due, not just the one to stop).

  Caveat: epochs are only checked while wasm code runs. A guest blocked inside a host call is stopped
  when the call returns. The calls that could block for long (sleeps and polls) never wait here (see
  below), and stdin is empty. The callback holds the GIL for a few microseconds per tick per guest.

The guest's world (WASI preview 1). Clocks and randomness are virtual, so a job prints the same on
every node (the deterministic verifier compares results across nodes), as v0.3's wazero did by default:
every clock reading advances virtual time by 1 ms; the realtime clock starts at 2000-01-01T00:00:00Z,
the monotonic and CPU-time clocks at 0; a sleep (`poll_oneoff` on clocks) returns at once and moves
virtual time to its deadline, and polled file descriptors are always ready (files, an empty stdin,
stdout/stderr: nothing in the sandbox waits); `random_get` is SHA-256 in counter mode over a seed (the
executors seed it with the job ID and shard index). These WASI functions, and `proc_exit` (wasmtime's
refuses exit codes from 126 up), shadow wasmtime's in the linker; the rest is wasmtime's own WASI.
"""

import asyncio
import contextlib
import ctypes
import enum
import fcntl
import functools
import hashlib
import importlib.metadata
import io
import itertools
import logging
import math
import os
import struct
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import wasmtime
import wasmtime._bindings as wasmtime_bindings
from wasmtime import _ffi as wasmtime_ffi

from bacalhau_grpc.compute.executors.base import ExecutorError

log = logging.getLogger(__name__)

WASI = "wasi_snapshot_preview1"
WASM_MAGIC = b"\0asm"
WASMTIME_VERSION = importlib.metadata.version("wasmtime")
# Names the engine config in the on-disk cache file names (deserialize checks compatibility too).
ENGINE_TAG = f"wasmtime{WASMTIME_VERSION}-epochs"

# The ticker's period; a timeout or cancel stops a guest within about this long.
TICK_SECONDS = 0.01
# Ticks between two looks at a guest's deadline and stop flag.
CHECK_EVERY_TICKS = 1
# Threads that run guests (a guest occupies one for its whole run).
DEFAULT_GUEST_THREADS = 32
# Compiled modules kept in memory.
DEFAULT_MODULE_CACHE_ENTRIES = 64
# A module (or import module) bigger than this is refused before it is read or compiled.
DEFAULT_MAX_MODULE_BYTES = 64 * 2**20
# Tables a guest's store may hold, and entries any one table may have (`table.grow` past it gets -1).
MAX_TABLES = 10
MAX_TABLE_ELEMENTS = 100_000
# How long a cancelled `run` waits for its guest to unwind before giving up on it.
STOP_GRACE_SECONDS = 5.0

# The virtual clocks: realtime starts at 2000-01-01T00:00:00Z; each reading advances time by 1 ms.
VIRTUAL_REALTIME_START_NS = 946_684_800 * 10**9
VIRTUAL_STEP_NS = 1_000_000

# WASI errno values, clock ids and the layouts poll_oneoff reads and writes.
_ERRNO_SUCCESS, _ERRNO_FAULT, _ERRNO_INVAL, _ERRNO_NOSYS = 0, 21, 28, 52
_CLOCK_REALTIME = 0
_KNOWN_CLOCKS = range(4)  # realtime, monotonic, process CPU time, thread CPU time
_SUBSCRIPTION = struct.Struct("<QB7xIxxxxQQH6x")  # userdata, tag, clock id, timeout, precision, flags
_EVENT = struct.Struct("<QHB5xQH6x")  # userdata, error, type, nbytes, flags
_EVENTTYPE_CLOCK = 0
_SUBSCRIPTION_CLOCK_ABSTIME = 1


class Stop(enum.Enum):
    """Why a guest was stopped; the value is the error the epoch callback unwinds the guest with."""

    TIMEOUT = "the execution timed out"
    CANCELLED = "the execution was cancelled"
    EXITED = "the module exited"  # it called proc_exit (not an interruption: its exit code is the result)


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


@dataclass(frozen=True, slots=True)
class LoadedModule:
    module: wasmtime.Module
    digest: str
    # The name in the module's `name` section (None when it has none, or came from the disk cache).
    declared_name: str | None = None
    # Linear memories the module defines (not imports).
    memories: int = 1


class _Control:
    """A running guest's deadline and stop flag, read by the epoch callback on the guest's thread."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.stopped: Stop | None = None
        self.exit_code: int | None = None
        # True while its modules are compiled or loaded (before the guest starts).
        self.loading = True
        # Linear memories its modules define (they share the memory limit).
        self.memories = 1

    def exit(self, code: int) -> None:
        if self.exit_code is None:
            self.exit_code = code
            self.stopped = Stop.EXITED

    def stop(self, reason: Stop) -> None:
        if self.stopped is None:
            self.stopped = reason

    def check(self) -> Stop | None:
        if self.stopped is None and time.monotonic() >= self.deadline:
            self.stopped = Stop.TIMEOUT
        return self.stopped


# --- the epoch-deadline callback (one for all stores; `data` is the guest's handle) ---------------------

_DeadlineCallback = wasmtime_bindings._wasmtime_store_epoch_deadline_callback.argtypes[1]
_NO_FINALIZER = wasmtime_bindings._wasmtime_store_epoch_deadline_callback.argtypes[3]()
_UPDATE_DEADLINE_CONTINUE = 0
_watched: dict[int, _Control] = {}
_handles = itertools.count(1)


@_DeadlineCallback
def _on_epoch_deadline(_context: Any, data: int | None, next_deadline: Any, update_kind: Any) -> int | None:
    """Runs on the guest's thread when its epoch deadline is reached: stop it, or look again next tick."""
    control = _watched.get(data or 0)
    reason = control.check() if control is not None else None
    if reason is not None:
        error = wasmtime_ffi.wasmtime_error_new(reason.value.encode())
        return ctypes.cast(error, ctypes.c_void_p).value  # wasmtime takes the error and unwinds the guest
    next_deadline[0] = CHECK_EVERY_TICKS
    update_kind[0] = _UPDATE_DEADLINE_CONTINUE
    return 0


def _watch(store: wasmtime.Store, control: _Control) -> int:
    handle = next(_handles)
    _watched[handle] = control
    wasmtime_ffi.wasmtime_store_epoch_deadline_callback(
        store.ptr(), _on_epoch_deadline, handle, _NO_FINALIZER
    )
    store.set_epoch_deadline(CHECK_EVERY_TICKS)
    return handle


class _EpochTicker:
    """One thread that increments the engine's epoch every TICK_SECONDS while any guest runs."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        self._guests = 0
        self._closed = False
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def guest_started(self) -> None:
        with self._wake:
            self._guests += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._tick, name="wasm-epoch-ticker", daemon=True)
                self._thread.start()
            self._wake.notify()

    def guest_finished(self) -> None:
        with self._wake:
            self._guests -= 1

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()

    def _tick(self) -> None:
        next_tick = time.monotonic()
        while True:
            with self._wake:
                while self._guests == 0 and not self._closed:
                    self._wake.wait()
                    next_tick = time.monotonic()
                if self._closed:
                    return
            next_tick += TICK_SECONDS
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_tick = time.monotonic()  # behind schedule: skip ticks rather than burst
            self._engine.increment_epoch()


# --- the virtual clocks and random bytes ----------------------------------------------------------------


class VirtualWorld:
    """One guest's clocks and random source (see the module docstring)."""

    def __init__(self, seed: bytes, control: _Control) -> None:
        self.control = control
        self.elapsed_ns = 0
        self._seed = hashlib.sha256(seed).digest()
        self._counter = 0
        self._spare = b""

    def clock_value(self, clock_id: int) -> int:
        return self.elapsed_ns + (VIRTUAL_REALTIME_START_NS if clock_id == _CLOCK_REALTIME else 0)

    def read_clock(self, clock_id: int) -> int | None:
        if clock_id not in _KNOWN_CLOCKS:
            return None
        self.elapsed_ns += VIRTUAL_STEP_NS
        return self.clock_value(clock_id)

    def random_bytes(self, size: int) -> bytes:
        out = bytearray(self._spare[:size])
        self._spare = self._spare[size:]
        while len(out) < size:
            block = hashlib.sha256(self._seed + self._counter.to_bytes(8, "little")).digest()
            self._counter += 1
            take = size - len(out)
            out += block[:take]
            self._spare = block[take:]
        return bytes(out)


_current = threading.local()  # .world: the VirtualWorld of the guest running on this thread


def _host_function(body: Callable[..., int]) -> Callable[..., int]:
    """A WASI function in Python: pointers unsigned, any failure an errno (never an exception, which
    wasmtime-py would park in a process-wide slot where another guest's thread could pick it up)."""

    @functools.wraps(body)
    def wrapper(caller: wasmtime.Caller, *args: int) -> int:
        world = getattr(_current, "world", None)
        if world is None:
            return _ERRNO_NOSYS
        try:
            return body(caller, world, *(arg & 0xFFFFFFFF for arg in args))
        except Exception:
            return _ERRNO_FAULT

    return wrapper


def _memory(caller: wasmtime.Caller) -> wasmtime.Memory:
    memory = caller.get("memory")
    if not isinstance(memory, wasmtime.Memory):
        raise LookupError("the calling module exports no memory")
    return memory


@_host_function
def _clock_time_get(
    caller: wasmtime.Caller, world: VirtualWorld, clock_id: int, _precision: int, out: int
) -> int:
    value = world.read_clock(clock_id)
    if value is None:
        return _ERRNO_INVAL
    _memory(caller).write(caller, value.to_bytes(8, "little"), out)
    return _ERRNO_SUCCESS


@_host_function
def _clock_res_get(caller: wasmtime.Caller, world: VirtualWorld, clock_id: int, out: int) -> int:
    if clock_id not in _KNOWN_CLOCKS:
        return _ERRNO_INVAL
    _memory(caller).write(caller, VIRTUAL_STEP_NS.to_bytes(8, "little"), out)
    return _ERRNO_SUCCESS


@_host_function
def _random_get(caller: wasmtime.Caller, world: VirtualWorld, buffer: int, size: int) -> int:
    if size:
        _memory(caller).write(caller, world.random_bytes(size), buffer)
    return _ERRNO_SUCCESS


@_host_function
def _poll_oneoff(
    caller: wasmtime.Caller, world: VirtualWorld, subscriptions: int, events: int, count: int, written: int
) -> int:
    """Waits for the first subscription to be ready, at once. File descriptors are always ready (a guest
    has files, an empty stdin and stdout/stderr: nothing that waits), so those fire with nothing else;
    with clocks alone, virtual time moves to the earliest deadline and those due fire."""
    if count == 0:
        return _ERRNO_INVAL
    memory = _memory(caller)
    raw = memory.read(caller, subscriptions, subscriptions + count * _SUBSCRIPTION.size)
    subs = [_SUBSCRIPTION.unpack_from(raw, i * _SUBSCRIPTION.size) for i in range(count)]
    ready = [(userdata, tag) for userdata, tag, *_ in subs if tag != _EVENTTYPE_CLOCK]
    if not ready:
        deadlines = []
        for userdata, _tag, clock_id, timeout, _precision, flags in subs:
            offset = VIRTUAL_REALTIME_START_NS if clock_id == _CLOCK_REALTIME else 0
            absolute = flags & _SUBSCRIPTION_CLOCK_ABSTIME
            deadlines.append((timeout - offset if absolute else world.elapsed_ns + timeout, userdata))
        world.elapsed_ns = max(world.elapsed_ns, min(at for at, _ in deadlines))
        ready = [(userdata, _EVENTTYPE_CLOCK) for at, userdata in deadlines if at <= world.elapsed_ns]
    out = b"".join(_EVENT.pack(userdata, _ERRNO_SUCCESS, kind, 0, 0) for userdata, kind in ready)
    memory.write(caller, out, events)
    memory.write(caller, len(ready).to_bytes(4, "little"), written)
    return _ERRNO_SUCCESS


def _proc_exit(_caller: wasmtime.Caller, code: int) -> None:
    """Records the exit code and returns: the guest then traps at the `unreachable` its libc puts after
    proc_exit (or is stopped at the next tick). wasmtime's own proc_exit refuses codes from 126 up
    ("exit with invalid exit status outside of [0..126)"), which a program may use."""
    world = getattr(_current, "world", None)
    if world is not None:
        world.control.exit(code & 0xFFFFFFFF)


def _new_linker(engine: wasmtime.Engine) -> wasmtime.Linker:
    """wasmtime's WASI, with the clocks, random and sleeps made virtual and proc_exit taking any code."""
    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    linker.allow_shadowing = True
    for name, params, function in (
        ("clock_time_get", [i32, i64, i32], _clock_time_get),
        ("clock_res_get", [i32, i32], _clock_res_get),
        ("random_get", [i32, i32], _random_get),
        ("poll_oneoff", [i32, i32, i32, i32], _poll_oneoff),
    ):
        linker.define_func(WASI, name, wasmtime.FuncType(params, [i32]), function, access_caller=True)
    linker.define_func(WASI, "proc_exit", wasmtime.FuncType([i32], []), _proc_exit, access_caller=True)
    linker.allow_shadowing = False
    return linker


# --- modules ---------------------------------------------------------------------------------------------


def declared_module_name(data: bytes) -> str | None:
    """The module name in a module's `name` custom section (what wazero, and so v0.3, registered an
    import module under), or None."""

    def leb128(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, at

    try:
        at = 8
        while at < len(data):
            section_id = data[at]
            size, at = leb128(at + 1)
            end = at + size
            if section_id == 0:
                label_size, body = leb128(at)
                if data[body : body + label_size] == b"name":
                    sub = body + label_size
                    while sub < end:
                        sub_id = data[sub]
                        sub_size, sub_body = leb128(sub + 1)
                        if sub_id == 0:
                            name_size, name_at = leb128(sub_body)
                            return data[name_at : name_at + name_size].decode("utf-8", errors="replace")
                        sub = sub_body + sub_size
            at = end
    except IndexError:
        pass
    return None


class ModuleCache:
    """Compiled modules by the SHA-256 of their bytes: an in-memory LRU, plus serialized files in
    `cache_dir` for modules loaded with `persist=True`. Safe to use from many threads; a module is
    compiled once even when several guests ask for it at the same time."""

    def __init__(
        self,
        engine: wasmtime.Engine,
        cache_dir: Path | None,
        entries: int = DEFAULT_MODULE_CACHE_ENTRIES,
        max_module_bytes: int = DEFAULT_MAX_MODULE_BYTES,
    ) -> None:
        self.engine = engine
        self.cache_dir = cache_dir
        self.entries = entries
        self.max_module_bytes = max_module_bytes
        self._modules: OrderedDict[str, LoadedModule] = OrderedDict()
        # Digests of persisted (big) files by (path, device, inode, size, mtime): not rehashed each run.
        self._file_digests: dict[tuple, str] = {}
        self._lock = threading.Lock()
        self._compile_locks: dict[str, threading.Lock] = {}

    def load(self, path: Path, *, persist: bool = False) -> LoadedModule:
        data, digest = self._read(path, persist)
        loaded = self._cached(digest)
        if loaded is not None:
            return loaded
        with self._compile_locks.setdefault(digest, threading.Lock()):
            loaded = self._cached(digest)
            if loaded is None:
                loaded = self._load_or_compile(path, digest, data, persist)
                with self._lock:
                    self._modules[digest] = loaded
                    while len(self._modules) > self.entries:
                        self._modules.popitem(last=False)
            self._compile_locks.pop(digest, None)  # later loads find the module cached
        return loaded

    def _read(self, path: Path, persist: bool) -> tuple[bytes | None, str]:
        try:
            size = path.stat().st_size
            if self.max_module_bytes > 0 and size > self.max_module_bytes:
                raise ExecutorError(
                    f"the WASM module {path.name} is {size / 2**20:.1f} MiB, over the node's limit of "
                    f"{self.max_module_bytes / 2**20:g} MiB for a module"
                )
            if not persist:
                data = path.read_bytes()
                return data, hashlib.sha256(data).hexdigest()
            info = path.stat()
            key = (str(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
            digest = self._file_digests.get(key)
            if digest is None:
                digest = self._file_digests[key] = _file_sha256(path)
            return None, digest
        except OSError as error:
            raise ExecutorError(f"cannot read the WASM module {path.name}: {error.strerror}") from None

    def _cached(self, digest: str) -> LoadedModule | None:
        with self._lock:
            loaded = self._modules.get(digest)
            if loaded is not None:
                self._modules.move_to_end(digest)
            return loaded

    def _load_or_compile(self, path: Path, digest: str, data: bytes | None, persist: bool) -> LoadedModule:
        cache_file = self.cache_dir / f"{digest}-{ENGINE_TAG}.cwasm" if persist and self.cache_dir else None
        if cache_file is None:
            return self._compile(path, digest, data, None)
        # One compiler per machine: the other runtimes and processes sharing the cache wait, then load.
        with _exclusive(cache_file.with_suffix(".lock")):
            return self._compile(path, digest, data, cache_file)

    def _compile(self, path: Path, digest: str, data: bytes | None, cache_file: Path | None) -> LoadedModule:
        if cache_file is not None and cache_file.exists():
            try:
                module = wasmtime.Module.deserialize_file(self.engine, str(cache_file))
                with path.open("rb") as f:
                    memories = defined_memories(f)
                return LoadedModule(module, digest, memories=memories)
            except OSError as error:
                raise ExecutorError(f"cannot read the WASM module {path.name}: {error.strerror}") from None
            except wasmtime.WasmtimeError as error:
                log.warning("recompiling %s: its cached copy %s does not load: %s", path, cache_file, error)
        if data is None:
            data = path.read_bytes()
        module = compile_module(self.engine, data, path.name)
        if cache_file is not None:
            _write_atomically(cache_file, module.serialize())
        return LoadedModule(module, digest, declared_module_name(data), defined_memories(io.BytesIO(data)))


def defined_memories(f: BinaryIO) -> int:
    """The number of linear memories a (valid) module defines: its memory section's count. Reads the
    section headers only, seeking past their bodies."""

    def leb128() -> int:
        value = shift = 0
        while True:
            byte = f.read(1)
            if not byte:
                raise EOFError
            value |= (byte[0] & 0x7F) << shift
            shift += 7
            if byte[0] < 0x80:
                return value

    try:
        f.seek(8)
        while section_id := f.read(1):
            size = leb128()
            if section_id[0] == 5:
                return leb128()
            f.seek(size, os.SEEK_CUR)
    except EOFError:
        pass
    return 0


def compile_module(engine: wasmtime.Engine, data: bytes, label: str) -> wasmtime.Module:
    """The compiled module, or ExecutorError saying why `data` is not one."""
    if data[:4] != WASM_MAGIC:
        raise ExecutorError(f"{label} is not a WebAssembly module: it does not start with \\0asm")
    try:
        return wasmtime.Module(engine, data)
    except wasmtime.WasmtimeError as error:
        raise ExecutorError(f"{label} is not a WebAssembly module: {_cause(error)}") from None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Holds an exclusive lock on `lock_path` (flock: between processes and between open files); when the
    lock file cannot be made, goes on without it."""
    try:
        lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        f = lock_path.open("a")
    except OSError as error:
        log.warning("compiling without the cache lock %s: %s", lock_path, error)
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _write_atomically(path: Path, data: bytes | bytearray) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temp, path)
    except OSError as error:
        log.warning("could not keep the compiled module in %s: %s", path, error)


def _cause(error: BaseException) -> str:
    """The interesting part of a wasmtime message: the "Caused by" lines, else the first line."""
    text = str(error).strip()
    head, _, cause = text.partition("Caused by:")
    lines = [line.strip() for line in (cause or head).splitlines() if line.strip()]
    return "; ".join(lines) if cause else (lines[0] if lines else type(error).__name__)


def check_entry_point(module: wasmtime.Module, name: str) -> None:
    """The entry point must be an exported function taking and returning nothing (v0.3's messages)."""
    for export in module.exports:
        if export.name != name:
            continue
        kind = export.type
        if not isinstance(kind, wasmtime.FuncType):
            raise ExecutorError(
                f"function '{name}' required but the WASM export with that name is not a function"
            )
        if kind.params:
            raise ExecutorError(f"function '{name}' should take 0 parameters, it takes {len(kind.params)}")
        if kind.results:
            raise ExecutorError(f"function '{name}' should return 0 results, it returns {len(kind.results)}")
        return
    raise ExecutorError(f"function '{name}' required but no WASM export with that name was found")


# --- the runtime -----------------------------------------------------------------------------------------


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
        self._linker = _new_linker(self.engine)
        self._ticker = _EpochTicker(self.engine)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wasm-guest")
        self._controls: dict[str, set[_Control]] = {}
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
        control = _Control(guest.deadline)
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

    def _run_guest(self, guest: Guest, control: _Control) -> Outcome:
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
        handle = _watch(store, control)
        self._ticker.guest_started()
        _current.world = VirtualWorld(guest.seed, control)
        try:
            limits = store_limits(guest, [main, *imports])
            control.memories = limits["memories"]
            store.set_limits(**limits)
            store.set_wasi(_wasi_config(guest))
            return self._instantiate_and_call(store, guest, main, imports, control)
        finally:
            _current.world = None
            self._ticker.guest_finished()
            store.close()
            _watched.pop(handle, None)

    def _instantiate_and_call(
        self,
        store: wasmtime.Store,
        guest: Guest,
        main: LoadedModule,
        imports: list[LoadedModule],
        control: _Control,
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
            return Outcome(trap=_cause(error), memory_used=used)
        return Outcome(exit_code=exit_code, memory_used=_memory_used(store, instance))

    def _linker_with(
        self, store: wasmtime.Store, guest: Guest, imports: list[LoadedModule], control: _Control
    ) -> wasmtime.Linker:
        """A linker of this guest's own, with its import modules instantiated and registered by name."""
        linker = _new_linker(self.engine)
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
    control: _Control,
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
