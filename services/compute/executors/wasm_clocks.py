"""The guest's virtual world (WASI preview 1): clocks, sleeps, polls and randomness that give the same
results on every node, and a `proc_exit` that takes any exit code; `new_linker` puts them over
wasmtime's own WASI.

Clocks and randomness are virtual, so a job prints the same on every node (the deterministic verifier
compares results across nodes), as v0.3's wazero did by default: every clock reading advances virtual time
by 1 ms; the realtime clock starts at 2000-01-01T00:00:00Z, the monotonic and CPU-time clocks at 0; a sleep
(`poll_oneoff` on clocks) returns at once and moves virtual time to its deadline, and polled file
descriptors are always ready (files, an empty stdin, stdout/stderr: nothing in the sandbox waits);
`random_get` is SHA-256 in counter mode over a seed (the executors seed it with the job ID and shard
index). These WASI functions, and `proc_exit` (wasmtime's refuses exit codes from 126 up), shadow
wasmtime's in the linker; the rest is wasmtime's own WASI.

The host functions find the guest's `VirtualWorld` in a thread-local (`set_current_world`), set by the
runtime for as long as the guest runs on that thread.
"""

import functools
import hashlib
import struct
import threading
from collections.abc import Callable

import wasmtime

from bacalhau_grpc.compute.executors.wasm_interrupts import GuestControl

WASI = "wasi_snapshot_preview1"

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


class VirtualWorld:
    """One guest's clocks and random source (see the module docstring)."""

    def __init__(self, seed: bytes, control: GuestControl) -> None:
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


def set_current_world(world: "VirtualWorld | None") -> None:
    """The world of the guest that runs on this thread from now on (None once it ended)."""
    _current.world = world


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


def new_linker(engine: wasmtime.Engine) -> wasmtime.Linker:
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
