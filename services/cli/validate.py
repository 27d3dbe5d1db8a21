"""`validate [FILE]`: checks a job file exactly as `create` would, without submitting it, and lists EVERY
problem: "The Job is valid", or "The Job is not valid. See errors:" and one "- FIELD: ..." line per
problem (exit code 1). `--output-schema` prints the JSON Schema of the canonical job file (`cli.jobschema`).

One verdict with `create`: the file is read by `create`'s reader (any key and enum case, v0.3.15's nested
shape, JobWithInfo documents, `create`'s defaults such as APIVersion), then put through the requester's
own submission checks (`requester.domain.validation`, run locally). A file `validate` calls valid is one
`create` submits and the requester accepts; a file it refuses, `create` refuses with the same problems.
Unlike v0.3's schema check, the verdict is not case-sensitive and a missing APIVersion gets create's
default; unlike v0.3, standard input is read too (`-`, or no FILE with input piped in).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

from bacalhau_grpc.cli import jobschema, submit
from bacalhau_grpc.cli.flags import command_parser
from bacalhau_grpc.cli.submit import PROG
from bacalhau_grpc.common.errors import InvalidArgumentError

EXTENSIONS = {".json", ".yaml", ".yml"}
NO_INPUT = "You must specify a filename or provide the content to be validated via stdin."


def validate_text(text: str | bytes, *, warn: Any = None) -> list[str]:
    """Every problem `create` would find with a job document, one text per problem; [] when `create`
    would submit it and the requester accept it. `create`'s warnings (ignored fields) go to `warn`."""
    data = text.encode() if isinstance(text, str) else text
    try:
        job = submit.read_job(data, warn=warn or io.StringIO())
        submit.check_job(job)
    except InvalidArgumentError as err:
        return [str(problem) for problem in err.problems]
    return []


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
        help="check a job file as create would, without submitting it",
        description="Check a job file (.json, .yaml or .yml; - or piped input reads standard input) the way "
        "create reads and the requester checks it, and list every problem with its field, the value given "
        "and what is allowed. The verdict is create's: a valid file is one create submits. --output-schema "
        "prints the JSON Schema of the canonical job file (the shape --dry-run writes).",
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
        text = _read(args.file)
    except _Usage as usage:
        print(args.usage(), end="", file=sys.stderr)
        print(str(usage), file=sys.stderr)
        return 1
    except (ValueError, OSError) as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    errors = validate_text(text, warn=sys.stderr)
    if not errors:
        print("The Job is valid")
        return 0
    print("The Job is not valid. See errors:")
    for error in errors:
        print(f"- {error}")
    return 1


class _Usage(Exception):
    pass


def _read(name: str | None) -> bytes:
    """The job document: the file, or standard input for `-` or no name (no name and nothing piped in is
    a usage error, as in v0.3)."""
    if name is None or name == "-":
        if name is None and sys.stdin.isatty():
            raise _Usage(NO_INPUT)
        text = sys.stdin.buffer.read()
        if name is None and not text.strip():
            raise _Usage(NO_INPUT)
        return text
    path = Path(name)
    if path.suffix.lower() not in EXTENSIONS:
        raise ValueError(
            f"File extension ({path.suffix}) not supported. The file must end in either .yaml, .yml or .json."
        )
    try:
        return path.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read {name}: {err.strerror or err}") from None
