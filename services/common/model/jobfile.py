"""Bacalhau v0.3 job documents (YAML or JSON) to and from model messages.

The codec is generic: it walks message descriptors, and every proto field's `json_name` is the Go
json tag, so a message's dict has Go's keys (`inputs`, `path`, `ShardsTotal`, `exitCode`, ...).

Writing (`message_to_dict`, `dump_job`), as Go's encoding/json writes the model:

* enums as their Go text (`Docker`, `URLDownload`); an enum Go has no text for
  (`JobSelectionDataLocality`) as its number; a value outside a text enum as Go's `Engine(9)`;
* bytes as standard base64 (Go's `[]byte` and `PublicKey`);
* `google.protobuf.Timestamp` as RFC 3339 in UTC with up to nine fractional digits, trailing zeros
  dropped, and `Z` (Go's `time.Time`: `2022-11-17T13:29:01.871140291Z`);
* 64-bit integers as JSON numbers; a whole `double` as an integer (`Timeout: 600`), as Go does;
* maps as objects, integer keys as decimal strings, keys sorted as strings (Go's order);
* fields at their proto3 default are left out (unset submessages, empty lists and maps, 0, "",
  false), except `optional` fields that are set (`RunCommandResult.exitCode: 0` is written).

Reading (`dict_to_message`, `load_job`, ...), as Go's encoding/json reads it:

* keys match the json names exactly first, then ignoring case; an unknown key is an error naming its
  dotted path (`Spec.Docker.Imagee`) and the valid keys; a field given twice (`Spec` and `spec`)
  must have the same value both times;
* enum text ignores case; null means "unset"; timestamps are RFC 3339 with any offset and up to
  nine fractional digits; bytes are standard base64; integers must fit the field's type;
* a wrong type (a string where a list belongs, a float for an integer, ...) is an error naming the
  path and the expected type;
* a `Job` is read in both shapes: the seed's flat one (canonical) and v0.3.15's nested one
  (`Metadata`, `Status`, `Deal` and `ExecutionPlan` inside `Spec`); see `_job_entries`.

Job documents go through Go's `sigs.k8s.io/yaml`, which also turns a number or boolean into text
where a string field expects it (`GPU: 1`); the `load_*` functions do the same.

Every error is an `InvalidArgumentError` (or `LimitExceededError` for the size limits) whose
`field` is the dotted path of the offending value.
"""

import base64
import binascii
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal, TypeVar

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from bacalhau_grpc.common.errors import InvalidArgumentError, LimitExceededError, invalid_argument
from bacalhau_grpc.common.model import pb, serialization
from bacalhau_grpc.common.model.enums import BY_PROTO_ENUM

Format = Literal["auto", "json", "yaml"]
M = TypeVar("M", bound=Message)

_F = FieldDescriptor
_INT_RANGES = {
    _F.CPPTYPE_INT32: ("int32", -(2**31), 2**31 - 1),
    _F.CPPTYPE_INT64: ("int64", -(2**63), 2**63 - 1),
    _F.CPPTYPE_UINT32: ("uint32", 0, 2**32 - 1),
    _F.CPPTYPE_UINT64: ("uint64", 0, 2**64 - 1),
}
_TIMESTAMP = "google.protobuf.Timestamp"
# The zero value of one item of a repeated scalar field, by its C++ type (strings and bytes: empty).
_ZERO_BY_TYPE: dict[int, Any] = {
    _F.CPPTYPE_BOOL: False,
    _F.CPPTYPE_DOUBLE: 0.0,
    _F.CPPTYPE_FLOAT: 0.0,
    **dict.fromkeys(
        (_F.CPPTYPE_INT32, _F.CPPTYPE_INT64, _F.CPPTYPE_UINT32, _F.CPPTYPE_UINT64, _F.CPPTYPE_ENUM), 0
    ),
}
_JOB = pb.Job.DESCRIPTOR.full_name

# ---------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------


def message_to_dict(message: Message) -> dict[str, Any]:
    """The message as Go's encoding/json would write it, as plain data (deterministic)."""
    return _encode_message(message, "")


def dict_to_message(
    data: Any, message_class: type[M], *, path: str = "", scalars_as_strings: bool = False
) -> M:
    """Read plain data (parsed JSON or YAML) into a new `message_class`.

    `path` prefixes the field paths in error messages. `scalars_as_strings` accepts a number or
    boolean where a string belongs and keeps its text, like Go's YAML reader. Every bad value is found:
    the InvalidArgumentError raised lists them all (its `problems`), each naming its path.
    """
    message = message_class()
    decoder = _Decoder(scalars_as_strings)
    decoder.guard(decoder.fill, message, data, path)
    if decoder.problems:
        raise invalid_argument(decoder.problems)
    return message


def parse_job_document(data: Any) -> pb.Job | pb.JobWithInfo:
    """An already parsed job document: a `JobWithInfo` if it has a top-level `Job` key, else a `Job`."""
    if data is None:
        raise InvalidArgumentError("the job document is empty")
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(
            f"a job document must be a mapping of field names to values, got {_describe(data)}"
        )
    if any(_key_text(key, "").lower() == "job" for key in data):
        return dict_to_message(data, pb.JobWithInfo, scalars_as_strings=True)
    return dict_to_message(data, pb.Job, scalars_as_strings=True)


def load_job_document(text: str | bytes, *, format: Format = "auto") -> pb.Job | pb.JobWithInfo:
    """Parse a YAML or JSON job document into whichever of `Job` and `JobWithInfo` it holds.

    `format="auto"` reads JSON when the text is JSON and YAML otherwise (Go passes everything through
    its YAML reader; JSON is YAML).
    """
    return parse_job_document(_parse_text(text, format))


def load_job(text: str | bytes, *, format: Format = "auto") -> pb.Job:
    """The `Job` of a job document; for a `JobWithInfo` document, its inner `Job` (as Go's `create`)."""
    document = load_job_document(text, format=format)
    return document.job if isinstance(document, pb.JobWithInfo) else document


def load_job_with_info(text: str | bytes, *, format: Format = "auto") -> pb.JobWithInfo:
    """A job document as a `JobWithInfo`; a plain `Job` document becomes its `job`."""
    document = load_job_document(text, format=format)
    return document if isinstance(document, pb.JobWithInfo) else pb.JobWithInfo(job=document)


def dump_job(message: Message, format: Literal["yaml", "json"] = "yaml") -> str:
    """Write a `Job` or `JobWithInfo` (any model message works) in the flat canonical shape.

    JSON is indented by `JSON_INDENT_SPACE_NUMBER` spaces like Go's `JSONMarshalIndentWithMax`. A
    `JobWithInfo` always has its `Job` key (`null` when unset), so it reads back as a `JobWithInfo`.
    Output over `MaxSerializedStringOutput` is a `LimitExceededError`.
    """
    data = message_to_dict(message)
    if isinstance(message, pb.JobWithInfo) and "Job" not in data:
        data = {"Job": None, **data}  # the `Job` key is what marks a JobWithInfo document
    if format == "yaml":
        return serialization.yaml_marshal_with_max(data).decode("utf-8")
    if format == "json":
        return serialization.json_marshal_indent_with_max(data).decode("utf-8")
    raise InvalidArgumentError(f"unknown format {format!r}; use yaml or json")


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------


def _encode_message(message: Message, path: str) -> dict[str, Any]:
    present = {field.name for field, _ in message.ListFields()}
    return {
        field.json_name: _encode_field(field, getattr(message, field.name), _join(path, field.json_name))
        for field in message.DESCRIPTOR.fields
        if field.name in present
    }


def _encode_field(field: FieldDescriptor, value: Any, path: str) -> Any:
    if _is_map(field):
        value_field = field.message_type.fields_by_name["value"]
        keyed = sorted((_key_text(key, path), item) for key, item in value.items())
        return {key: _encode_value(value_field, item, f"{path}[{key}]") for key, item in keyed}
    if field.is_repeated:
        return [_encode_value(field, item, f"{path}[{i}]") for i, item in enumerate(value)]
    return _encode_value(field, value, path)


def _encode_value(field: FieldDescriptor, value: Any, path: str) -> Any:
    if field.cpp_type == _F.CPPTYPE_MESSAGE:
        if field.message_type.full_name == _TIMESTAMP:
            return _format_timestamp(value.seconds, value.nanos, path)
        return _encode_message(value, path)
    if field.cpp_type == _F.CPPTYPE_ENUM:
        go_enum = BY_PROTO_ENUM.get(field.enum_type.full_name)
        return go_enum.name(value) if go_enum else value
    if field.type == _F.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if field.cpp_type in (_F.CPPTYPE_DOUBLE, _F.CPPTYPE_FLOAT):
        return _encode_float(value, path)
    return value


def _encode_float(value: float, path: str) -> int | float:
    if not math.isfinite(value):
        raise InvalidArgumentError(f"cannot write {value}: JSON has no form for it", field=path)
    negative_zero = value == 0 and math.copysign(1.0, value) < 0
    if value.is_integer() and abs(value) < 1e21 and not negative_zero:
        return int(value)
    return value


# ---------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------


class _Decoder:
    """Fills messages from parsed JSON/YAML data; errors carry the dotted path of the bad value."""

    def __init__(self, scalars_as_strings: bool) -> None:
        self.scalars_as_strings = scalars_as_strings
        # Every bad value found so far: a bad field or item is noted and the rest is still read.
        self.problems: list[InvalidArgumentError] = []

    def guard(self, read: Any, *args: Any) -> None:
        """`read(*args)`, noting its problems instead of stopping (a size limit still stops it all)."""
        try:
            read(*args)
        except LimitExceededError:
            raise
        except InvalidArgumentError as err:
            self.problems.extend(err.problems)

    def fill(self, message: Message, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise _type_error("an object", data, path)
        if message.DESCRIPTOR.full_name == _JOB:
            entries = _job_entries(data, path, self.problems)
        else:
            entries = [(key, _join(path, key), value) for key, value in _text_keyed(data, path)]
        self.fill_entries(message, entries, path)

    def fill_entries(self, message: Message, entries: list[tuple[str, str, Any]], path: str) -> None:
        """Set each (key, source path, value); a field given more than once must agree."""
        descriptor = message.DESCRIPTOR
        given: dict[str, list[tuple[str, Any]]] = {}
        for key, source_path, value in entries:
            try:
                field = _find_field(descriptor, key, path)
            except InvalidArgumentError as err:
                self.problems.append(err)
                continue
            if value is not None:
                given.setdefault(field.name, []).append((source_path, value))
        for name, candidates in given.items():
            field = descriptor.fields_by_name[name]
            if len(candidates) == 1:
                source_path, value = candidates[0]
                self.guard(self.set_field, message, field, value, source_path)
            else:
                self.guard(self._merge_agreed, message, field, candidates)

    def _merge_agreed(self, message: Message, field: FieldDescriptor, candidates: list) -> None:
        message.MergeFrom(self._agreed(type(message), field, candidates))

    def _agreed(self, message_class: type[Message], field: FieldDescriptor, candidates: list) -> Message:
        first_path, first = None, None
        for source_path, value in candidates:
            single = message_class()
            self.set_field(single, field, value, source_path)
            if first is None:
                first_path, first = source_path, single
            elif single != first:
                raise InvalidArgumentError(
                    f"{field.json_name} is given twice with different values, at {first_path} and "
                    f"{source_path}; give it once",
                    field=source_path,
                )
        return first

    def set_field(self, message: Message, field: FieldDescriptor, value: Any, path: str) -> None:
        if value is None:
            return
        if _is_map(field):
            self.fill_map(getattr(message, field.name), field, value, path)
        elif field.is_repeated:
            if not isinstance(value, list | tuple):
                raise _type_error("a list", value, path)
            target = getattr(message, field.name)
            for i, item in enumerate(value):
                if field.cpp_type == _F.CPPTYPE_MESSAGE:
                    self.guard(self.fill_value, target.add(), item, f"{path}[{i}]")
                else:
                    self.guard(self._append_scalar, target, field, item, f"{path}[{i}]")
        elif field.cpp_type == _F.CPPTYPE_MESSAGE:
            submessage = getattr(message, field.name)
            submessage.SetInParent()
            self.fill_value(submessage, value, path)
        else:
            setattr(message, field.name, self.scalar(field, value, path))

    def _append_scalar(self, target: Any, field: FieldDescriptor, item: Any, path: str) -> None:
        target.append(self.scalar(field, item, path))

    def fill_value(self, message: Message, value: Any, path: str) -> None:
        """A message-typed value; null leaves it empty (Go's zero struct)."""
        if value is None:
            return
        if message.DESCRIPTOR.full_name == _TIMESTAMP:
            message.seconds, message.nanos = _parse_timestamp(value, path)
        else:
            self.fill(message, value, path)

    def fill_map(self, target: Any, field: FieldDescriptor, value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            raise _type_error("an object", value, path)
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        seen: dict[Any, Any] = {}
        for raw_key, item in value.items():
            key = _map_key(key_field, raw_key, path)
            item_path = f"{path}[{key}]"
            if key in seen:
                message = f"keys {seen[key]!r} and {raw_key!r} are the same key"
                raise InvalidArgumentError(message, field=item_path)
            seen[key] = raw_key
            if value_field.cpp_type == _F.CPPTYPE_MESSAGE:
                self.fill_value(target[key], item, item_path)
            else:
                target[key] = self.scalar(value_field, item, item_path)

    def scalar(self, field: FieldDescriptor, value: Any, path: str) -> Any:
        """A non-message value for `field`; null gives the field's zero value (a list's item too, as Go's
        encoding/json reads a null item of a []string as "")."""
        if value is None:
            if not field.is_repeated:
                return field.default_value
            return b"" if field.type == _F.TYPE_BYTES else _ZERO_BY_TYPE.get(field.cpp_type, "")
        kind = field.cpp_type
        if field.type == _F.TYPE_BYTES:
            return _parse_bytes(value, path)
        if kind == _F.CPPTYPE_STRING:
            if isinstance(value, str):
                return value
            if self.scalars_as_strings and isinstance(value, bool | int | float):
                return _key_text(value, path)
            raise _type_error("a string", value, path)
        if kind == _F.CPPTYPE_BOOL:
            if isinstance(value, bool):
                return value
            raise _type_error("a boolean (true or false)", value, path)
        if kind in _INT_RANGES:
            return _checked_int(kind, value, path)
        if kind in (_F.CPPTYPE_DOUBLE, _F.CPPTYPE_FLOAT):
            return _parse_float(value, path)
        if kind == _F.CPPTYPE_ENUM:
            return _parse_enum(field.enum_type, value, path)
        raise InvalidArgumentError(f"unsupported field type {field.type}", field=path)  # pragma: no cover


# v0.3.15's Job wrappers: the keys each holds (folded) and the flat Job field each key becomes.
_METADATA = {"id": "ID", "createdat": "CreatedAt", "clientid": "ClientID"}
_STATUS = {
    "jobstate": "JobState",
    "jobevents": "JobEvents",
    "localjobevents": "LocalJobEvents",
    "requester": "Requester",
}
_REQUESTER = {"requesternodeid": "RequesterNodeID", "requesterpublickey": "RequesterPublicKey"}
_LIFTED_FROM_SPEC = {"deal": "Deal", "executionplan": "ExecutionPlan"}


def _job_entries(
    data: Mapping, path: str, problems: list[InvalidArgumentError]
) -> list[tuple[str, str, Any]]:
    """(flat Job key, source path, value) for each value of a Job document, in either shape.

    v0.3.15 nests the Job: `Metadata{ID, CreatedAt, ClientID}`, `Spec{..., Deal, ExecutionPlan}` and
    `Status{JobState, JobEvents, LocalJobEvents, Requester{RequesterNodeID, RequesterPublicKey}}`.
    Those values become the flat Job's fields; the source path keeps where they were written. An unknown
    key inside a wrapper is added to `problems` and left out.
    """
    entries = []
    for key, value in _text_keyed(data, path):
        where = _join(path, key)
        folded = key.lower()
        if folded == "metadata":
            entries += _unwrap(value, where, _METADATA, problems)
        elif folded == "status":
            for flat_key, source_path, item in _unwrap(value, where, _STATUS, problems):
                if flat_key == "Requester":
                    entries += _unwrap(item, source_path, _REQUESTER, problems)
                else:
                    entries.append((flat_key, source_path, item))
        elif folded == "spec" and isinstance(value, Mapping):
            spec = {}
            for spec_key, item in _text_keyed(value, where):
                lifted = _LIFTED_FROM_SPEC.get(spec_key.lower())
                if lifted:
                    entries.append((lifted, _join(where, spec_key), item))
                else:
                    spec[spec_key] = item
            entries.append((key, where, spec))
        else:
            entries.append((key, where, value))
    return entries


def _unwrap(
    value: Any, path: str, names: dict[str, str], problems: list[InvalidArgumentError]
) -> list[tuple[str, str, Any]]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise _type_error("an object", value, path)
    entries = []
    for key, item in _text_keyed(value, path):
        flat_key = names.get(key.lower())
        if flat_key is None:
            problems.append(
                InvalidArgumentError(
                    f"unknown field {key!r}; valid fields: {', '.join(names.values())}",
                    field=_join(path, key),
                )
            )
            continue
        entries.append((flat_key, _join(path, key), item))
    return entries


@cache
def _field_index(descriptor: Descriptor) -> tuple[dict[str, FieldDescriptor], dict[str, FieldDescriptor]]:
    exact = {field.json_name: field for field in descriptor.fields}
    folded = {field.json_name.lower(): field for field in reversed(descriptor.fields)}
    return exact, folded


def _find_field(descriptor: Descriptor, key: str, path: str) -> FieldDescriptor:
    exact, folded = _field_index(descriptor)
    field = exact.get(key) or folded.get(key.lower())
    if field is None:
        valid = ", ".join(field.json_name for field in descriptor.fields)
        raise InvalidArgumentError(f"unknown field {key!r}; valid fields: {valid}", field=_join(path, key))
    return field


def _map_key(key_field: FieldDescriptor, raw_key: Any, path: str) -> Any:
    if key_field.cpp_type == _F.CPPTYPE_STRING:
        return _key_text(raw_key, path)
    if key_field.cpp_type == _F.CPPTYPE_BOOL:
        if isinstance(raw_key, bool) or raw_key in ("true", "false"):
            return raw_key in (True, "true")
        raise InvalidArgumentError(f"map key {raw_key!r} is not true or false", field=path)
    if isinstance(raw_key, str) and re.fullmatch(r"[-+]?[0-9]+", raw_key, re.ASCII):
        raw_key = int(raw_key)
    if isinstance(raw_key, bool) or not isinstance(raw_key, int):
        raise InvalidArgumentError(f"map key {raw_key!r} is not a decimal integer", field=path)
    return _checked_int(key_field.cpp_type, raw_key, f"{path}[{raw_key}]")


def _checked_int(kind: int, value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error("an integer", value, path)
    type_name, low, high = _INT_RANGES[kind]
    if not low <= value <= high:
        raise InvalidArgumentError(f"{value} is out of range for {type_name} ({low} to {high})", field=path)
    return value


def _parse_float(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error("a number", value, path)
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidArgumentError(f"{_describe(value)} is not a finite 64-bit float", field=path)
    return number


def _parse_enum(enum_type: EnumDescriptor, value: Any, path: str) -> int:
    go_enum = BY_PROTO_ENUM.get(enum_type.full_name)
    if go_enum is None:  # Go writes this enum as its number
        return _checked_int(_F.CPPTYPE_INT32, value, path)
    if isinstance(value, str):
        return go_enum.parse(value, field=path)
    expected = f"a {go_enum.go_type} name ({', '.join(go_enum.names())})"
    raise _type_error(expected, value, path)


def _parse_bytes(value: Any, path: str) -> bytes:
    if isinstance(value, bytes | bytearray):  # YAML's !!binary
        return bytes(value)
    if not isinstance(value, str):
        raise _type_error("a base64 string", value, path)
    try:  # Go's StdEncoding: padded, standard alphabet; it skips line breaks
        return base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgumentError(f"{_describe(value)} is not standard base64: {exc}", field=path) from exc


# ---------------------------------------------------------------------------------------------------
# Timestamps (Go's time.Time in JSON: RFC 3339 with nanoseconds)
# ---------------------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1)
_MIN_SECONDS = -62135596800  # 0001-01-01T00:00:00Z
_MAX_SECONDS = 253402300799  # 9999-12-31T23:59:59Z
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"  # date, time, fraction
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))",  # UTC or an offset
    re.ASCII,
)
_TIMESTAMP_HINT = "an RFC 3339 timestamp such as 2022-11-17T13:29:01.871140291Z"


def _format_timestamp(seconds: int, nanos: int, path: str) -> str:
    if not (_MIN_SECONDS <= seconds <= _MAX_SECONDS and 0 <= nanos <= 999_999_999):
        raise InvalidArgumentError(
            f"timestamp (seconds={seconds}, nanos={nanos}) is outside years 1 to 9999", field=path
        )
    t = _EPOCH + timedelta(seconds=seconds)
    fraction = f"{nanos:09d}".rstrip("0")
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f"{'.' + fraction if fraction else ''}Z"
    )


def _parse_timestamp(value: Any, path: str) -> tuple[int, int]:
    if isinstance(value, datetime):  # PyYAML's own loader makes these (microseconds; naive means UTC)
        offset = value.utcoffset() or timedelta(0)
        local = value.replace(tzinfo=None, microsecond=0)
        seconds, nanos = (local - _EPOCH - offset) // timedelta(seconds=1), value.microsecond * 1000
    elif isinstance(value, str):
        match = _RFC3339.fullmatch(value)
        if match is None:
            raise InvalidArgumentError(f"expected {_TIMESTAMP_HINT}, got {_describe(value)}", field=path)
        year, month, day, hour, minute, second, fraction, sign, off_hours, off_minutes = match.groups()
        try:
            local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
        except ValueError as exc:
            raise InvalidArgumentError(f"{_describe(value)} is not a valid time: {exc}", field=path) from exc
        offset_seconds = 0
        if sign:
            if int(off_hours) > 23 or int(off_minutes) > 59:
                raise InvalidArgumentError(f"{_describe(value)} has an invalid UTC offset", field=path)
            offset_seconds = (1 if sign == "+" else -1) * (int(off_hours) * 3600 + int(off_minutes) * 60)
        seconds = (local - _EPOCH) // timedelta(seconds=1) - offset_seconds
        nanos = int((fraction or "").ljust(9, "0"))
    else:
        raise _type_error(_TIMESTAMP_HINT, value, path)
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        raise InvalidArgumentError(f"{_describe(value)} is outside years 1 to 9999 (UTC)", field=path)
    return seconds, nanos


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------


def _parse_text(text: str | bytes, format: str) -> Any:
    if format == "json":
        return serialization.json_unmarshal_with_max(text)
    if format == "yaml":
        return serialization.yaml_unmarshal_with_max(text)
    if format != "auto":
        raise InvalidArgumentError(f"unknown format {format!r}; use auto, json or yaml")
    try:
        return serialization.json_unmarshal_with_max(text)
    except LimitExceededError:
        raise
    except InvalidArgumentError as json_error:
        try:
            return serialization.yaml_unmarshal_with_max(text)
        except LimitExceededError:
            raise
        except InvalidArgumentError:
            if text.lstrip()[:1] in ("{", "[", b"{", b"["):  # meant as JSON: JSON's message is clearer
                raise json_error from None
            raise


def _is_map(field: FieldDescriptor) -> bool:
    return field.cpp_type == _F.CPPTYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _text_keyed(data: Mapping, path: str) -> list[tuple[str, Any]]:
    return [(_key_text(key, path), value) for key, value in data.items()]


def _key_text(key: Any, path: str) -> str:
    """A key (or YAML scalar) as JSON text: YAML may give ints, floats and booleans as keys."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float) and math.isfinite(key):
        return str(int(key)) if key.is_integer() and abs(key) < 1e21 else repr(key)
    raise InvalidArgumentError(f"a key must be text or a number, got {_describe(key)}", field=path)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        text = str(value)
        return f"integer {text if len(text) <= 40 else text[:37] + '...'}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"string {shown!r}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _type_error(expected: str, value: Any, path: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"expected {expected}, got {_describe(value)}", field=path)
