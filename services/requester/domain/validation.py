"""Checking a submission and turning it into the job the requester owns.

A refusal is one InvalidArgumentError listing every problem of the submission (its `problems`), each
naming the field to blame with Go's JSON names ("Spec.Engine", "Deal.Concurrency", "Spec.Resources.CPU",
...), the value given and what is allowed.
"""

import math
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from bacalhau_grpc.common.content.store import MAX_CONTEXT_BYTES, check_cid
from bacalhau_grpc.common.errors import InvalidArgumentError, invalid_argument
from bacalhau_grpc.common.model import checks, enums, jobs, pb, resources, sharding
from bacalhau_grpc.common.node_ids import ID_PATTERN

# The field a bad client-chosen submission ID is blamed on (Go-style JSON names, as the others).
SUBMISSION_ID_FIELD = "JobCreatePayload.SubmissionID"


@dataclass(frozen=True)
class SubmissionLimits:
    """How big one submission may be (requester settings; `validate` checks the defaults): a job past one
    is refused at once, naming the field and the limit, before it costs memory or time."""

    # Inputs plus contexts plus WASM import modules.
    max_inputs: int = 10_000
    max_outputs: int = 100
    # Docker environment variables or WASM environment entries.
    max_env_vars: int = 1_000
    max_annotations: int = 100
    # Words of a Docker entrypoint or WASM parameters.
    max_arguments: int = 1_000
    # Any one text of the spec (an image name, a URL, an argument, ...), in UTF-8 bytes.
    max_string_bytes: int = 16_384
    # Spec.Timeout, seconds (a day).
    max_job_timeout: float = 86_400.0
    # ExecutionPlan.ShardsTotal (checked once the inputs are planned, at the requester).
    max_shards: int = 10_000


DEFAULT_LIMITS = SubmissionLimits()


def validate_submission(payload: pb.JobCreatePayload, limits: SubmissionLimits = DEFAULT_LIMITS) -> None:
    """Accept the submission, or raise one InvalidArgumentError listing every problem it has (its
    `problems`, each naming its field; see `submission_problems`)."""
    problems = submission_problems(payload, limits)
    if problems:
        raise invalid_argument(problems)


def submission_problems(
    payload: pb.JobCreatePayload, limits: SubmissionLimits = DEFAULT_LIMITS
) -> list[InvalidArgumentError]:
    """Every problem of a submission (a bad submission ID first, then the job's size, the spec's and the
    deal's): the checks `validate` runs locally and the requester runs at submission, so both give the
    same verdict on every job (with the requester's default limits)."""
    problems = []
    if payload.submission_id:
        problem = submission_id_problem(payload.submission_id)
        if problem is not None:
            problems.append(InvalidArgumentError(problem, field=SUBMISSION_ID_FIELD))
    return problems + _job_problems(payload, limits)


def _job_problems(payload: pb.JobCreatePayload, limits: SubmissionLimits) -> list[InvalidArgumentError]:
    if not payload.HasField("job"):
        return [InvalidArgumentError("the submission carries no job", field="Job")]
    job = payload.job
    if not job.HasField("spec"):
        return [InvalidArgumentError("job spec is empty", field="Spec")]
    found = _Problems()
    spec = job.spec
    _size_problems(spec, limits, found)
    if found.problems:  # too big to look at further
        return found.problems
    if not enums.is_valid_engine(spec.engine):
        found.add(
            f"invalid executor type: {enums.ENGINE.name(spec.engine)}; use one of "
            f"{', '.join(enums.engine_names())}",
            "Spec.Engine",
        )
    if spec.verifier != pb.Verifier.VERIFIER_UNSPECIFIED and not enums.is_valid_verifier(spec.verifier):
        found.add(
            f"invalid verifier type: {enums.VERIFIER.name(spec.verifier)}; use one of "
            f"{', '.join(enums.verifier_names())}",
            "Spec.Verifier",
        )
    if spec.publisher != pb.Publisher.PUBLISHER_UNSPECIFIED and not enums.is_valid_publisher(spec.publisher):
        found.add(
            f"invalid publisher type: {enums.PUBLISHER.name(spec.publisher)}; use one of "
            f"{', '.join(enums.publisher_names())}",
            "Spec.Publisher",
        )
    for name, volumes in (("inputs", spec.inputs), ("Contexts", spec.contexts)):
        for i, volume in enumerate(volumes):
            if not enums.is_valid_storage_source_type(volume.storage_source):
                found.add(
                    f"invalid input volume type: {enums.STORAGE_SOURCE_TYPE.name(volume.storage_source)}; "
                    f"use one of {', '.join(enums.storage_source_names())}",
                    f"Spec.{name}[{i}].StorageSource",
                )
    found.extend(checks.engine_problems(spec, has_inline_context=bool(payload.context)))
    if math.isnan(spec.timeout) or math.isinf(spec.timeout) or spec.timeout < 0:
        found.add(
            "timeout must be a number of seconds >= 0 (0 means the requester's default), "
            f"not {spec.timeout!r}",
            "Spec.Timeout",
        )
    elif spec.timeout > limits.max_job_timeout:
        found.add(
            f"timeout {spec.timeout:g}s is longer than this requester's maximum of "
            f"{limits.max_job_timeout:g}s",
            "Spec.Timeout",
        )
    found.check(resources.parse_cpu, spec.resources.cpu, field="Spec.Resources.CPU")
    found.check(resources.parse_bytes, spec.resources.memory, field="Spec.Resources.Memory")
    found.check(resources.parse_bytes, spec.resources.disk, field="Spec.Resources.Disk")
    found.check(resources.parse_gpu, spec.resources.gpu, field="Spec.Resources.GPU")
    _volume_problems(spec, found)
    if spec.sharding.glob_pattern:
        found.check(sharding.compile_glob, spec.sharding.glob_pattern)  # a malformed pattern is refused here
    _deal_problems(job.deal, found)
    if len(payload.context) > MAX_CONTEXT_BYTES:
        found.add(
            f"the context archive is {len(payload.context)} bytes; at most {MAX_CONTEXT_BYTES} are accepted",
            "Context",
        )
    return found.problems


def submission_id_problem(submission_id: str) -> str | None:
    """What is wrong with a client-chosen submission ID (`JobCreatePayload.SubmissionID`), or None. It has
    the shape of a node ID (`common.node_ids`): 1 to 128 letters, digits, '.', '_' and '-'."""
    if ID_PATTERN.fullmatch(submission_id):
        return None
    shown = repr(submission_id)
    if len(shown) > 140:
        shown = f"{shown[:100]}... ({len(submission_id)} characters)"
    return (
        f"bad submission ID {shown}: a submission ID is 1 to 128 characters of letters, digits, '.', '_' "
        "and '-'"
    )


def _deal_problems(deal: pb.Deal, found: "_Problems") -> None:
    if deal.concurrency < 1:
        found.add(f"concurrency must be >= 1 (it is {deal.concurrency})", "Deal.Concurrency")
    if deal.confidence < 0:
        found.add(f"confidence must be >= 0 (it is {deal.confidence})", "Deal.Confidence")
    elif deal.concurrency >= 1 and deal.confidence > deal.concurrency:
        found.add(
            f"the deal confidence ({deal.confidence}) cannot be higher than the concurrency "
            f"({deal.concurrency})",
            "Deal.Confidence",
        )
    if deal.min_bids < 0:
        found.add(f"min bids must be >= 0 (it is {deal.min_bids})", "Deal.MinBids")


def _volume_problems(spec: pb.Spec, found: "_Problems") -> None:
    found.extend(checks.input_problems(spec.inputs, field="Spec.inputs"))
    found.extend(checks.input_problems(spec.contexts, field="Spec.Contexts"))
    found.extend(checks.input_problems(spec.wasm.import_modules, field="Spec.Wasm.ImportModules"))
    found.extend(checks.mount_clashes([("Spec.Contexts", spec.contexts), ("Spec.inputs", spec.inputs)]))
    found.extend(checks.output_problems(spec.outputs))
    for name, volumes in (("inputs", spec.inputs), ("Contexts", spec.contexts)):
        for i, volume in enumerate(volumes):
            if volume.cid:
                found.check(check_cid, volume.cid, field=f"Spec.{name}[{i}].CID")


def _size_problems(spec: pb.Spec, limits: SubmissionLimits, found: "_Problems") -> None:
    """Counts and string lengths over their limits, each named with the field and the limit."""
    counts = [
        (
            "Spec.inputs",
            len(spec.inputs) + len(spec.contexts) + len(spec.wasm.import_modules),
            limits.max_inputs,
            "inputs (with contexts and import modules)",
        ),
        ("Spec.outputs", len(spec.outputs), limits.max_outputs, "outputs"),
        (
            "Spec.Docker.EnvironmentVariables",
            len(spec.docker.environment_variables),
            limits.max_env_vars,
            "environment variables",
        ),
        (
            "Spec.Wasm.EnvironmentVariables",
            len(spec.wasm.environment_variables),
            limits.max_env_vars,
            "environment variables",
        ),
        ("Spec.Annotations", len(spec.annotations), limits.max_annotations, "annotations"),
        ("Spec.Docker.Entrypoint", len(spec.docker.entrypoint), limits.max_arguments, "entrypoint words"),
        ("Spec.Wasm.Parameters", len(spec.wasm.parameters), limits.max_arguments, "parameters"),
    ]
    for field, count, limit, what in counts:
        if count > limit:
            found.add(f"{count} {what}, more than the {limit} a job may have", field)
    if found.problems:
        return
    for field, text in _strings(spec, "Spec"):
        size = len(text.encode())
        if size > limits.max_string_bytes:
            found.add(
                f"{size} bytes of text, more than the {limits.max_string_bytes} one value may have", field
            )
            if len(found.problems) >= 10:
                return


def _strings(message: Message, path: str) -> Iterator[tuple[str, str]]:
    """Every string value of a message, with its field path (maps and lists included)."""
    for field, value in message.ListFields():
        where = f"{path}.{field.json_name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                yield from ((f"{where}[{i}]", item) for i, item in enumerate(value))
            else:
                yield where, value
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    yield f"{where}[{key!r}]", str(key)
                    if isinstance(item, str):
                        yield f"{where}[{key!r}]", item
            elif field.is_repeated:
                for i, item in enumerate(value):
                    yield from _strings(item, f"{where}[{i}]")
            else:
                yield from _strings(value, where)


class _Problems:
    """The problems found so far, each an InvalidArgumentError naming its field."""

    def __init__(self) -> None:
        self.problems: list[InvalidArgumentError] = []

    def add(self, message: str, field: str) -> None:
        self.problems.append(InvalidArgumentError(message, field=field))

    def extend(self, problems: Iterable[checks.Problem]) -> None:
        for message, field in problems:
            self.add(message, field)

    def check(self, parse: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run a check that raises InvalidArgumentError; keep its problems."""
        try:
            parse(*args, **kwargs)
        except InvalidArgumentError as err:
            self.problems.extend(err.problems)


def build_job(
    payload: pb.JobCreatePayload,
    *,
    requester_node_id: str,
    default_job_timeout: float,
    now: float,
    job_id: str | None = None,
    context_cid: str = "",
    total_shards: int = 1,
) -> pb.Job:
    """The job the requester creates from a valid submission (validate_submission first).

    Server-owned fields are set here (ID, requester, client, creation time, execution plan) and whatever
    the client put in them is dropped, as are state and events. The inline context, once stored under
    `context_cid`, becomes the first context, mounted at /job (a WASM job's module is its first context).
    `total_shards` is `ExecutionPlan.ShardsTotal`, planned from the inputs at submission (see
    `common.model.sharding`).
    """
    source = payload.job
    job = pb.Job(
        api_version=source.api_version or jobs.api_version_latest(),
        id=job_id or str(uuid.uuid4()),
        requester_node_id=requester_node_id,
        client_id=payload.client_id or source.client_id,
    )
    job.spec.CopyFrom(source.spec)
    job.deal.CopyFrom(source.deal)
    if context_cid:
        context = pb.StorageSpec(
            storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS,
            name="context",
            cid=context_cid,
            path=checks.CONTEXT_PATH,
        )
        contexts = [context, *job.spec.contexts]
        del job.spec.contexts[:]
        job.spec.contexts.extend(contexts)
    if job.spec.engine == pb.Engine.ENGINE_WASM and not job.spec.wasm.entry_point:
        job.spec.wasm.entry_point = "_start"
    if job.spec.verifier == pb.Verifier.VERIFIER_UNSPECIFIED:
        job.spec.verifier = pb.Verifier.VERIFIER_NOOP
    if job.spec.publisher == pb.Publisher.PUBLISHER_UNSPECIFIED:
        job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
    if job.spec.timeout <= 0:
        job.spec.timeout = default_job_timeout
    job.execution_plan.total_shards = total_shards
    job.created_at.FromMicroseconds(round(now * 1_000_000))
    return job
