"""Job documents (YAML/JSON, flat and v0.3.15 nested shapes) to and from model messages."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bacalhau_grpc.common.errors import InvalidArgumentError, LimitExceededError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.model.jobfile import (
    dict_to_message,
    dump_job,
    load_job,
    load_job_document,
    load_job_with_info,
    message_to_dict,
    parse_job_document,
)
from bacalhau_grpc.common.model.serialization import json_unmarshal_with_max, yaml_unmarshal_with_max
from tests.strategies import messages

DATA = Path(__file__).resolve().parent.parent / "data"
FLAT_JOB = (DATA / "bacalhau_v03_job.yaml").read_text()
NESTED_JOB = (DATA / "bacalhau_v0315_nested_job.yaml").read_text()
NODE = "QmdZQ7ZbhnvWY1J12XYKGHApJ6aufKyLNSvf8jZBrBaAVL"
IPFS = pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS
URL_DOWNLOAD = pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD


def _error(text: str, **kwargs) -> InvalidArgumentError:
    with pytest.raises(InvalidArgumentError) as info:
        load_job_document(text, **kwargs)
    return info.value


# --- Round trips ------------------------------------------------------------------------------------

ROUND_TRIP_CLASSES = [pb.Job, pb.JobWithInfo, pb.JobEvent, pb.JobShardState, pb.RunCommandResult]


@pytest.mark.parametrize("message_class", ROUND_TRIP_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_dict_round_trip_is_lossless(message_class, data):
    message = data.draw(messages(message_class))
    assert dict_to_message(message_to_dict(message), message_class) == message


@pytest.mark.parametrize("message_class", ROUND_TRIP_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_json_and_yaml_round_trips_are_lossless(message_class, data):
    message = data.draw(messages(message_class))
    json_text = dump_job(message, "json")
    yaml_text = dump_job(message, "yaml")
    assert dict_to_message(json_unmarshal_with_max(json_text), message_class) == message
    assert dict_to_message(yaml_unmarshal_with_max(yaml_text), message_class) == message


@pytest.mark.parametrize("message_class", [pb.Job, pb.JobWithInfo], ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_job_documents_load_back_in_either_format(message_class, data):
    message = data.draw(messages(message_class))
    for format in ("json", "yaml"):
        text = dump_job(message, format)
        assert load_job_document(text) == message  # "auto" tells JSON from YAML
        assert load_job_document(text, format=format) == message


@settings(max_examples=30, deadline=None)
@given(messages(pb.Job))
def test_writing_is_deterministic(job):
    copy = pb.Job.FromString(job.SerializeToString())
    assert dump_job(job, "json") == dump_job(copy, "json")
    assert dump_job(job, "yaml") == dump_job(copy, "yaml")


def test_exit_code_zero_is_written_and_unset_is_not():
    assert message_to_dict(pb.RunCommandResult(exit_code=0)) == {"exitCode": 0}
    assert message_to_dict(pb.RunCommandResult()) == {}
    zero = dict_to_message({"exitCode": 0}, pb.RunCommandResult)
    assert zero.HasField("exit_code") and zero.exit_code == 0
    assert not dict_to_message({}, pb.RunCommandResult).HasField("exit_code")
    assert not dict_to_message({"exitCode": None}, pb.RunCommandResult).HasField("exit_code")
    for format in ("json", "yaml"):
        event = pb.JobEvent(run_output=pb.RunCommandResult(exit_code=0, stdout="hi\n"))
        assert (
            load_job_document(dump_job(pb.Job(events=[event]), format))
            .events[0]
            .run_output.HasField("exit_code")
        )


def test_empty_submessage_is_kept_as_an_empty_object():
    job = pb.Job()
    job.deal.SetInParent()
    assert message_to_dict(job) == {"Deal": {}}
    assert dict_to_message({"Deal": {}}, pb.Job).HasField("deal")
    assert not dict_to_message({"Deal": None}, pb.Job).HasField("deal")


# --- Writing: Go's JSON forms -----------------------------------------------------------------------


def test_values_are_written_in_gos_json_forms():
    shard = pb.JobShardState(
        node_id="n1",
        state=pb.JobStateType.JOB_STATE_TYPE_COMPLETED,
        verification_proposal=b"\x00\x01\xfe\xff",
        published_result=pb.StorageSpec(storage_source=URL_DOWNLOAD, path="/o"),
        run_output=pb.RunCommandResult(stdout="ok", exit_code=3),
    )
    job = pb.Job(
        spec=pb.Spec(engine=pb.Engine.ENGINE_PYTHON_WASM, timeout=600.0),
        state=pb.JobState(nodes={"n1": pb.JobNodeState(shards={10: shard, 2: pb.JobShardState()})}),
    )
    job.created_at.FromDatetime(datetime(2022, 11, 17, 13, 29, 1, 871140, tzinfo=UTC))
    job.created_at.nanos += 291
    assert message_to_dict(job) == {
        "Spec": {"Engine": "PythonWasm", "Timeout": 600},
        "CreatedAt": "2022-11-17T13:29:01.871140291Z",
        "JobState": {
            "Nodes": {
                "n1": {
                    "Shards": {
                        "10": {
                            "NodeId": "n1",
                            "State": "Completed",
                            "VerificationProposal": "AAH+/w==",
                            "PublishedResults": {"StorageSource": "URLDownload", "path": "/o"},
                            "RunOutput": {"stdout": "ok", "exitCode": 3},
                        },
                        "2": {},
                    }
                }
            }
        },
    }
    # Go sorts map keys as strings: "10" before "2".
    assert list(message_to_dict(job)["JobState"]["Nodes"]["n1"]["Shards"]) == ["10", "2"]


@pytest.mark.parametrize(
    ("seconds", "nanos", "text"),
    [
        (0, 0, "1970-01-01T00:00:00Z"),
        (1668691741, 500_000_000, "2022-11-17T13:29:01.5Z"),
        (1668691741, 1, "2022-11-17T13:29:01.000000001Z"),
        (-62135596800, 0, "0001-01-01T00:00:00Z"),
        (253402300799, 999_999_999, "9999-12-31T23:59:59.999999999Z"),
    ],
)
def test_timestamps_are_written_like_gos_time_time(seconds, nanos, text):
    job = pb.Job()
    job.created_at.seconds, job.created_at.nanos = seconds, nanos
    assert message_to_dict(job) == {"CreatedAt": text}
    assert dict_to_message({"CreatedAt": text}, pb.Job) == job


def test_enum_without_go_text_is_a_number():
    policy = pb.JobSelectionPolicy(
        locality=pb.JobSelectionDataLocality.JOB_SELECTION_DATA_LOCALITY_ANYWHERE, probe_http="http://x"
    )
    assert message_to_dict(policy) == {"locality": 1, "probe_http": "http://x"}
    assert dict_to_message({"locality": 1}, pb.JobSelectionPolicy) == pb.JobSelectionPolicy(locality=1)
    with pytest.raises(InvalidArgumentError, match="locality: expected an integer, got string 'anywhere'"):
        dict_to_message({"locality": "anywhere"}, pb.JobSelectionPolicy)


def test_json_output_is_indented_by_four_spaces_with_go_escapes():
    job = pb.Job(
        api_version="V1beta1", spec=pb.Spec(docker=pb.JobSpecDocker(entrypoint=["sh", "-c", "a > b"]))
    )
    assert dump_job(job, "json") == (
        "{\n"
        '    "APIVersion": "V1beta1",\n'
        '    "Spec": {\n'
        '        "Docker": {\n'
        '            "Entrypoint": [\n'
        '                "sh",\n'
        '                "-c",\n'
        '                "a \\u003e b"\n'
        "            ]\n"
        "        }\n"
        "    }\n"
        "}"
    )


def test_non_finite_floats_cannot_be_written():
    with pytest.raises(InvalidArgumentError, match=r"Spec\.Timeout: cannot write inf"):
        message_to_dict(pb.Job(spec=pb.Spec(timeout=float("inf"))))


def test_out_of_range_timestamp_cannot_be_written():
    job = pb.Job()
    job.created_at.seconds = 253402300800
    with pytest.raises(InvalidArgumentError, match=r"CreatedAt: timestamp .* outside years 1 to 9999"):
        message_to_dict(job)


def test_dump_job_over_the_output_limit_names_it():
    job = pb.Job(spec=pb.Spec(annotations=["x" * (1024 * 1024)] * 11))
    for format in ("json", "yaml"):
        with pytest.raises(LimitExceededError, match="MaxSerializedStringOutput") as info:
            dump_job(job, format)
        assert info.value.limit == "MaxSerializedStringOutput"


# --- The example job files --------------------------------------------------------------------------


def test_flat_v03_job_file_loads_into_the_proto_job():
    job = load_job(FLAT_JOB)
    assert job.api_version == "V1beta1"
    assert job.id == "92d5d4ee-3765-4f78-8353-623f5f26df08"
    assert job.requester_node_id == "QmXaXu9N5GNetatsvwnTfQqNtSeKAD6uCmarbh3LMRYAcF"
    assert job.requester_public_key.startswith(b"\x08\x00\x12\xa6\x02")
    spec = job.spec
    assert (spec.engine, spec.verifier, spec.publisher) == (
        pb.Engine.ENGINE_DOCKER,
        pb.Verifier.VERIFIER_DETERMINISTIC,
        pb.Publisher.PUBLISHER_IPFS,
    )
    assert spec.docker.image == "ubuntu:22.04"
    assert list(spec.docker.entrypoint) == [
        "bash",
        "-c",
        'for f in /inputs/data/*.csv; do wc -l "$f"; done > /outputs/counts.txt',
    ]
    assert list(spec.docker.environment_variables) == ["LC_ALL=C", "GREETING=hello world"]
    assert spec.docker.working_directory == "/inputs"
    assert (spec.resources.cpu, spec.resources.memory, spec.resources.gpu) == ("500m", "1Gb", "1")
    assert spec.timeout == 1800.0
    assert [(i.storage_source, i.cid, i.url, i.path) for i in spec.inputs] == [
        (
            IPFS,
            "QmYgxZiySj3MRkwLSL4X2MF5F9f2PMhAE3LV49XkfNL1o3",
            "",
            "/inputs/data",
        ),
        (
            URL_DOWNLOAD,
            "",
            "https://example.org/data/README.md",
            "/inputs/readme",
        ),
    ]
    assert [(o.storage_source, o.name, o.path) for o in spec.outputs] == [(IPFS, "outputs", "/outputs")]
    assert list(spec.annotations) == ["example", "csv"]
    assert (spec.sharding.glob_pattern, spec.sharding.batch_size, spec.sharding.base_path) == (
        "data/*.csv",
        2,
        "/inputs",
    )
    assert (job.deal.concurrency, job.deal.confidence, job.deal.min_bids) == (2, 2, 2)
    assert job.execution_plan.total_shards == 3
    assert (job.created_at.seconds, job.created_at.nanos) == (1668691741, 871140291)
    assert job.state.nodes[NODE].shards[0].state == pb.JobStateType.JOB_STATE_TYPE_RUNNING


@pytest.mark.parametrize("format", ["yaml", "json"])
def test_flat_v03_job_file_writes_back_equal(format):
    written = dump_job(load_job(FLAT_JOB), format)
    assert yaml.safe_load(written) == yaml.safe_load(FLAT_JOB)


def test_v0315_nested_job_file_loads_to_the_same_proto():
    assert load_job(NESTED_JOB) == load_job(FLAT_JOB)
    assert yaml.safe_load(dump_job(load_job(NESTED_JOB))) == yaml.safe_load(FLAT_JOB)


def test_nested_shape_as_json_loads_too():
    assert load_job(json.dumps(yaml_unmarshal_with_max(NESTED_JOB))) == load_job(FLAT_JOB)


def test_nested_and_flat_places_may_repeat_a_value_but_not_contradict_it():
    same = "Spec: {Deal: {Concurrency: 2}}\nDeal: {concurrency: 2}\n"
    assert load_job(same).deal.concurrency == 2
    error = _error("Spec: {Deal: {Concurrency: 2}}\nDeal: {Concurrency: 3}\n")
    assert "Spec.Deal" in str(error) and "Deal" in error.field
    assert "given twice with different values, at Spec.Deal and Deal" in str(error)
    error = _error("Metadata: {ID: a}\nID: b\n")
    assert "at Metadata.ID and ID" in str(error)
    error = _error("Status: {Requester: {RequesterNodeID: a}}\nRequesterNodeID: b\n")
    assert "at Status.Requester.RequesterNodeID and RequesterNodeID" in str(error)


def test_unknown_key_inside_a_nested_wrapper_names_its_path():
    error = _error("Metadata: {ID: a, Owner: me}\n")
    assert error.field == "Metadata.Owner"
    assert "valid fields: ID, CreatedAt, ClientID" in str(error)
    error = _error("Status: {Requester: {NodeID: a}}\n")
    assert error.field == "Status.Requester.NodeID"
    assert "RequesterNodeID, RequesterPublicKey" in str(error)


def test_job_with_info_document():
    document = {
        "Job": {
            "APIVersion": "V1beta1",
            "ID": "job-1",
            "Spec": {"Engine": "Wasm", "Wasm": {"EntryPoint": "_start", "EnvironmentVariables": {"A": "1"}}},
        },
        "JobState": {
            "Nodes": {
                "node-1": {
                    "Shards": {
                        "0": {
                            "NodeId": "node-1",
                            "ShardIndex": 0,
                            "State": "Completed",
                            "VerificationProposal": "c2hhMjU2OmFiYw==",
                            "VerificationResult": {"Complete": True, "Result": True},
                            "PublishedResults": {"StorageSource": "IPFS", "CID": "QmResult"},
                            "RunOutput": {"stdout": "hello\n", "exitCode": 0},
                        },
                        "1": {"NodeId": "node-1", "ShardIndex": 1, "State": "Error", "Status": "boom"},
                    }
                }
            }
        },
        "JobEvents": [
            {
                "JobID": "job-1",
                "EventName": "ResultsProposed",
                "SourceNodeID": "node-1",
                "VerificationProposal": "c2hhMjU2OmFiYw==",
                "EventTime": "2022-11-17T13:32:55.756658941Z",
            },
            {"JobID": "job-1", "EventName": "Created", "EventTime": "2022-11-17T14:32:55+01:00"},
        ],
        "JobLocalEvents": [{"EventName": "BidAccepted", "JobID": "job-1", "ShardIndex": 1}],
    }
    text = json.dumps(document, indent=2)
    info = load_job_document(text)
    assert isinstance(info, pb.JobWithInfo)
    assert info.job.id == "job-1" and info.job.spec.engine == pb.Engine.ENGINE_WASM
    assert dict(info.job.spec.wasm.environment_variables) == {"A": "1"}
    shard = info.job_state.nodes["node-1"].shards[0]
    assert shard.state == pb.JobStateType.JOB_STATE_TYPE_COMPLETED
    assert shard.verification_proposal == b"sha256:abc"
    assert shard.published_result.cid == "QmResult"
    assert shard.run_output.HasField("exit_code") and shard.run_output.exit_code == 0
    assert info.job_state.nodes["node-1"].shards[1].status == "boom"
    first, second = info.job_events
    assert first.event_name == pb.JobEventType.JOB_EVENT_TYPE_RESULTS_PROPOSED
    assert first.verification_proposal == b"sha256:abc"
    assert (first.event_time.seconds, first.event_time.nanos) == (1668691975, 756658941)
    assert (second.event_time.seconds, second.event_time.nanos) == (1668691975, 0)  # +01:00 is UTC-1h
    assert info.job_local_events[0].event_name == pb.JobLocalEventType.JOB_LOCAL_EVENT_TYPE_BID_ACCEPTED
    # `load_job` takes the inner Job, as Go's `create` does; `load_job_with_info` keeps everything.
    assert load_job(text) == info.job
    assert load_job_with_info(text) == info
    # It writes back to the same document, apart from Go's omitted zero values.
    written = json.loads(dump_job(info, "json"))
    del document["JobState"]["Nodes"]["node-1"]["Shards"]["0"]["ShardIndex"]  # 0 is omitted
    document["JobEvents"][1]["EventTime"] = "2022-11-17T13:32:55Z"  # written in UTC
    assert written == document


def test_plain_job_loads_as_job_with_info_too():
    assert load_job_with_info("ID: j1\n") == pb.JobWithInfo(job=pb.Job(id="j1"))


def test_top_level_job_key_is_case_insensitive():
    assert isinstance(load_job_document("job: {ID: j1}\n"), pb.JobWithInfo)
    assert load_job("JOB: {ID: j1}\n").id == "j1"


# --- Go's lenient reading ---------------------------------------------------------------------------


def test_keys_and_enum_text_ignore_case():
    job = load_job(
        "apiversion: V1beta1\n"
        "spec:\n"
        "  engine: docker\n"
        "  VERIFIER: NOOP\n"
        "  docker: {IMAGE: ubuntu}\n"
        "  INPUTS: [{storagesource: urldownload, url: 'https://x', PATH: /in}]\n"
        "  Outputs: [{NAME: outputs, Path: /outputs}]\n"
        "deal: {concurrency: 1}\n"
    )
    assert job.api_version == "V1beta1"
    assert job.spec.engine == pb.Engine.ENGINE_DOCKER and job.spec.verifier == pb.Verifier.VERIFIER_NOOP
    assert job.spec.docker.image == "ubuntu"
    assert job.spec.inputs[0] == pb.StorageSpec(storage_source=URL_DOWNLOAD, url="https://x", path="/in")
    assert job.spec.outputs[0] == pb.StorageSpec(name="outputs", path="/outputs")
    assert job.deal.concurrency == 1


def test_one_field_under_two_spellings_must_agree():
    assert load_job("Spec: {Engine: Docker}\nspec: {engine: docker}\n").spec.engine == pb.Engine.ENGINE_DOCKER
    error = _error("Spec: {Engine: Docker}\nspec: {Engine: Wasm}\n")
    assert "Spec is given twice with different values, at Spec and spec" in str(error)


def test_numbers_and_booleans_become_text_in_string_fields_like_gos_yaml():
    job = load_job("Spec: {Resources: {GPU: 1, CPU: 0.5, Memory: 2.0}, Annotations: [true, 7]}\nID: 12\n")
    assert (job.spec.resources.gpu, job.spec.resources.cpu, job.spec.resources.memory) == ("1", "0.5", "2")
    assert list(job.spec.annotations) == ["true", "7"]
    assert job.id == "12"
    # The generic reader is strict unless asked.
    with pytest.raises(InvalidArgumentError, match=r"ID: expected a string, got integer 12"):
        dict_to_message({"ID": 12}, pb.Job)


def test_yaml_quirks_int_keys_datetimes_and_go_floats():
    # Shards keyed by YAML integers; `Timeout: 1e3` is a float in Go's YAML.
    job = load_job(f"JobState: {{Nodes: {{{NODE}: {{Shards: {{0: {{State: Bidding}}, 7: {{}}}}}}}}}}\n")
    assert set(job.state.nodes[NODE].shards) == {0, 7}
    assert load_job("Spec: {Timeout: 1e3}\n").spec.timeout == 1000.0
    # PyYAML's own loader turns timestamps into datetimes (microseconds only): those are read too.
    data = yaml.safe_load(
        "CreatedAt: 2022-11-17T14:29:01.871140+01:00\nJobEvents: [{EventTime: 2022-11-17 13:29:01}]\n"
    )
    assert isinstance(data["CreatedAt"], datetime)
    job = dict_to_message(data, pb.Job)
    assert (job.created_at.seconds, job.created_at.nanos) == (1668691741, 871140000)
    assert job.events[0].event_time.seconds == 1668691741  # a naive datetime is UTC
    # Our own loader keeps the text, so nanoseconds survive.
    assert load_job("CreatedAt: 2022-11-17T13:29:01.871140291Z\n").created_at.nanos == 871140291


def test_timestamps_with_offsets_and_fractions():
    job = load_job("CreatedAt: 2022-11-17t08:59:01.1-04:30\n")
    assert (job.created_at.seconds, job.created_at.nanos) == (1668691741, 100_000_000)


def test_null_means_unset():
    job = load_job("ID: null\nSpec: {Engine: ~, Docker: null, inputs: [null, {CID: x}]}\nDeal: null\n")
    assert job.id == "" and not job.HasField("deal")
    assert job.spec.engine == pb.Engine.ENGINE_UNSPECIFIED and not job.spec.HasField("docker")
    assert list(job.spec.inputs) == [pb.StorageSpec(), pb.StorageSpec(cid="x")]  # Go's zero struct


def test_bytes_accept_yaml_binary_and_line_broken_base64():
    assert load_job("RequesterPublicKey: !!binary AAEC\n").requester_public_key == b"\x00\x01\x02"
    assert load_job('{"RequesterPublicKey": "AA\\nEC"}').requester_public_key == b"\x00\x01\x02"


# --- Bad input: each error names the path or the limit ----------------------------------------------


def test_malformed_yaml_gives_line_and_column():
    error = _error("Spec:\n  Engine: Docker\n   Verifier: Noop\n")
    assert "malformed YAML at line 3, column" in str(error)


def test_malformed_json_gives_line_and_column():
    # (A trailing comma is fine: YAML reads it, and Go passes JSON through its YAML reader.)
    error = _error('{\n  "Spec": {\n    "Engine": "Docker"\n    "Verifier": "Noop"\n  }\n}')
    assert "malformed JSON at line 4, column 5: Expecting ',' delimiter" in str(error)
    assert "malformed JSON at line 1" in str(_error('{"ID": "x",}', format="json"))


def test_unknown_enum_text_names_the_path_and_the_valid_values():
    error = _error("Spec: {Engine: Dockerr}\n")
    assert error.field == "Spec.Engine"
    assert str(error) == (
        "Spec.Engine: unknown Engine 'Dockerr'; valid values: Noop, Docker, Wasm, Language, PythonWasm"
    )
    error = _error("Spec: {inputs: [{}, {StorageSource: S3}]}\n")
    assert error.field == "Spec.inputs[1].StorageSource"
    assert "IPFS, URLDownload, FilecoinUnsealed, Filecoin, Estuary" in str(error)
    error = _error("Spec: {Engine: 2}\n")
    assert error.field == "Spec.Engine"
    assert "expected a Engine name (Noop, Docker, Wasm, Language, PythonWasm), got integer 2" in str(error)


def test_unknown_key_names_the_dotted_path_and_valid_keys():
    error = _error("Spec:\n  Docker:\n    Imagee: ubuntu\n")
    assert error.field == "Spec.Docker.Imagee"
    assert str(error) == (
        "Spec.Docker.Imagee: unknown field 'Imagee'; valid fields: Image, Entrypoint, "
        "EnvironmentVariables, WorkingDirectory"
    )
    assert _error("Spec: {outputs: [{Name: o, Pathh: /o}]}\n").field == "Spec.outputs[0].Pathh"
    assert _error(f"JobState: {{Nodes: {{{NODE}: {{Shards: {{0: {{Nope: 1}}}}}}}}}}\n").field == (
        f"JobState.Nodes[{NODE}].Shards[0].Nope"
    )


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("Spec: {inputs: ipfs}", "Spec.inputs", "expected a list, got string 'ipfs'"),
        ("Spec: docker", "Spec", "expected an object, got string 'docker'"),
        ("Deal: {Concurrency: '2'}", "Deal.Concurrency", "expected an integer, got string '2'"),
        ("Deal: {Concurrency: 1.5}", "Deal.Concurrency", "expected an integer, got number 1.5"),
        ("Deal: {Concurrency: true}", "Deal.Concurrency", "expected an integer, got boolean true"),
        ("Spec: {Timeout: true}", "Spec.Timeout", "expected a number, got boolean true"),
        ("Spec: {Timeout: '600'}", "Spec.Timeout", "expected a number, got string '600'"),
        ("Spec: {Timeout: .inf}", "Spec.Timeout", "is not a finite 64-bit float"),
        (
            "Spec: {DoNotTrack: 'yes'}",
            "Spec.DoNotTrack",
            "expected a boolean (true or false), got string 'yes'",
        ),
        ("Spec: {Docker: {Entrypoint: [[a]]}}", "Spec.Docker.Entrypoint[0]", "expected a string, got a list"),
        (
            "Spec: {Wasm: {EnvironmentVariables: [A=1]}}",
            "Spec.Wasm.EnvironmentVariables",
            "expected an object",
        ),
        (
            "JobState: {Nodes: {n: {Shards: {x: {}}}}}",
            "JobState.Nodes[n].Shards",
            "'x' is not a decimal integer",
        ),
    ],
)
def test_wrong_types_name_the_path_and_the_expected_type(text, field, message):
    error = _error(text + "\n")
    assert error.field == field
    assert message in str(error)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"Deal": {"Concurrency": 9223372036854775808}}', "Deal.Concurrency"),
        ('{"Deal": {"MinBids": -9223372036854775809}}', "Deal.MinBids"),
        ('{"JobEvents": [{"ShardIndex": 1e30}]}', "JobEvents[0].ShardIndex"),
        (
            '{"JobState": {"Nodes": {"n": {"Shards": {"9223372036854775808": {}}}}}}',
            "JobState.Nodes[n].Shards",
        ),
    ],
)
def test_integers_out_of_range_name_the_path(text, field):
    error = _error(text)
    assert error.field.startswith(field)
    assert "out of range for int64" in str(error) or "expected an integer" in str(error)


def test_uint64_range():
    assert dict_to_message({"Memory": 2**64 - 1}, pb.ResourceUsageData).memory == 2**64 - 1
    with pytest.raises(InvalidArgumentError, match=r"Memory: -1 is out of range for uint64"):
        dict_to_message({"Memory": -1}, pb.ResourceUsageData)
    with pytest.raises(
        InvalidArgumentError, match=r"Memory: 18446744073709551616 is out of range for uint64"
    ):
        dict_to_message({"Memory": 2**64}, pb.ResourceUsageData)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("RequesterPublicKey: 'not base64!'", "RequesterPublicKey"),
        ("RequesterPublicKey: AAE", "RequesterPublicKey"),  # missing padding, as Go's StdEncoding
        ("JobEvents: [{}, {SenderPublicKey: '***'}]", "JobEvents[1].SenderPublicKey"),
    ],
)
def test_bad_base64_names_the_path(text, field):
    error = _error(text + "\n")
    assert error.field == field
    assert "is not standard base64" in str(error)


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2022-11-17",  # a date alone
        "2022-11-17 13:29:01Z",  # a space instead of T
        "2022-13-17T13:29:01Z",  # month 13
        "2022-11-17T13:29:01.1234567890Z",  # ten fractional digits
        "2022-11-17T13:29:01+25:00",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    ],
)
def test_bad_timestamp_names_the_path(value):
    error = _error(f'{{"JobEvents": [{{"EventTime": "{value}"}}]}}')
    assert error.field == "JobEvents[0].EventTime"
    assert value in str(error)


def test_timestamp_of_wrong_type_names_the_path():
    error = _error('{"CreatedAt": 1668691741}')
    assert error.field == "CreatedAt"
    assert "expected an RFC 3339 timestamp" in str(error)


def test_document_over_10_mib_names_the_limit():
    text = "Spec:\n  Annotations:\n" + "    - " + "x" * (10 * 1024 * 1024) + "\n"
    for format in ("auto", "yaml", "json"):
        with pytest.raises(LimitExceededError, match="MaxSerializedStringInput") as info:
            load_job(text, format=format)
        assert info.value.limit == "MaxSerializedStringInput"


@pytest.mark.parametrize("text", ["[" + ", ".join(["{}"] * 1001) + "]", "- {}\n" * 1001])
def test_top_level_list_over_1000_names_the_limit(text):
    with pytest.raises(LimitExceededError, match="MaxNumberOfObjectsToSerialize") as info:
        load_job(text)
    assert info.value.limit == "MaxNumberOfObjectsToSerialize"


@pytest.mark.parametrize("text", ["", "   \n", "# nothing here\n", "null", "---\n"])
def test_empty_document_says_so(text):
    assert str(_error(text)) == "the job document is empty"


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("[{}]", "a list"),
        ("- Spec: {}\n", "a list"),
        ("42", "integer 42"),
        ("just text", "string 'just text'"),
    ],
)
def test_document_that_is_not_a_mapping_says_so(text, what):
    assert str(_error(text)) == f"a job document must be a mapping of field names to values, got {what}"


def test_two_yaml_documents_are_refused():
    assert "more than one document" in str(_error("ID: a\n--- {ID: b}\n"))


def test_unknown_format_is_refused():
    assert "unknown format 'toml'" in str(_error("ID: a", format="toml"))


def test_parse_job_document_works_on_parsed_data():
    assert parse_job_document({"id": "a"}) == pb.Job(id="a")
    assert parse_job_document({"Job": {"ID": "a"}}) == pb.JobWithInfo(job=pb.Job(id="a"))
