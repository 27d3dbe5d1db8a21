"""Programs that try the WASM sandbox, shared by the executor's tests and the end-to-end tests: WebAssembly
modules (WAT) past its limits, and a Python program (run on CPython for WASI) making links in its outputs."""

# Grows each of its three memories by 300 pages (18.75 MiB), then each by 100 more (25 MiB each, 75 MiB
# in all); exits with the number of grows that succeeded.
THREE_MEMORIES = """
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory $a 0) (memory $b 0) (memory $c 0)
  (func $ok (param i32) (result i32) (i32.ne (local.get 0) (i32.const -1)))
  (func (export "_start")
    (call $exit
      (i32.add
        (i32.add
          (i32.add (call $ok (memory.grow $a (i32.const 300))) (call $ok (memory.grow $b (i32.const 300))))
          (i32.add (call $ok (memory.grow $c (i32.const 300))) (call $ok (memory.grow $a (i32.const 100)))))
        (i32.add (call $ok (memory.grow $b (i32.const 100))) (call $ok (memory.grow $c (i32.const 100))))))))
"""

# Grows its table by a million entries; exits 1 when refused (table.grow gave -1), else 0.
TABLE_GROW = """
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (table 1 funcref)
  (func (export "_start")
    (call $exit (i32.eq (table.grow (ref.null func) (i32.const 1000000)) (i32.const -1)))))
"""

# Makes a relative link, a link to /etc and a link to the parent in /outputs; prints what WASI allowed.
PYTHON_LINKS = """\
import os
open("/outputs/ok.txt", "w").write("ok")
made = []
for target, name in (("ok.txt", "/outputs/rel"), ("/etc", "/outputs/etc"), ("..", "/outputs/up")):
    try:
        os.symlink(target, name)
        made.append(name)
    except OSError as exc:
        print("refused", name, exc)
print("made", " ".join(made))
"""
