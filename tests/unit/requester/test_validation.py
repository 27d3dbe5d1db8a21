"""Submission validation: each bad field is refused with an InvalidArgumentError naming it."""

import math

import pytest

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.validation import build_job, submission_problems, validate_submission


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
    assert "Spec.inputs[1].StorageSource" in [problem.field for problem in refused(p).problems]


def test_every_problem_is_listed_at_once_with_its_field_value_and_what_is_allowed():
    p = payload(spec__timeout=-5.0, spec__resources__cpu="lots", deal__concurrency=1, deal__confidence=3)
    error = refused(p)
    assert [(problem.field, problem.reason) for problem in error.problems] == [
        (
            "Spec.Timeout",
            "timeout must be a number of seconds >= 0 (0 means the requester's default), not -5.0",
        ),
        (
            "Spec.Resources.CPU",
            "'lots' is not a CPU amount; use cores such as '2' or '1.5', or whole millicores such as '500m'",
        ),
        ("Deal.Confidence", "the deal confidence (3) cannot be higher than the concurrency (1)"),
    ]
    assert str(error).startswith("3 problems: Spec.Timeout: timeout must be")
    assert [str(problem) for problem in submission_problems(p)] == [
        str(problem) for problem in error.problems
    ]


def test_a_context_archive_larger_than_10_mib_is_refused():
    p = payload()
    p.context = b"x" * (10 * 1024 * 1024 + 1)
    error = refused(p)
    assert error.field == "Context" and "at most 10485760" in str(error)


def docker_payload(**changes) -> pb.JobCreatePayload:
    return payload(spec__engine=pb.Engine.ENGINE_DOCKER, spec__docker__image="busybox", **changes)


@pytest.mark.parametrize(
    ("p", "field", "words"),
    [
        (payload(spec__engine=pb.Engine.ENGINE_DOCKER), "Spec.Docker.Image", "needs an image"),
        (
            docker_payload(spec__docker__working_directory="work"),
            "Spec.Docker.WorkingDirectory",
            "'work' is not an absolute path",
        ),
        (payload(spec__engine=pb.Engine.ENGINE_WASM), "Spec.Contexts", "expects one context"),
        (
            payload(
                spec__engine=pb.Engine.ENGINE_LANGUAGE,
                spec__language__language="ruby",
                spec__language__deterministic=True,
            ),
            "Spec.Language.Language",
            "ruby (no version) is not supported (supported: python 3.x, wasm 2.0)",
        ),
        (
            payload(
                spec__engine=pb.Engine.ENGINE_LANGUAGE,
                spec__language__language="python",
                spec__language__language_version="3.10",
                spec__language__command="print(1)",
            ),
            "Spec.Language.DeterministicExecution",
            "non-deterministic python 3.10 not supported yet",
        ),
        (
            payload(
                spec__engine=pb.Engine.ENGINE_LANGUAGE,
                spec__language__language="python",
                spec__language__language_version="2.7",
                spec__language__deterministic=True,
            ),
            "Spec.Language.Language",
            "python 2.7 is not supported",
        ),
        (
            payload(spec__engine=pb.Engine.ENGINE_PYTHON_WASM, spec__language__program_path="../x.py"),
            "Spec.Language.ProgramPath",
            "is outside the job context (/job)",
        ),
    ],
)
def test_each_engine_says_what_its_spec_lacks(p, field, words):
    error = refused(p)
    assert error.field == field and words in str(error)


def test_a_docker_environment_variable_must_be_key_equals_value():
    p = docker_payload()
    p.job.spec.docker.environment_variables.extend(["A=1", "=2"])
    error = refused(p)
    assert error.field == "Spec.Docker.EnvironmentVariables[1]" and "'=2'" in str(error)


def test_a_wasm_job_with_an_inline_context_needs_no_other_context():
    p = payload(spec__engine=pb.Engine.ENGINE_WASM)
    p.context = b"archive bytes (read when stored)"
    validate_submission(p)


@pytest.mark.parametrize(
    ("volume", "field", "words"),
    [
        (
            pb.StorageSpec(
                storage_source=1, cid="QmdckCoPuhEtiNzREtqpYn8dBgY8ifcG82Q4eyEdGCLEiu", path="data"
            ),
            "Spec.inputs[0].path",
            "not absolute",
        ),
        (pb.StorageSpec(storage_source=1, path="/data"), "Spec.inputs[0].CID", "no CID"),
        (
            pb.StorageSpec(storage_source=1, cid="not-a-cid", path="/data"),
            "Spec.inputs[0].CID",
            "is not a CID",
        ),
        (pb.StorageSpec(storage_source=2, path="/data"), "Spec.inputs[0].URL", "no URL"),
    ],
)
def test_input_volumes_need_an_absolute_path_and_what_they_are_fetched_by(volume, field, words):
    p = payload()
    p.job.spec.inputs.append(volume)
    error = refused(p)
    assert error.field == field and words in str(error)


@pytest.mark.parametrize(
    ("outputs", "field", "words"),
    [
        ([pb.StorageSpec(path="/outputs")], "Spec.Outputs[0].Name", "has no name"),
        ([pb.StorageSpec(name="stdout", path="/o")], "Spec.Outputs[0].Name", "cannot be an output folder"),
        ([pb.StorageSpec(name="a/b", path="/o")], "Spec.Outputs[0].Name", "cannot be an output folder"),
        ([pb.StorageSpec(name="out", path="out")], "Spec.Outputs[0].path", "not absolute"),
        (
            [pb.StorageSpec(name="a", path="/o"), pb.StorageSpec(name="b", path="/o")],
            "Spec.Outputs[1]",
            "repeats",
        ),
    ],
)
def test_outputs_need_a_plain_name_and_an_absolute_path(outputs, field, words):
    p = payload()
    p.job.spec.outputs.extend(outputs)
    error = refused(p)
    assert error.field == field and words in str(error)


def test_the_inline_context_becomes_the_first_context_at_job():
    p = payload(spec__engine=pb.Engine.ENGINE_WASM)
    p.job.spec.contexts.append(
        pb.StorageSpec(storage_source=1, cid="QmdckCoPuhEtiNzREtqpYn8dBgY8ifcG82Q4eyEdGCLEiu", path="/lib")
    )
    job = build_job(p, requester_node_id="r", default_job_timeout=60, now=0.0, context_cid="bafyexample")
    assert [(c.cid, c.path) for c in job.spec.contexts] == [
        ("bafyexample", "/job"),
        ("QmdckCoPuhEtiNzREtqpYn8dBgY8ifcG82Q4eyEdGCLEiu", "/lib"),
    ]
    assert job.spec.wasm.entry_point == "_start"


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


def test_two_volumes_a_job_would_see_at_one_path_are_refused():
    def url(address: str, path: str = "/inputs") -> pb.StorageSpec:
        return pb.StorageSpec(
            storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD, url=address, path=path
        )

    p = payload()
    p.job.spec.inputs.extend(
        [
            url("http://a.example/x/data.csv"),
            url("http://b.example/y/data.csv"),
            url("http://c.example/z.csv"),
        ]
    )
    p.job.spec.inputs.add(
        storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS,
        cid="QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
        path="/inputs/z.csv/",
    )
    assert [(problem.field, problem.reason) for problem in refused(p).problems] == [
        ("Spec.inputs[1]", "mounted at /inputs/data.csv, where Spec.inputs[0] is mounted already"),
        ("Spec.inputs[3]", "mounted at /inputs/z.csv, where Spec.inputs[2] is mounted already"),
    ]


def test_a_submission_over_a_limit_is_refused_naming_the_field_and_the_limit():
    from bacalhau_grpc.requester.domain.validation import SubmissionLimits

    p = payload()
    p.job.spec.inputs.extend(
        pb.StorageSpec(
            storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD, url=f"http://h/{i}"
        )
        for i in range(10_001)
    )
    error = refused(p)
    assert [(e.field, e.reason) for e in error.problems] == [
        ("Spec.inputs", "10001 inputs (with contexts and import modules), more than the 10000 a job may have")
    ]
    small = SubmissionLimits(max_annotations=2, max_string_bytes=10, max_job_timeout=60)
    p = payload(spec__timeout=61.0)
    p.job.spec.annotations.extend(["a", "b", "c"])
    assert [e.field for e in refused_with(p, small).problems] == ["Spec.Annotations"]
    p = payload(spec__timeout=61.0)
    p.job.spec.docker.image = "x" * 11
    assert [(e.field, e.reason) for e in refused_with(p, small).problems] == [
        ("Spec.Docker.Image", "11 bytes of text, more than the 10 one value may have")
    ]
    p = payload(spec__timeout=61.0)
    assert [(e.field, e.reason) for e in refused_with(p, small).problems] == [
        ("Spec.Timeout", "timeout 61s is longer than this requester's maximum of 60s")
    ]


def refused_with(p: pb.JobCreatePayload, limits) -> InvalidArgumentError:
    with pytest.raises(InvalidArgumentError) as caught:
        validate_submission(p, limits)
    return caught.value
