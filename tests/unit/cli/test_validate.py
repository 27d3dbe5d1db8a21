"""The job JSON Schema (generated from the proto descriptors) and `validate`'s error list."""

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings

from bacalhau_grpc.cli import jobschema
from bacalhau_grpc.cli.validate import validate_document, validate_text
from bacalhau_grpc.cli.wasm_validate import validate as validate_module
from bacalhau_grpc.common.model import enums, jobfile, pb
from tests.strategies import messages

DATA = Path(__file__).resolve().parents[2] / "data"
WASM = Path(__file__).resolve().parents[2] / "wasm"

# v0.3.15's nested shape, written as the schema spells keys and enum values (reference §10's example).
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
      CID: QmPlaceholderCidForADirectoryOfCsvFilesXXXXXXXXX
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


def test_the_seed_shaped_job_file_and_the_nested_shape_are_valid():
    assert validate_text((DATA / "bacalhau_v03_job.yaml").read_text()) == []
    assert validate_text(NESTED) == []
    assert validate_text(json.dumps(jobfile.message_to_dict(jobfile.load_job(NESTED))), "json") == []


def test_a_job_with_info_document_is_checked_as_one():
    job = jobfile.message_to_dict(jobfile.load_job(NESTED))
    assert validate_document({"Job": job, "JobEvents": [{"EventName": "Created"}]}) == []
    assert validate_document(
        {"Job": {**job, "Spec": {"Engine": "Dockr"}}, "JobEvents": [{"EventName": "X"}]}
    ) == [
        'Job.Spec.Engine: "Dockr" must be one of the following: "Noop", "Docker", "Wasm", "Language", '
        '"PythonWasm"',
        'JobEvents[0].EventName: "X" must be one of the following: '
        + ", ".join(json.dumps(name) for name in enums.JOB_EVENT_TYPE.names()),
    ]


def test_every_error_is_listed_with_where_it_is():
    text = """\
spec: {}
CreatedAt: yesterday
Spec:
  Engine: docker
  Docker: {Image: 5, Entrypoint: echo}
  Timeout: "10"
  inputs: [{StorageSource: IPFS, Path: /x}]
Deal: {Concurrency: "3"}
JobState: {Nodes: {n1: {Shards: {abc: {}}}}}
RequesterPublicKey: "not base64!"
"""
    hint = "validate is case-sensitive; create reads any case"
    assert validate_text(text) == [
        f'(root): additional property "spec" is not allowed (did you mean "Spec"? {hint})',
        "APIVersion is required",
        'CreatedAt: "yesterday" is not an RFC 3339 timestamp such as 2022-11-17T13:29:01.871140291Z',
        "Deal.Concurrency: invalid type, expected integer, given string",
        'JobState.Nodes.n1.Shards: the key "abc" is not a decimal integer',
        'RequesterPublicKey: "not base64!" is not base64 text',
        "Spec.Docker.Entrypoint: invalid type, expected array, given string",
        "Spec.Docker.Image: invalid type, expected string, given integer",
        'Spec.Engine: "docker" must be one of the following: "Noop", "Docker", "Wasm", "Language", '
        f'"PythonWasm" (did you mean "Docker"? {hint})',
        "Spec.Timeout: invalid type, expected number, given string",
        f'Spec.inputs[0]: additional property "Path" is not allowed (did you mean "path"? {hint})',
    ]


def test_errors_in_the_nested_shape_name_the_keys_as_written():
    text = NESTED.replace("Concurrency: 2", "Concurrency: two").replace("  ID: 92d5", "  Foo: 1\n  ID: 92d5")
    assert validate_text(text) == [
        'Metadata: additional property "Foo" is not allowed',
        "Spec.Deal.Concurrency: invalid type, expected integer, given string",
    ]
    twice = NESTED + "Deal: {Concurrency: 1}\n"
    assert validate_text(twice) == ["Deal: Deal is given twice (also at Spec.Deal)"]


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        ("", ["the job document is empty"]),
        ("[1]", ["(root): invalid type, expected object, given array"]),
        ("{", None),
    ],
)
def test_what_is_not_a_job_document(text, errors):
    found = validate_text(text)
    if errors is None:
        assert len(found) == 1 and found[0].startswith("the file cannot be read as JSON or YAML")
    else:
        assert found == errors


@settings(max_examples=60)
@given(messages(pb.Job, max_depth=4, max_items=2))
def test_every_job_the_model_can_hold_is_valid_as_dump_job_writes_it(job):
    job.api_version = job.api_version or "V1beta1"
    assert validate_text(jobfile.dump_job(job, format="yaml")) == []
    assert validate_text(jobfile.dump_job(job, format="json"), "json") == []


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
