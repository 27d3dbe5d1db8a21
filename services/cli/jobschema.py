"""A JSON Schema (draft 2020-12) of Bacalhau job files, generated from the proto descriptors of
`bacalhau.model.v1beta1.Job`, so it follows the model as it changes.

It describes the canonical flat shape that `jobfile.dump_job` writes (and `--dry-run` prints), as strictly
as v0.3's `validate` did: keys are the Go json names exactly (`inputs`, `path`, `ShardsTotal`), every
object has `additionalProperties: false`, enum values are their Go text (`Docker`, `URLDownload`, case
as written), `APIVersion` is required, timestamps are RFC 3339 text, bytes are base64 text, 64-bit
integers are JSON numbers within their range, and maps are objects (integer keys as decimal text).
`create` is more forgiving (any key or enum case, v0.3.15's nested shape); see `cli.validate`.
"""

import copy
from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.model.enums import BY_PROTO_ENUM

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:bacalhau-grpc:job:v1beta1"
REQUIRED = {"Job": ("APIVersion",)}
_F = FieldDescriptor
_TIMESTAMP = "google.protobuf.Timestamp"
_INT_RANGES = {
    _F.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    _F.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    _F.CPPTYPE_UINT32: (0, 2**32 - 1),
    _F.CPPTYPE_UINT64: (0, 2**64 - 1),
}
RFC3339 = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
BASE64 = r"^[A-Za-z0-9+/\r\n]*={0,2}[\r\n]*$"


def job_schema() -> dict[str, Any]:
    """The schema of a Job document (the root), with every message it uses under `$defs`."""
    return _schema(pb.Job.DESCRIPTOR)


def job_with_info_schema() -> dict[str, Any]:
    """The schema of a JobWithInfo document (a top-level `Job` key holding the Job)."""
    return _schema(pb.JobWithInfo.DESCRIPTOR)


@cache
def _cached(root: Descriptor) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    _define(root, defs)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{SCHEMA_ID}:{root.name}",
        "title": f"Bacalhau {root.name} ({root.full_name})",
        "description": "A Bacalhau v0.3 job file in the canonical flat shape (bacalhau-grpc).",
        "$ref": f"#/$defs/{root.name}",
        "$defs": dict(sorted(defs.items())),
    }


def _schema(root: Descriptor) -> dict[str, Any]:
    return copy.deepcopy(_cached(root))


def _define(message: Descriptor, defs: dict[str, Any]) -> None:
    if message.name in defs:
        if defs[message.name].get("x-proto") != message.full_name:  # pragma: no cover - a model change
            raise ValueError(f"two model messages are both named {message.name}")
        return
    definition: dict[str, Any] = {
        "type": "object",
        "x-proto": message.full_name,
        "properties": {},
        "additionalProperties": False,
    }
    defs[message.name] = definition
    for field in message.fields:
        definition["properties"][field.json_name] = _field(field, defs)
    required = REQUIRED.get(message.name)
    if required:
        definition["required"] = list(required)


def _field(field: FieldDescriptor, defs: dict[str, Any]) -> dict[str, Any]:
    if field.cpp_type == _F.CPPTYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        schema: dict[str, Any] = {"type": "object", "additionalProperties": _value(value, defs)}
        if key.cpp_type in _INT_RANGES:
            schema["propertyNames"] = {"pattern": r"^-?[0-9]+$"}
        elif key.cpp_type == _F.CPPTYPE_BOOL:
            schema["propertyNames"] = {"enum": ["true", "false"]}
        return schema
    if field.is_repeated:
        return {"type": "array", "items": _value(field, defs)}
    return _value(field, defs)


def _value(field: FieldDescriptor, defs: dict[str, Any]) -> dict[str, Any]:
    kind = field.cpp_type
    if kind == _F.CPPTYPE_MESSAGE:
        if field.message_type.full_name == _TIMESTAMP:
            return {"type": "string", "format": "date-time", "pattern": RFC3339}
        _define(field.message_type, defs)
        return {"$ref": f"#/$defs/{field.message_type.name}"}
    if kind == _F.CPPTYPE_ENUM:
        go_enum = BY_PROTO_ENUM.get(field.enum_type.full_name)
        if go_enum is None:  # Go writes this enum as its number
            return {"type": "integer", "enum": [value.number for value in field.enum_type.values]}
        return {"type": "string", "enum": go_enum.names()}
    if field.type == _F.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64", "pattern": BASE64}
    if kind == _F.CPPTYPE_STRING:
        return {"type": "string"}
    if kind == _F.CPPTYPE_BOOL:
        return {"type": "boolean"}
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        return {"type": "integer", "minimum": low, "maximum": high}
    if kind in (_F.CPPTYPE_DOUBLE, _F.CPPTYPE_FLOAT):
        return {"type": "number"}
    raise ValueError(f"unsupported field type {field.type} of {field.full_name}")  # pragma: no cover
