"""Go's size-limited JSON and YAML helpers (`pkg/model/utils.go`) for plain Python data.

The values are what `json` and PyYAML read and write: dicts, lists, strings, numbers, booleans and
None. Messages go through `jobfile.message_to_dict` first.

Limits, as Go's constants name them:

* `MaxSerializedStringInput`: unmarshalling refuses input over 10 MiB (UTF-8 bytes).
* `MaxSerializedStringOutput`: marshalling refuses output over 10 MiB.
* `MaxNumberOfObjectsToSerialize`: a top-level list longer than 1000 is refused both ways.

Go declares the last two but never enforces them (its `ConfirmMaxSliceSize` type check cannot match a
slice, and nothing reads the output limit); here they are enforced as their names say.

Differences from Go, on purpose:

* Malformed input is an `InvalidArgumentError` whose message gives the parser's line and column.
* A YAML stream with more than one document is refused (Go's `sigs.k8s.io/yaml` silently reads the
  first); so is a document that aliases expand past its own size (a "billion laughs" guard).
* YAML is read as YAML 1.1 by PyYAML, with two changes towards Go's `go-yaml`: timestamps stay
  strings (PyYAML would make `datetime`s and drop nanoseconds), and `1e3`-style floats are floats.
* YAML keeps the order of mapping keys (Go's goes through a Go map and sorts them).
"""

import json
import re
from typing import Any

import yaml

from bacalhau_grpc.common.errors import InvalidArgumentError, LimitExceededError

MAX_SERIALIZED_STRING_INPUT = 10 * 1024 * 1024
MAX_SERIALIZED_STRING_OUTPUT = 10 * 1024 * 1024
MAX_NUMBER_OF_OBJECTS_TO_SERIALIZE = 1000
JSON_INDENT_SPACE_NUMBER = 4

# Go's encoding/json escapes these inside strings (HTML safety and JavaScript line separators).
_GO_JSON_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def confirm_max_slice_size(value: Any, max_size: int = MAX_NUMBER_OF_OBJECTS_TO_SERIALIZE) -> None:
    """Refuse a top-level list longer than `max_size` (Go's `ConfirmMaxSliceSize`)."""
    if isinstance(value, list | tuple) and len(value) > max_size:
        raise LimitExceededError(
            f"number of objects ({len(value)}) is more than MaxNumberOfObjectsToSerialize ({max_size})",
            limit="MaxNumberOfObjectsToSerialize",
        )


def json_marshal_with_max(value: Any) -> bytes:
    """Compact JSON, as Go's `json.Marshal` writes it (Go's `JSONMarshalWithMax`)."""
    confirm_max_slice_size(value)
    return _checked_output(_json_dumps(value, separators=(",", ":")))


def json_marshal_indent_with_max(
    value: Any,
    indent_spaces: int = JSON_INDENT_SPACE_NUMBER,
    *,
    max_objects: int | None = MAX_NUMBER_OF_OBJECTS_TO_SERIALIZE,
) -> bytes:
    """Indented JSON, as Go's `json.MarshalIndent` writes it (Go's `JSONMarshalIndentWithMax`;
    `max_objects=None` lifts the limit, for documents this program writes for people)."""
    if max_objects is not None:
        confirm_max_slice_size(value, max_objects)
    return _checked_output(_json_dumps(value, indent=indent_spaces))


def yaml_marshal_with_max(
    value: Any, *, max_objects: int | None = MAX_NUMBER_OF_OBJECTS_TO_SERIALIZE
) -> bytes:
    """Block-style YAML keeping key order (Go's `YAMLMarshalWithMax`; `max_objects=None` lifts the limit)."""
    if max_objects is not None:
        confirm_max_slice_size(value, max_objects)
    text = yaml.dump(
        value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=10**9
    )
    return _checked_output(text, go_escapes=False)


def json_unmarshal_with_max(data: str | bytes) -> Any:
    """Parse JSON (Go's `JSONUnmarshalWithMax`). NaN and Infinity are refused, as in Go."""
    text = _checked_input(data)
    try:
        value = json.loads(text, parse_constant=_refuse_json_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise InvalidArgumentError(f"malformed JSON at {where}: {exc.msg}") from exc
    except RecursionError as exc:
        raise InvalidArgumentError("malformed JSON: nested too deeply") from exc
    confirm_max_slice_size(value)
    return value


def yaml_unmarshal_with_max(data: str | bytes) -> Any:
    """Parse one YAML document (Go's `YAMLUnmarshalWithMax`); an empty document is None."""
    text = _checked_input(data)
    loader = _Loader(text)
    try:
        value = loader.get_data() if loader.check_data() else None
        _confirm_no_alias_bomb(value, budget=len(text) + 16)
        if loader.check_data():
            line = loader.peek_event().start_mark.line + 1
            raise InvalidArgumentError(
                f"the YAML input holds more than one document (another starts at line {line}); "
                "give exactly one"
            )
    except yaml.MarkedYAMLError as exc:
        raise InvalidArgumentError(_describe_yaml_error(exc)) from exc
    except yaml.YAMLError as exc:
        raise InvalidArgumentError(f"malformed YAML: {exc}") from exc
    except RecursionError as exc:
        raise InvalidArgumentError("malformed YAML: nested too deeply") from exc
    finally:
        loader.dispose()
    confirm_max_slice_size(value)
    return value


def _confirm_no_alias_bomb(value: Any, budget: int) -> None:
    """Refuse a document whose aliases (`*name`) expand it past one value per input character.

    Without aliases a document cannot hold more values than it has characters; a "billion laughs"
    document (aliases of aliases) or a recursive one (`&a [*a]`) can, and would stall its readers.
    """
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > budget:
            raise InvalidArgumentError(
                "the YAML document expands through aliases (*name) to more values than it has characters"
            )
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _json_dumps(value: Any, **layout: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, **layout)
    except ValueError as exc:  # NaN or an infinity: JSON has no way to write them
        raise InvalidArgumentError(f"cannot serialize to JSON: {exc}") from exc


def _checked_input(data: str | bytes) -> str:
    size = len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else len(data)
    if size > MAX_SERIALIZED_STRING_INPUT:
        raise LimitExceededError(
            f"size of input ({size} bytes) is larger than MaxSerializedStringInput "
            f"({MAX_SERIALIZED_STRING_INPUT} bytes)",
            limit="MaxSerializedStringInput",
        )
    if isinstance(data, str):
        return data
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(f"input is not valid UTF-8 (bad byte at offset {exc.start})") from exc


def _checked_output(text: str, *, go_escapes: bool = True) -> bytes:
    if go_escapes:
        text = text.translate(_GO_JSON_ESCAPES)
    try:
        out = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(f"cannot serialize a lone surrogate: {exc.reason}") from exc
    if len(out) > MAX_SERIALIZED_STRING_OUTPUT:
        raise LimitExceededError(
            f"size of output ({len(out)} bytes) is larger than MaxSerializedStringOutput "
            f"({MAX_SERIALIZED_STRING_OUTPUT} bytes)",
            limit="MaxSerializedStringOutput",
        )
    return out


def _refuse_json_constant(name: str) -> None:
    raise InvalidArgumentError(f"malformed JSON: {name} is not a JSON value")


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = "; ".join(part for part in (exc.context, exc.problem) if part) or "cannot parse"
    return f"malformed YAML{where}: {what}"


# Go's go-yaml reads `1e3`, `1.5e3` and `1.5E-3` as floats; YAML 1.1 (PyYAML) wants a dot and a signed
# exponent. Loader and dumper share the rule, so a string "1e3" is written quoted and reads back a string.
_GO_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")
_FLOAT_TAG = "tag:yaml.org,2002:float"
# Tags PyYAML's safe loader resolves that Go's reader leaves as strings: `=` (the "value" tag, which the
# safe loader cannot even construct) and timestamps.
_STRING_TAGS = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")


# libyaml's parser and emitter when PyYAML has them (three to four times faster), else pure Python.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SafeDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Loader(_SafeLoader):
    """PyYAML's safe loader with Go's float and timestamp rules."""

    yaml_implicit_resolvers = {  # noqa: RUF012 (PyYAML's class-level table)
        first: [(tag, rx) for tag, rx in resolvers if tag not in _STRING_TAGS]
        for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
    }


class _Dumper(_SafeDumper):
    """PyYAML's safe dumper, quoting every string `_Loader` would not read back as a string."""

    def represent_str(self, data: str) -> yaml.ScalarNode:
        # PyYAML writes these line breaks raw in plain and single-quoted scalars, where reading folds
        # them away; the double-quoted style escapes them (\N, \L, \P, \uFEFF).
        if any(ch in data for ch in _YAML_RAW_BREAKS):
            return self.represent_scalar("tag:yaml.org,2002:str", data, style='"')
        return super().represent_str(data)


_YAML_RAW_BREAKS = "\x85\u2028\u2029\ufeff"
_Dumper.add_representer(str, _Dumper.represent_str)


for _first in "-+0123456789.":
    _Loader.add_implicit_resolver(_FLOAT_TAG, _GO_FLOAT, [_first])
    _Dumper.add_implicit_resolver(_FLOAT_TAG, _GO_FLOAT, [_first])
