"""The commands that need no network, as a user runs them (real `bacalhau-grpc` subprocesses): `validate`
(create's verdict, run locally), `wasm validate` and its exit codes, `--dry-run`, and every new command's
`--help` with examples."""

import json
from pathlib import Path

import jsonschema
import pytest

from tests.e2e.cli_support import clean_env, run_cli

WASM = Path(__file__).resolve().parent.parent / "wasm"
DATA = Path(__file__).resolve().parent.parent / "data"


def cli(*args: str, input: str | None = None):
    return run_cli(*args, env=clean_env(), input=input)


def test_dry_run_output_is_valid_from_a_file_and_from_stdin(tmp_path):
    dry = cli(
        "docker",
        "run",
        "--dry-run",
        "-i",
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
        "ubuntu",
        "--",
        "ls",
    )
    assert dry.returncode == 0, dry.stderr
    for name in ("job.yaml", "job.yml"):
        (tmp_path / name).write_text(dry.stdout)
        checked = cli("validate", str(tmp_path / name))
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, "The Job is valid\n", "")
    piped = cli("validate", input=dry.stdout)
    assert (piped.returncode, piped.stdout) == (0, "The Job is valid\n")
    wasm = cli("wasm", "run", "--dry-run", str(WASM / "hello.wasm"), "x")
    assert wasm.stdout.startswith(f"# {WASM / 'hello.wasm'} is uploaded with the job as its context")
    # the module travels beside the file: the file alone is what create would refuse, and validate says so
    assert cli("validate", "-", input=wasm.stdout).stdout == (
        "The Job is not valid. See errors:\n"
        "- Spec.Contexts: WASM job expects one context containing code to run\n"
    )


def test_validate_lists_every_error_of_a_bad_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "Spec": {"engine": "Docker", "Publisher": "S3", "Docker": {"Image": ["x"]}},
                "Deal": {"Concurrency": 1.5},
            }
        )
    )
    checked = cli("validate", str(bad))
    assert checked.returncode == 1
    lines = checked.stdout.splitlines()
    assert lines[0] == "The Job is not valid. See errors:"
    assert lines[1:] == [
        "- Spec.Publisher: unknown Publisher 'S3'; valid values: Noop, Ipfs, Filecoin, Estuary, Local",
        "- Spec.Docker.Image: expected a string, got a list",
        "- Deal.Concurrency: expected an integer, got number 1.5",
    ]


def test_validate_reads_v0315s_nested_shape_in_any_case_as_create_does():
    # that file writes enum values in lower case and keys as `Inputs`: create reads it, so validate does
    nested = cli("validate", str(DATA / "bacalhau_v0315_nested_job.yaml"))
    assert (nested.returncode, nested.stdout) == (0, "The Job is valid\n")
    assert cli("validate", str(DATA / "bacalhau_v03_job.yaml")).stdout == "The Job is valid\n"


def test_validate_refuses_what_it_cannot_read(tmp_path):
    (tmp_path / "job.txt").write_text("{}")
    wrong = cli("validate", str(tmp_path / "job.txt"))
    assert wrong.returncode == 1
    assert wrong.stderr == (
        "Error: File extension (.txt) not supported. The file must end in either .yaml, .yml or .json.\n"
    )
    missing = cli("validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and missing.stderr.startswith("Error: cannot read")


def test_output_schema_prints_the_json_schema():
    printed = cli("validate", "--output-schema")
    assert printed.returncode == 0
    schema = json.loads(printed.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$ref"] == "#/$defs/Job"
    assert schema["$defs"]["Spec"]["properties"]["Engine"]["enum"] == [
        "Noop",
        "Docker",
        "Wasm",
        "Language",
        "PythonWasm",
    ]


@pytest.mark.parametrize(
    ("module", "extra", "code", "said"),
    [
        ("hello.wasm", (), 0, "OK"),
        ("entry_points.wasm", ("--entry-point", "greet"), 0, "OK"),
        ("hello.c", (), 1, "is not a WebAssembly module"),
        ("missing.wasm", (), 1, "cannot read"),
        ("unresolved_import.wasm", (), 2, "no export found for 'env::missing_function' required by module"),
        (
            "entry_points.wasm",
            (),
            2,
            "function '_start' required but no WASM export with that name was found",
        ),
        ("entry_points.wasm", ("--entry-point", "add"), 2, "function 'add' should take 0 parameters"),
    ],
)
def test_wasm_validate_exit_codes(module, extra, code, said):
    checked = cli("wasm", "validate", str(WASM / module), *extra)
    assert checked.returncode == code, checked.stdout + checked.stderr
    if code == 0:
        assert (checked.stdout, checked.stderr) == ("OK\n", "")
    else:
        assert checked.stdout == "" and checked.stderr.startswith("Error: ") and said in checked.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("create",),
        ("validate",),
        ("docker", "run"),
        ("wasm", "run"),
        ("wasm", "validate"),
        ("run", "python"),
    ],
)
def test_every_submitting_command_has_help_with_examples(command):
    shown = cli(*command, "--help")
    assert shown.returncode == 0
    assert "examples:\n" in shown.stdout
    assert f"bacalhau-grpc {' '.join(command)}" in shown.stdout
