"""`validate [FILE]`: checks a job file against the job JSON Schema (`cli.jobschema`) and lists EVERY
error, as v0.3's `validate` did: "The Job is valid", or "The Job is not valid. See errors:" and one
"- ..." line per error (exit code 1). `--output-schema` prints the schema.

Like v0.3 it is stricter than `create`: keys and enum values must be written as the schema has them
(an error then names the spelling meant: `create` reads any case), and `APIVersion` is required. Unlike
v0.3 it also reads v0.3.15's nested shape (`Metadata`, `Status`, `Spec.Deal`, `Spec.ExecutionPlan`: the
schema describes the canonical flat shape, and errors name the keys where the file has them), JobWithInfo
documents (a top-level `Job`), and standard input (`-`, or no FILE with input piped in).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bacalhau_grpc.cli import jobschema
from bacalhau_grpc.cli.flags import command_parser
from bacalhau_grpc.cli.submit import PROG
from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import jobfile, serialization

if TYPE_CHECKING:
    import jsonschema

EXTENSIONS = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}
NO_INPUT = "You must specify a filename or provide the content to be validated via stdin."

# v0.3.15's nested Job: which wrapper holds which flat Job key.
_NESTED = {
    "Metadata": ("ID", "CreatedAt", "ClientID"),
    "Status": ("JobState", "JobEvents", "LocalJobEvents", "Requester"),
}
_REQUESTER = ("RequesterNodeID", "RequesterPublicKey")
_IN_SPEC = ("Deal", "ExecutionPlan")


def validate_text(text: str | bytes, format: str = "auto") -> list[str]:
    """Every error of a job document, as "- " lines would show them; [] when it is valid."""
    try:
        document = _parse(text, format)
    except InvalidArgumentError as err:
        return [f"the file cannot be read as {'JSON or YAML' if format == 'auto' else format.upper()}: {err}"]
    return validate_document(document)


def validate_document(document: Any) -> list[str]:
    """Every error of an already parsed job document; [] when it is valid."""
    if document is None:
        return ["the job document is empty"]
    errors: list[str] = []
    with_info = isinstance(document, Mapping) and "Job" in document
    if with_info:
        inner, moved = _flatten(document["Job"], "Job", errors)
        flat = {**document, "Job": inner}
        schema = jobschema.job_with_info_schema()
    else:
        flat, moved = _flatten(document, "", errors)
        schema = jobschema.job_schema()
    import jsonschema  # only when validating: every other command starts faster

    validator = jsonschema.Draft202012Validator(schema)
    found = sorted(validator.iter_errors(flat), key=lambda e: [str(p) for p in e.absolute_path])
    for error in found:
        errors += _messages(error, moved)
    if not errors:
        try:  # what the schema cannot say (e.g. a key given twice); create reads it the same way
            jobfile.parse_job_document(document)
        except InvalidArgumentError as err:
            errors.append(str(err))
    return errors


def _parse(text: str | bytes, format: str) -> Any:
    if format == "json":
        return serialization.json_unmarshal_with_max(text)
    if format == "yaml":
        return serialization.yaml_unmarshal_with_max(text)
    try:
        return serialization.json_unmarshal_with_max(text)
    except InvalidArgumentError:
        return serialization.yaml_unmarshal_with_max(text)


def _flatten(job: Any, prefix: str, errors: list[str]) -> tuple[Any, dict[str, str]]:
    """A v0.3.15 nested Job as the flat one, and where each moved key was (flat key -> dotted path)."""
    if not isinstance(job, Mapping):
        return job, {}
    nested = any(key in job for key in _NESTED) or (
        isinstance(job.get("Spec"), Mapping) and any(key in job["Spec"] for key in _IN_SPEC)
    )
    if not nested:
        return job, {}
    flat: dict[Any, Any] = {}
    moved: dict[str, str] = {}

    def put(key: str, value: Any, where: str) -> None:
        if key in flat:
            errors.append(f"{where}: {key} is given twice (also at {moved.get(key, _join(prefix, key))})")
            return
        flat[key] = value
        if where != _join(prefix, key):
            moved[key] = where

    for key, value in job.items():
        where = _join(prefix, str(key))
        if key in _NESTED and isinstance(value, Mapping):
            for inner, item in value.items():
                inner_where = _join(where, str(inner))
                if inner not in _NESTED[key]:
                    errors.append(f"{where}: additional property {json.dumps(inner)} is not allowed")
                elif inner == "Requester" and isinstance(item, Mapping):
                    for name, requester_item in item.items():
                        if name in _REQUESTER:
                            put(name, requester_item, _join(inner_where, str(name)))
                        else:
                            errors.append(
                                f"{inner_where}: additional property {json.dumps(name)} is not allowed"
                            )
                else:
                    put(inner, item, inner_where)
        elif key == "Spec" and isinstance(value, Mapping):
            spec = {}
            for inner, item in value.items():
                if inner in _IN_SPEC:
                    put(inner, item, _join(where, str(inner)))
                else:
                    spec[inner] = item
            put(key, spec, where)
        else:
            put(key, value, where)
    return flat, moved


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _path(error: jsonschema.ValidationError, moved: dict[str, str]) -> str:
    parts = list(error.absolute_path)
    text = ""
    for i, part in enumerate(parts):
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        inside_job = parts[:1] == ["Job"] and i == 1
        if (i == 0 or inside_job) and part in moved:
            text = moved[part]
            continue
        text = _join(text, str(part))
    return text


def _messages(error: jsonschema.ValidationError, moved: dict[str, str]) -> list[str]:
    path = _path(error, moved)
    where = path or "(root)"
    kind, schema, instance = error.validator, error.schema, error.instance
    if kind == "required":
        return [f"{_join(path, name)} is required" for name in error.validator_value if name not in instance]
    if kind == "additionalProperties":
        known = schema.get("properties", {})
        return [
            f"{where}: additional property {json.dumps(key)} is not allowed{_case_hint(key, known)}"
            for key in instance
            if key not in known
        ]
    if kind == "enum":
        options = ", ".join(json.dumps(option) for option in error.validator_value)
        hint = _case_hint(instance, error.validator_value)
        return [f"{where}: {json.dumps(instance)} must be one of the following: {options}{hint}"]
    if kind == "type":
        return [f"{where}: invalid type, expected {error.validator_value}, given {_kind(instance)}"]
    if kind == "pattern":
        if error.validator_value == jobschema.RFC3339:
            example = "2022-11-17T13:29:01.871140291Z"
            return [f"{where}: {json.dumps(instance)} is not an RFC 3339 timestamp such as {example}"]
        if error.validator_value == jobschema.BASE64:
            return [f"{where}: {json.dumps(instance)} is not base64 text"]
        return [f"{where}: the key {json.dumps(instance)} is not a decimal integer"]
    if kind in ("minimum", "maximum"):
        bound = "least" if kind == "minimum" else "most"
        return [f"{where}: {instance} is out of range (at {bound} {error.validator_value})"]
    return [f"{where}: {error.message}"]


def _case_hint(value: Any, choices: Any) -> str:
    if not isinstance(value, str):
        return ""
    for choice in choices:
        if isinstance(choice, str) and choice != value and choice.lower() == value.lower():
            return f" (did you mean {json.dumps(choice)}? validate is case-sensitive; create reads any case)"
    return ""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


# -------------------------------------------------------------------------------------------- command


EXAMPLES = f"""\
examples:
  {PROG} validate job.yaml
  {PROG} docker run --dry-run ubuntu -- echo hi | {PROG} validate -
  {PROG} validate --output-schema > job.schema.json
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = command_parser(
        subparsers,
        "validate",
        help="check a job file against the job JSON Schema",
        description="Check a job file (.json, .yaml or .yml; - or piped input reads standard input) against "
        "the JSON Schema of Bacalhau jobs and list every error. The schema is v0.3's strictness: keys and "
        "enum values as written in it (create reads any case), APIVersion required.",
        epilog=EXAMPLES,
    )
    parser.add_argument("file", nargs="?", help="the job file")
    parser.add_argument("--output-schema", action="store_true", help="print the JSON Schema and exit")
    parser.set_defaults(handler=cmd_validate, usage=parser.format_usage)
    return parser


def cmd_validate(args: argparse.Namespace) -> int:
    if args.output_schema:
        print(json.dumps(jobschema.job_schema(), indent=2))
        return 0
    try:
        text, format = _read(args.file)
    except _Usage as usage:
        print(args.usage(), end="", file=sys.stderr)
        print(str(usage), file=sys.stderr)
        return 1
    except (ValueError, OSError) as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    errors = validate_text(text, format)
    if not errors:
        print("The Job is valid")
        return 0
    print("The Job is not valid. See errors:")
    for error in errors:
        print(f"- {error}")
    return 1


class _Usage(Exception):
    pass


def _read(name: str | None) -> tuple[bytes, str]:
    if name is None or name == "-":
        if name is None and sys.stdin.isatty():
            raise _Usage(NO_INPUT)
        return sys.stdin.buffer.read(), "auto"
    path = Path(name)
    format = EXTENSIONS.get(path.suffix.lower())
    if format is None:
        raise ValueError(
            f"File extension ({path.suffix}) not supported. The file must end in either .yaml, .yml or .json."
        )
    try:
        return path.read_bytes(), format
    except OSError as err:
        raise ValueError(f"cannot read {name}: {err.strerror or err}") from None
