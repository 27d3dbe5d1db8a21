"""Stopping one running WASM guest without touching the others: its deadline and stop flag
(`GuestControl`), the epoch-deadline callback that reads them on the guest's own thread, and the one ticker
thread that advances the engine's epoch.

One ticker thread increments the engine's epoch every TICK_SECONDS while any guest runs (`EpochTicker`).
Every store gets an epoch-deadline *callback* (the C API's `wasmtime_store_epoch_deadline_callback`;
wasmtime-py 50.0.1 binds it in its private `_ffi` module but does not wrap it) and a deadline one tick
ahead (`watch`). Each tick the callback runs on the guest's own thread and looks at that guest's
`GuestControl`: past its deadline or asked to stop, it returns an error (the guest unwinds with it);
otherwise it sets the next deadline a tick ahead. So a timeout or a cancel stops exactly one guest, within
about a tick, while the others keep running.

  Why not the simpler "set that store's deadline to 0, then increment the epoch" from the event loop:
  tried here, it does not stop a guest spinning in a tight loop. Compiled code keeps the store's
  deadline in a register and reloads it only once the epoch passes the old deadline, so lowering the
  deadline from another thread goes unseen (and bumping the epoch alone would hit every store whose
  deadline is due, not just the one to stop).

  Caveat: epochs are only checked while wasm code runs. A guest blocked inside a host call is stopped
  when the call returns. The calls that could block for long (sleeps and polls) never wait here (see
  `wasm_clocks`), and stdin is empty. The callback holds the GIL for a few microseconds per tick per guest.
"""

import ctypes
import enum
import itertools
import threading
import time
from typing import Any

import wasmtime
import wasmtime._bindings as wasmtime_bindings
from wasmtime import _ffi as wasmtime_ffi

# The ticker's period; a timeout or cancel stops a guest within about this long.
TICK_SECONDS = 0.01
# Ticks between two looks at a guest's deadline and stop flag.
CHECK_EVERY_TICKS = 1


class Stop(enum.Enum):
    """Why a guest was stopped; the value is the error the epoch callback unwinds the guest with."""

    TIMEOUT = "the execution timed out"
    CANCELLED = "the execution was cancelled"
    EXITED = "the module exited"  # it called proc_exit (not an interruption: its exit code is the result)


class GuestControl:
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
_watched: dict[int, GuestControl] = {}
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


def watch(store: wasmtime.Store, control: GuestControl) -> int:
    """Gives the store the epoch-deadline callback, looking at `control`; returns the handle for `unwatch`."""
    handle = next(_handles)
    _watched[handle] = control
    wasmtime_ffi.wasmtime_store_epoch_deadline_callback(
        store.ptr(), _on_epoch_deadline, handle, _NO_FINALIZER
    )
    store.set_epoch_deadline(CHECK_EVERY_TICKS)
    return handle


def unwatch(handle: int) -> None:
    """Forgets the guest `watch` gave `handle` (once its store is closed)."""
    _watched.pop(handle, None)


class EpochTicker:
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
