"""`validate`: the verdict `create` gives, every problem listed; the job JSON Schema it prints."""

import io
import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings

from bacalhau_grpc.cli import jobschema, submit
from bacalhau_grpc.cli.flags import CommandError
from bacalhau_grpc.cli.validate import validate_text
from bacalhau_grpc.cli.wasm_validate import validate as validate_module
from bacalhau_grpc.common.model import enums, jobfile, pb
from tests.strategies import messages

DATA = Path(__file__).resolve().parents[2] / "data"
WASM = Path(__file__).resolve().parents[2] / "wasm"

# An example Docker job in Bacalhau v0.3.15's nested shape, written as the schema spells keys and enum
# values.
NESTED = """\
APIVersion: V1beta1
Metadata:
  ID: 92d5d4ee-3765-4f78-8353-623f5f26df08
  CreatedAt: "2022-11-17T13:29:01.871140291Z"
Spec:
  Engine: Docker
  Verifier: Deterministic
  Publisher: Ipfs
  Docker:
    Image: alpine:3.17
    Entrypoint: ["sh", "-c", "wc -l /inputs/data/*.csv > /outputs/counts.txt"]
    EnvironmentVariables: ["LC_ALL=C"]
    WorkingDirectory: /
  Resources:
    CPU: 250m
    Memory: 256Mb
  Timeout: 600
  inputs:
    - StorageSource: IPFS
      CID: QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG
      path: /inputs/data
  outputs:
    - StorageSource: IPFS
      Name: outputs
      path: /outputs
  Annotations: [example]
  Sharding:
    GlobPattern: "data/*.csv"
    GlobPatternBasePath: /inputs
    BatchSize: 2
  Deal:
    Concurrency: 2
    Confidence: 2
    MinBids: 2
Status:
  Requester:
    RequesterNodeID: QmXaXu9N5GNetatsvwnTfQqNtSeKAD6uCmarbh3LMRYAcF
"""


def test_the_schema_is_valid_and_follows_the_model():
    schema = jobschema.job_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    job = schema["$defs"]["Job"]
    assert list(job["properties"]) == [field.json_name for field in pb.Job.DESCRIPTOR.fields]
    assert job["required"] == ["APIVersion"] and job["additionalProperties"] is False
    spec = schema["$defs"]["Spec"]["properties"]
    assert spec["Engine"] == {"type": "string", "enum": enums.ENGINE.names()}
    assert "Local" in spec["Publisher"]["enum"]
    assert spec["inputs"] == {"type": "array", "items": {"$ref": "#/$defs/StorageSpec"}}
    assert schema["$defs"]["Job"]["properties"]["CreatedAt"]["format"] == "date-time"
    assert schema["$defs"]["JobNodeState"]["properties"]["Shards"]["propertyNames"] == {
        "pattern": r"^-?[0-9]+$"
    }
    assert all(d["additionalProperties"] is False for d in schema["$defs"].values())
    json.dumps(schema)  # printable by --output-schema


JOBFILES = DATA / "jobfiles"
GOOD = sorted((JOBFILES / "good").iterdir())
BAD = sorted(path for path in (JOBFILES / "bad").iterdir() if path.suffix != ".problems")


def create_verdict(text: str) -> list[str]:
    """What `create` says of a job file before sending it: the problems of reading it, else the problems
    the requester's checks find (run locally, as `create` runs them)."""
    try:
        submit.verify(submit.prepare_job(text.encode(), warn=io.StringIO()))
    except CommandError as err:
        return [line.removeprefix("- ") for line in str(err).splitlines() if "problems:" not in line]
    return []


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_job_files_are_valid_for_validate_and_create(path):
    assert validate_text(path.read_text()) == []
    assert create_verdict(path.read_text()) == []


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_job_files_list_every_problem_for_validate_and_create_alike(path):
    expected = path.with_name(path.name + ".problems").read_text().splitlines()
    assert validate_text(path.read_text()) == expected
    found = create_verdict(path.read_text())
    assert [line.removeprefix("The job provided is invalid: ") for line in found] == expected


def test_the_seed_shaped_job_file_and_the_nested_shape_are_valid():
    assert validate_text((DATA / "bacalhau_v03_job.yaml").read_text()) == []
    assert validate_text(NESTED) == []
    assert validate_text(json.dumps(jobfile.message_to_dict(jobfile.load_job(NESTED)))) == []


def test_a_job_with_info_document_is_checked_as_its_job():
    job = jobfile.message_to_dict(jobfile.load_job(NESTED))
    assert validate_text(json.dumps({"Job": job, "JobEvents": [{"EventName": "Created"}]})) == []
    bad = {"Job": {**job, "Spec": {"Engine": "Dockr"}}, "JobEvents": [{"EventName": "X"}]}
    assert validate_text(json.dumps(bad)) == [
        "Job.Spec.Engine: unknown Engine 'Dockr'; valid values: Noop, Docker, Wasm, Language, PythonWasm",
        "JobEvents[0].EventName: unknown JobEventType 'X'; valid values: "
        + ", ".join(enums.JOB_EVENT_TYPE.names()),
    ]


def test_any_case_and_a_missing_api_version_are_create_s_reading():
    text = "spec: {engine: NOOP, verifier: noop, docker: {image: x}}\ndeal: {CONCURRENCY: 2}\n"
    assert validate_text(text) == []
    warnings = io.StringIO()
    assert validate_text("ID: abc\n" + text, warn=warnings) == []
    assert "will be ignored on creation: ID" in warnings.getvalue()


def test_errors_in_the_nested_shape_name_the_keys_as_written():
    text = NESTED.replace("Concurrency: 2", "Concurrency: two").replace("  ID: 92d5", "  Foo: 1\n  ID: 92d5")
    found = validate_text(text)
    assert [line.split(":")[0] for line in found] == ["Metadata.Foo", "Spec.Deal.Concurrency"]
    assert found[1] == "Spec.Deal.Concurrency: expected an integer, got string 'two'"
    twice = NESTED + "Deal: {Concurrency: 1}\n"
    assert validate_text(twice) == [
        "Deal: Deal is given twice with different values, at Spec.Deal and Deal; give it once"
    ]


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        ("", ["the job document is empty"]),
        ("[1]", ["a job document must be a mapping of field names to values, got a list"]),
        ("{", None),
    ],
)
def test_what_is_not_a_job_document(text, errors):
    found = validate_text(text)
    if errors is None:
        assert len(found) == 1 and found[0].startswith("malformed JSON at line 1")
    else:
        assert found == errors


@settings(max_examples=60)
@given(messages(pb.Job, max_depth=4, max_items=2))
def test_validate_and_create_agree_on_every_job_the_model_can_hold(job):
    for text in (jobfile.dump_job(job, format="yaml"), jobfile.dump_job(job, format="json")):
        assert bool(validate_text(text)) == bool(create_verdict(text))


@pytest.mark.parametrize(
    ("module", "entry_point", "code", "message"),
    [
        ("hello.wasm", "_start", 0, "OK"),
        ("entry_points.wasm", "greet", 0, "OK"),
        ("hello.c", "_start", 1, "is not a WebAssembly module"),
        ("missing.wasm", "_start", 1, "cannot read"),
        (
            "unresolved_import.wasm",
            "_start",
            2,
            "no export found for 'env::missing_function' required by module",
        ),
        ("uses_math.wasm", "_start", 2, "no export found for 'math::add'"),
        ("entry_points.wasm", "_start", 2, "function '_start' required but no WASM export with that name"),
        ("entry_points.wasm", "add", 2, "function 'add' should take 0 parameters, it takes 2"),
        ("entry_points.wasm", "answer", 2, "function 'answer' should return 0 results, it returns 1"),
    ],
)
def test_wasm_validate_verdicts(module, entry_point, code, message):
    verdict = validate_module(WASM / module, entry_point)
    assert verdict.code == code
    assert message in verdict.message
