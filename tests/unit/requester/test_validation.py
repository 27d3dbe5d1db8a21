"""Submission validation: each bad field is refused with an InvalidArgumentError naming it."""

import math

import pytest

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.validation import build_job, validate_submission


def payload(**changes) -> pb.JobCreatePayload:
    job = pb.Job(api_version="V1beta1")
    job.spec.engine = pb.Engine.ENGINE_NOOP
    job.spec.verifier = pb.Verifier.VERIFIER_NOOP
    job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
    job.deal.concurrency = 1
    for path, value in changes.items():
        target = job
        *parents, name = path.split("__")
        for parent in parents:
            target = getattr(target, parent)
        setattr(target, name, value)
    return pb.JobCreatePayload(client_id="client-1", job=job)


def refused(p: pb.JobCreatePayload) -> InvalidArgumentError:
    with pytest.raises(InvalidArgumentError) as caught:
        validate_submission(p)
    return caught.value


def test_a_good_submission_passes():
    validate_submission(payload())


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"deal__concurrency": 0}, "Deal.Concurrency", "concurrency must be >= 1"),
        ({"deal__concurrency": -3}, "Deal.Concurrency", "concurrency must be >= 1"),
        (
            {"deal__concurrency": 2, "deal__confidence": 3},
            "Deal.Confidence",
            "cannot be higher than the concurrency",
        ),
        ({"deal__confidence": -1}, "Deal.Confidence", "confidence must be >= 0"),
        ({"deal__min_bids": -1}, "Deal.MinBids", "min bids must be >= 0"),
        ({"spec__engine": 0}, "Spec.Engine", "invalid executor type"),
        ({"spec__engine": 99}, "Spec.Engine", "Engine(99)"),
        ({"spec__verifier": 7}, "Spec.Verifier", "invalid verifier type"),
        ({"spec__publisher": 9}, "Spec.Publisher", "invalid publisher type"),
        ({"spec__timeout": -1.0}, "Spec.Timeout", "timeout must be a number of seconds >= 0"),
        ({"spec__timeout": math.nan}, "Spec.Timeout", "nan"),
        ({"spec__timeout": math.inf}, "Spec.Timeout", "inf"),
        ({"spec__resources__cpu": "lots"}, "Spec.Resources.CPU", "is not a CPU amount"),
        ({"spec__resources__memory": "12 parsecs"}, "Spec.Resources.Memory", "is not a size"),
        ({"spec__resources__disk": "-1Gb"}, "Spec.Resources.Disk", "negative"),
        ({"spec__resources__gpu": "1.5"}, "Spec.Resources.GPU", "whole number"),
    ],
)
def test_each_bad_field_is_named(changes, field, words):
    error = refused(payload(**changes))
    assert error.field == field
    assert words in str(error)


def test_missing_spec_and_job_are_named():
    assert refused(pb.JobCreatePayload(client_id="c")).field == "Job"
    assert refused(pb.JobCreatePayload(client_id="c", job=pb.Job())).field == "Spec"


def test_unknown_input_source_is_named_with_its_index():
    p = payload()
    p.job.spec.inputs.add(storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS, cid="Qm")
    p.job.spec.inputs.add(cid="Qm2")
    assert refused(p).field == "Spec.inputs[1].StorageSource"


def test_context_archives_are_refused_clearly():
    p = payload()
    p.context = b"tar"
    error = refused(p)
    assert error.field == "Context"
    assert "not supported yet" in str(error)


def test_valid_edges_pass():
    validate_submission(payload(deal__concurrency=3, deal__confidence=3, deal__min_bids=0, spec__timeout=0.0))
    validate_submission(
        payload(spec__resources__cpu="500m", spec__resources__memory="1Gi", spec__resources__gpu="1")
    )
    # Unspecified verifier and publisher mean Noop.
    validate_submission(payload(spec__verifier=0, spec__publisher=0))


def test_build_job_sets_the_server_owned_fields():
    p = payload(spec__timeout=0.0, spec__verifier=0, spec__publisher=0)
    p.job.id = "client-chosen"
    p.job.api_version = ""
    p.job.requester_node_id = "someone-else"
    p.job.events.add(job_id="bogus")
    job = build_job(
        p, requester_node_id="requester-abc", default_job_timeout=1800.0, now=1_700_000_000.123456
    )
    assert job.id != "client-chosen" and len(job.id) == 36
    assert job.api_version == "V1beta1"
    assert job.requester_node_id == "requester-abc"
    assert job.client_id == "client-1"
    assert job.spec.timeout == 1800.0
    assert job.spec.verifier == pb.Verifier.VERIFIER_NOOP
    assert job.spec.publisher == pb.Publisher.PUBLISHER_NOOP
    assert job.execution_plan.total_shards == 1
    assert job.created_at.ToMicroseconds() == 1_700_000_000_123_456
    assert len(job.events) == 0


def test_build_job_keeps_a_positive_timeout():
    job = build_job(payload(spec__timeout=5.0), requester_node_id="r", default_job_timeout=1800.0, now=1.0)
    assert job.spec.timeout == 5.0
