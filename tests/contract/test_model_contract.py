"""The proto model against the Go model documentation (the seed): types, enum numbers, json names."""

import re

import pytest

from bacalhau_grpc.common.model import enums, pb
from tests.contract import seed

PACKAGE = "bacalhau.model.v1beta1"
MESSAGES = {name: d for m in pb.MODULES for name, d in m.DESCRIPTOR.message_types_by_name.items()}
ENUMS = {name: d for m in pb.MODULES for name, d in m.DESCRIPTOR.enum_types_by_name.items()}
GO_ENUM_BY_TYPE = {
    "APIVersion": enums.API_VERSION,
    "Engine": enums.ENGINE,
    "Verifier": enums.VERIFIER,
    "Publisher": enums.PUBLISHER,
    "StorageSourceType": enums.STORAGE_SOURCE_TYPE,
    "JobStateType": enums.JOB_STATE_TYPE,
    "JobEventType": enums.JOB_EVENT_TYPE,
    "JobLocalEventType": enums.JOB_LOCAL_EVENT_TYPE,
    "JobSelectionDataLocality": enums.JOB_SELECTION_DATA_LOCALITY,
}
# The seed elides StorageSpec.Name's tag ("132-byte string literal not displayed"); Go's is "Name".
ELIDED_TAGS = {"StorageSpec": {1: "Name"}}
# Fields this implementation adds after a type's seed fields (as enums.BEYOND_SEED adds enum values): the
# client-chosen submission ID that makes a retried submission idempotent, inside the signed payload; the
# OpenTelemetry trace ID of the job's one trace, answered with the job.
BEYOND_SEED_FIELDS = {"JobCreatePayload": ["SubmissionID"], "JobWithInfo": ["TraceID", "EventCount"]}


def upper_snake(camel: str) -> str:
    """`PythonWasm` → `PYTHON_WASM`, `URLDownload` → `URL_DOWNLOAD`, `V1alpha1` → `V1ALPHA1`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", camel).upper()


def test_the_seed_is_readable():
    assert len(seed.index_types()) >= 40, "the seed's index should list every pkg/model type"


@pytest.mark.parametrize("go_type", seed.index_types())
def test_every_seed_type_has_a_proto_counterpart(go_type):
    if go_type in seed.NOT_DATA:
        assert go_type not in MESSAGES and go_type not in ENUMS, seed.NOT_DATA[go_type]
        return
    descriptor = MESSAGES.get(go_type) or ENUMS.get(go_type)
    assert descriptor is not None, f"seed type {go_type} has no message or enum in {PACKAGE}"
    assert descriptor.full_name == f"{PACKAGE}.{go_type}"


@pytest.mark.parametrize("go_type", sorted(seed.ENUM_CONST_PREFIX))
def test_enum_values_and_numbers_follow_go_iota(go_type):
    enum = ENUMS[go_type]
    constants = seed.enum_constants(go_type) + list(enums.BEYOND_SEED.get(go_type, ()))
    prefix = upper_snake(go_type)
    explicit_zero = go_type == "JobSelectionDataLocality"  # Go numbers it itself: Local = 0
    first = 0 if explicit_zero else 1
    if not explicit_zero:
        assert enum.values_by_number[0].name == f"{prefix}_UNSPECIFIED"
    expected = {f"{prefix}_{upper_snake(c)}": first + i for i, c in enumerate(constants)}
    actual = {v.name: v.number for v in enum.values if not v.name.endswith("_UNSPECIFIED")}
    assert actual == expected


@pytest.mark.parametrize("go_type", sorted(GO_ENUM_BY_TYPE))
def test_go_text_forms_are_the_seed_constants_without_prefix(go_type):
    go_enum = GO_ENUM_BY_TYPE[go_type]
    constants = seed.enum_constants(go_type) + list(enums.BEYOND_SEED.get(go_type, ()))
    assert [name.lower() for name in go_enum.names()] == [c.lower() for c in constants]
    assert go_enum.types() == [
        ENUMS[go_type].values_by_name[f"{upper_snake(go_type)}_{upper_snake(c)}"].number for c in constants
    ]


@pytest.mark.parametrize("go_type", seed.documented_structs())
def test_every_seed_field_exists_with_its_json_name_in_order(go_type):
    expected = seed.struct_json_tags(go_type)
    for position, tag in ELIDED_TAGS.get(go_type, {}).items():
        expected.insert(position, tag)
    expected += BEYOND_SEED_FIELDS.get(go_type, [])
    fields = MESSAGES[go_type].fields
    assert [f.json_name for f in fields] == expected


def test_go_zero_value_that_differs_from_protos_has_explicit_presence():
    exit_code = MESSAGES["RunCommandResult"].fields_by_name["exit_code"]
    assert exit_code.has_presence, "Go's exit code defaults to -1: unset must differ from 0"
    assert not pb.RunCommandResult().HasField("exit_code")
    assert pb.RunCommandResult(exit_code=0).HasField("exit_code")


def test_times_are_timestamps():
    for go_type, field in [
        ("Job", "created_at"),
        ("JobEvent", "event_time"),
        ("BuildVersionInfo", "build_date"),
    ]:
        assert MESSAGES[go_type].fields_by_name[field].message_type.full_name == "google.protobuf.Timestamp"
