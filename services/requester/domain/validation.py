"""Checking a submission and turning it into the job the requester owns (plan "Submission validation").

Every refusal is an InvalidArgumentError naming the field to blame, with Go's JSON names
("Spec.Engine", "Deal.Concurrency", "Spec.Resources.CPU", ...).
"""

import math
import uuid

from bacalhau_grpc.common.content.store import MAX_CONTEXT_BYTES, check_cid
from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import checks, enums, jobs, pb, resources, sharding


def validate_submission(payload: pb.JobCreatePayload) -> None:
    """Raise InvalidArgumentError for the first thing wrong with the submission; accept it otherwise."""
    if not payload.HasField("job"):
        raise InvalidArgumentError("the submission carries no job", field="Job")
    job = payload.job
    if not job.HasField("spec"):
        raise InvalidArgumentError("job spec is empty", field="Spec")
    spec = job.spec
    if not enums.is_valid_engine(spec.engine):
        raise InvalidArgumentError(
            f"invalid executor type: {enums.ENGINE.name(spec.engine)}; use one of "
            f"{', '.join(enums.engine_names())}",
            field="Spec.Engine",
        )
    if spec.verifier != pb.Verifier.VERIFIER_UNSPECIFIED and not enums.is_valid_verifier(spec.verifier):
        raise InvalidArgumentError(
            f"invalid verifier type: {enums.VERIFIER.name(spec.verifier)}; use one of "
            f"{', '.join(enums.verifier_names())}",
            field="Spec.Verifier",
        )
    if spec.publisher != pb.Publisher.PUBLISHER_UNSPECIFIED and not enums.is_valid_publisher(spec.publisher):
        raise InvalidArgumentError(
            f"invalid publisher type: {enums.PUBLISHER.name(spec.publisher)}; use one of "
            f"{', '.join(enums.publisher_names())}",
            field="Spec.Publisher",
        )
    for name, volumes in (("inputs", spec.inputs), ("Contexts", spec.contexts)):
        for i, volume in enumerate(volumes):
            if not enums.is_valid_storage_source_type(volume.storage_source):
                raise InvalidArgumentError(
                    f"invalid input volume type: {enums.STORAGE_SOURCE_TYPE.name(volume.storage_source)}; "
                    f"use one of {', '.join(enums.storage_source_names())}",
                    field=f"Spec.{name}[{i}].StorageSource",
                )
    deal = job.deal
    if deal.concurrency < 1:
        raise InvalidArgumentError(
            f"concurrency must be >= 1 (it is {deal.concurrency})", field="Deal.Concurrency"
        )
    if deal.confidence < 0:
        raise InvalidArgumentError(
            f"confidence must be >= 0 (it is {deal.confidence})", field="Deal.Confidence"
        )
    if deal.confidence > deal.concurrency:
        raise InvalidArgumentError(
            f"the deal confidence ({deal.confidence}) cannot be higher than the concurrency "
            f"({deal.concurrency})",
            field="Deal.Confidence",
        )
    if deal.min_bids < 0:
        raise InvalidArgumentError(f"min bids must be >= 0 (it is {deal.min_bids})", field="Deal.MinBids")
    if math.isnan(spec.timeout) or math.isinf(spec.timeout) or spec.timeout < 0:
        raise InvalidArgumentError(
            f"timeout must be a number of seconds >= 0 (0 means the requester's default), "
            f"not {spec.timeout!r}",
            field="Spec.Timeout",
        )
    resources.parse_resource_usage_config(spec.resources, field_prefix="Spec.Resources")
    _check_volumes(spec)
    if spec.sharding.glob_pattern:
        sharding.compile_glob(spec.sharding.glob_pattern)  # a malformed pattern is refused here
    _raise(checks.engine_error(spec, has_inline_context=bool(payload.context)))
    if len(payload.context) > MAX_CONTEXT_BYTES:
        raise InvalidArgumentError(
            f"the context archive is {len(payload.context)} bytes; at most {MAX_CONTEXT_BYTES} are accepted",
            field="Context",
        )


def _check_volumes(spec: pb.Spec) -> None:
    _raise(checks.input_error(spec.inputs, field="Spec.inputs"))
    _raise(checks.input_error(spec.contexts, field="Spec.Contexts"))
    _raise(checks.input_error(spec.wasm.import_modules, field="Spec.Wasm.ImportModules"))
    _raise(checks.output_error(spec.outputs))
    for name, volumes in (("inputs", spec.inputs), ("Contexts", spec.contexts)):
        for i, volume in enumerate(volumes):
            if volume.cid:
                check_cid(volume.cid, field=f"Spec.{name}[{i}].CID")


def _raise(problem: tuple[str, str] | None) -> None:
    if problem is not None:
        raise InvalidArgumentError(problem[0], field=problem[1])


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
