"""Compiled WASM modules: compiling and checking a module, reading its name and memories, and the cache of
compiled modules (in memory, and on disk for the big ones) that the runtime loads them through.

Compiled code depends on the engine's config, so every module is compiled by (or deserialized into) the
runtime's one engine. Compiled modules are kept by the SHA-256 of their bytes in an in-memory LRU. Modules
loaded with `persist=True` (the 26 MB CPython interpreter: ~10 s to compile on this machine) are also
serialized to `cache_dir/<sha256>-<engine tag>.cwasm`, which a later process maps back in about a
millisecond (`Module.deserialize_file`). A cache file that no longer fits the engine (another wasmtime
version or config) is recompiled and rewritten. wasmtime's own `Config.cache` is not used: it keeps its
files under the user's home directory; this cache lives where the node says. Deserializing runs the
native code in the file, so the cache folder must be writable by the node only (it is made 0700).

A module (or import module) bigger than the cache's `max_module_bytes` (default DEFAULT_MAX_MODULE_BYTES,
64 MiB; the CPython interpreter is 26 MB) is refused before it is read.
"""

import contextlib
import fcntl
import hashlib
import importlib.metadata
import io
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import wasmtime

from bacalhau_grpc.common.files import write_atomically
from bacalhau_grpc.compute.domain.runs import ExecutorError

log = logging.getLogger(__name__)

WASM_MAGIC = b"\0asm"
WASMTIME_VERSION = importlib.metadata.version("wasmtime")
# Names the engine config in the on-disk cache file names (deserialize checks compatibility too).
ENGINE_TAG = f"wasmtime{WASMTIME_VERSION}-epochs"
# Compiled modules kept in memory.
DEFAULT_MODULE_CACHE_ENTRIES = 64
# A module (or import module) bigger than this is refused before it is read or compiled.
DEFAULT_MAX_MODULE_BYTES = 64 * 2**20


@dataclass(frozen=True, slots=True)
class LoadedModule:
    """A compiled module, with what the runtime needs to know of it."""

    module: wasmtime.Module
    digest: str
    # The name in the module's `name` section (None when it has none, or came from the disk cache).
    declared_name: str | None = None
    # Linear memories the module defines (not imports).
    memories: int = 1


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
            _keep(cache_file, module.serialize())
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
        raise ExecutorError(f"{label} is not a WebAssembly module: {wasmtime_cause(error)}") from None


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


def _keep(cache_file: Path, data: bytes | bytearray) -> None:
    """Writes a compiled module to the on-disk cache; a failure is logged (the module still runs)."""
    try:
        cache_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(cache_file, data, private=True)
    except OSError as error:
        log.warning("could not keep the compiled module in %s: %s", cache_file, error)


def wasmtime_cause(error: BaseException) -> str:
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
