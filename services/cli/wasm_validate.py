"""`wasm validate FILE [--entry-point NAME]`: checks a WebAssembly module on this machine, as a compute node
would load it, with v0.3's exit codes:

* 0 and "OK": it compiles, everything it imports is a WASI preview 1 function with the right signature,
  and the entry point is an exported function taking and returning nothing;
* 1: the file cannot be read, or is not a module wasmtime can compile;
* 2: an import nothing provides (v0.3's "no export found for 'ns::fn' required by module"; import
  modules given to `wasm run -I/-U` are not known here), or a bad entry point;
* 3: the WASI runtime cannot be set up.

Compiling and the entry-point rule are the WASM executor's own (`compute.executors.wasm_modules`), so a
module that passes here loads on a node.
"""

from dataclasses import dataclass
from pathlib import Path

import wasmtime

EXIT_OK, EXIT_LOAD, EXIT_IMPORTS, EXIT_RUNTIME = 0, 1, 2, 3


@dataclass(frozen=True)
class Verdict:
    code: int
    message: str = "OK"


def validate(path: Path, entry_point: str = "_start") -> Verdict:
    # the executor's rules (loaded only for this command: they bring wasmtime's engine setup)
    from bacalhau_grpc.compute.domain.runs import ExecutorError
    from bacalhau_grpc.compute.executors.wasm_clocks import WASI
    from bacalhau_grpc.compute.executors.wasm_modules import check_entry_point, compile_module

    try:
        data = path.read_bytes()
    except OSError as err:
        return Verdict(EXIT_LOAD, f"cannot read {path}: {err.strerror or err}")
    engine = wasmtime.Engine()
    try:
        module = compile_module(engine, data, str(path))
    except ExecutorError as err:
        return Verdict(EXIT_LOAD, str(err))
    try:
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        store = wasmtime.Store(engine)
    except wasmtime.WasmtimeError as err:
        return Verdict(EXIT_RUNTIME, f"cannot set up the WASI runtime: {err}")
    for item in module.imports:
        problem = _import_problem(linker, store, item, WASI)
        if problem:
            return Verdict(EXIT_IMPORTS, problem)
    try:
        check_entry_point(module, entry_point)
    except ExecutorError as err:
        return Verdict(EXIT_IMPORTS, str(err))
    return Verdict(EXIT_OK)


def _import_problem(
    linker: wasmtime.Linker, store: wasmtime.Store, item: wasmtime.ImportType, wasi: str
) -> str:
    name = f"{item.module}::{item.name}"
    wanted = item.type
    provided = None
    if item.module == wasi and item.name is not None:
        try:
            provided = linker.get(store, item.module, item.name)
        except wasmtime.WasmtimeError:
            provided = None
    if provided is None:
        hint = (
            ""
            if item.module == wasi
            else " (only WASI preview 1 is provided; import modules are not known here)"
        )
        return f"no export found for '{name}' required by module{hint}"
    have = provided.type() if isinstance(provided, wasmtime.SharedMemory) else provided.type(store)
    if not (isinstance(wanted, wasmtime.FuncType) and isinstance(have, wasmtime.FuncType)):
        return f"the import '{name}' is not a function, but WASI provides one"
    if _signature(wanted) != _signature(have):
        return f"the import '{name}' has the signature {_show(wanted)}, but WASI's is {_show(have)}"
    return ""


def _signature(kind: wasmtime.FuncType) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(str(p) for p in kind.params), tuple(str(r) for r in kind.results)


def _show(kind: wasmtime.FuncType) -> str:
    params, results = _signature(kind)
    return f"({', '.join(params)}) -> ({', '.join(results)})"
