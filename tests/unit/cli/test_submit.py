"""The submitting commands' flags, the jobs they build, the local checks, --dry-run and the --wait printout
(in-process: parsers, builders and printers; the commands themselves run in tests/e2e/test_cli_run.py)."""

import argparse
import io
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bacalhau_grpc.cli import create, follow, run, submit, submit_flags
from bacalhau_grpc.cli.flags import CommandError
from bacalhau_grpc.cli.validate import validate_text
from bacalhau_grpc.common.model import jobfile, pb
from bacalhau_grpc.sdk import sdk_types
from bacalhau_grpc.sdk.client import to_pb

CID = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
CID2 = "bafybeiet4cxeqg5lztl75ktr7756kfhmgtckwpzisy7rcizrnrtn6zubt4"
E = sdk_types.JobEventType
S = pb.JobStateType


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bacalhau-grpc")
    commands = parser.add_subparsers(dest="command", required=True)
    create.add_parser(commands)
    run.add_parsers(commands)
    return parser.parse_args(argv)


def docker_job(*argv: str) -> pb.Job:
    return to_pb(run.docker_submission(parse("docker", "run", *argv)).job, pb.Job)


# ------------------------------------------------------------------------------------------------ flags


@pytest.mark.parametrize(
    ("argv", "wait"),
    [
        ((), True),
        (("--wait",), True),
        (("--wait=false",), False),
        (("--wait=0",), False),
        (("--wait=F",), False),
        (("--no-wait",), False),
        (("--wait=false", "--wait=true"), True),
        (("--wait=TRUE",), True),
    ],
)
def test_wait_takes_gos_boolean_forms(argv, wait):
    args = parse("docker", "run", *argv, "ubuntu")
    assert (args.wait, args.image) == (wait, "ubuntu")


def test_a_boolean_flag_never_eats_the_next_word():
    args = parse("docker", "run", "--wait", "--id-only", "ubuntu", "echo", "hi")
    assert (args.wait, args.id_only, args.image, args.command) == (True, True, "ubuntu", ["echo", "hi"])


def test_words_after_the_image_are_the_entrypoint_and_flags_for_it_follow_double_dash():
    args = parse("docker", "run", "-c", "3", "ubuntu", "--", "sh", "-c", "echo -n hi")
    assert (args.concurrency, args.command) == (3, ["sh", "-c", "echo -n hi"])
    python = parse("run", "python", "-c", "print(1)", "--concurrency", "2")  # -c is the command here
    assert (python.command, python.concurrency) == ("print(1)", 2)


def test_defaults_are_v03s_with_a_downloadable_publisher():
    args = parse("docker", "run", "ubuntu")
    assert (args.concurrency, args.confidence, args.min_bids, args.timeout) == (1, 0, 0, 1800.0)
    assert (args.wait_timeout_secs, args.gettimeout, args.download_timeout_secs) == (600.0, 10.0, 300.0)
    assert (args.engine, args.verifier, args.publisher) == ("docker", "noop", "local")
    assert (args.sharding_base_path, args.sharding_batch_size) == ("/inputs", 1)
    assert not (args.id_only or args.download or args.dry_run or args.node_details)


def test_lists_split_on_commas_like_pflag_and_env_keeps_commas_inside_a_value():
    assert submit_flags.split_list(["a,b", " c ", "", '"d,e",f']) == ["a", "b", "c", "d,e", "f"]
    assert submit_flags.split_env(["A=1,B=2", "LIST=a,b,c", "X=y"]) == ["A=1", "B=2", "LIST=a,b,c", "X=y"]
    assert submit_flags.env_map(["A=1,B=x,y"]) == {"A": "1", "B": "x,y"}
    for bad in ("=1", "A=", "A"):
        with pytest.raises(CommandError, match="invalid environment variable"):
            submit_flags.env_map([bad])


def test_unsafe_labels_are_dropped_with_a_warning():
    warnings = io.StringIO()
    assert submit_flags.safe_labels(["ok,a.b~c", "has space", "emoji🐟", "x$y"], warn=warnings) == [
        "ok",
        "a.b~c",
        "emoji🐟",
    ]
    assert warnings.getvalue().count("dropped") == 2


# ----------------------------------------------------------------------------------------- the jobs built


def test_docker_run_builds_v03s_job():
    job = docker_job(
        "-i",
        CID,
        "-u",
        "'https://example.com/data/file.csv'",
        "-v",
        f"{CID2}:/data",
        "-o",
        "res:/res",
        "-e",
        "A=1",
        "-w",
        "/work",
        "-l",
        "x,y",
        "--cpu",
        "500m",
        "--memory",
        "1Gb",
        "--confidence",
        "1",
        "-c",
        "2",
        "--verifier",
        "Deterministic",
        "--timeout",
        "60",
        "--sharding-glob-pattern",
        "*.csv",
        "--sharding-base-path",
        "/inputs/",
        "img:1",
        "--",
        "wc",
        "-l",
    )
    spec = job.spec
    assert job.api_version == "V1beta1"
    assert (spec.engine, spec.verifier, spec.publisher) == (
        pb.Engine.ENGINE_DOCKER,
        pb.Verifier.VERIFIER_DETERMINISTIC,
        pb.Publisher.PUBLISHER_LOCAL,
    )
    assert (spec.docker.image, list(spec.docker.entrypoint)) == ("img:1", ["wc", "-l"])
    assert (list(spec.docker.environment_variables), spec.docker.working_directory) == (["A=1"], "/work")
    assert [(i.storage_source, i.cid, i.url, i.path) for i in spec.inputs] == [
        (pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS, CID, "", "/inputs"),
        (
            pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD,
            "",
            "https://example.com/data/file.csv",
            "/inputs",
        ),
        (pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS, CID2, "", "/data"),
    ]
    assert [(o.name, o.path) for o in spec.outputs] == [("outputs", "/outputs"), ("res", "/res")]
    assert list(spec.annotations) == ["x", "y"]
    assert (spec.resources.cpu, spec.resources.memory, spec.resources.gpu) == ("500m", "1Gb", "")
    assert (spec.sharding.glob_pattern, spec.sharding.base_path, spec.sharding.batch_size) == (
        "*.csv",
        "/inputs",
        1,
    )
    assert (job.deal.concurrency, job.deal.confidence, spec.timeout) == (2, 1, 60.0)
    submit.verify(job)  # the requester would take it


def test_a_plain_docker_run_sets_no_empty_blocks():
    job = docker_job("ubuntu")
    assert not job.spec.HasField("resources") and not job.spec.HasField("sharding")
    assert jobfile.message_to_dict(job) == {
        "APIVersion": "V1beta1",
        "Spec": {
            "Engine": "Docker",
            "Verifier": "Noop",
            "Publisher": "Local",
            "Docker": {"Image": "ubuntu"},
            "Timeout": 1800,
            "outputs": [{"StorageSource": "IPFS", "Name": "outputs", "path": "/outputs"}],
        },
        "Deal": {"Concurrency": 1},
    }


def test_an_output_at_the_same_path_replaces_the_earlier_one():
    warnings = io.StringIO()
    outputs = submit_flags.output_volumes(["a:/x", "b:/x", "out:/outputs"], warn=warnings)
    assert [(o.name, o.path) for o in outputs] == [("out", "/outputs"), ("b", "/x")]
    assert warnings.getvalue() == "WARNING: output volume b:/x replaces a:/x\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("-v", "nocolon"), "invalid input volume: nocolon"),
        (("-v", "a:b:c"), "invalid input volume: a:b:c"),
        (("-o", "x"), "invalid output volume: x"),
        (("-w", "work"), "workdir must be an absolute path. Passed in: work"),
        (("--engine", "cobol"), "--engine: unknown Engine 'cobol'"),
        (("--publisher", "s3"), "--publisher: unknown Publisher 's3'"),
    ],
)
def test_bad_flag_values_are_v03s_messages(argv, message):
    with pytest.raises(CommandError) as err:
        docker_job(*argv, "ubuntu")
    assert str(err.value).startswith(message)


def test_engine_and_enum_flags_ignore_case():
    job = docker_job("--engine", "NOOP", "--publisher", "IPFS", "--verifier", "noop", "ubuntu")
    assert (job.spec.engine, job.spec.publisher) == (pb.Engine.ENGINE_NOOP, pb.Publisher.PUBLISHER_IPFS)


def test_do_not_track_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    assert docker_job("ubuntu").spec.do_not_track
    monkeypatch.delenv("DO_NOT_TRACK")
    assert not docker_job("ubuntu").spec.do_not_track


def test_wasm_run_of_a_local_module_uploads_it_as_the_context(tmp_path):
    module = tmp_path / "main.wasm"
    module.write_bytes(b"\0asm\1\0\0\0")
    submission = run.wasm_submission(parse("wasm", "run", str(module), "a", "b", "-e", "K=V"))
    job = to_pb(submission.job, pb.Job)
    with tarfile.open(fileobj=io.BytesIO(submission.context), mode="r:gz") as archive:
        assert archive.getnames() == ["main.wasm"]
        assert archive.extractfile("main.wasm").read() == module.read_bytes()
    assert (job.spec.engine, job.spec.wasm.entry_point, list(job.spec.wasm.parameters)) == (
        pb.Engine.ENGINE_WASM,
        "_start",
        ["a", "b"],
    )
    assert dict(job.spec.wasm.environment_variables) == {"K": "V"}
    assert job.spec.verifier == pb.Verifier.VERIFIER_NOOP  # deterministic only with more than one node
    assert not job.spec.contexts and submission.notice.startswith(f'Uploading "{module}" to server')
    submit.verify(job, submission.context)


def test_wasm_run_of_a_cid_mounts_it_as_the_context_and_checks_with_more_nodes():
    submission = run.wasm_submission(parse("wasm", "run", CID, "-c", "3", "-I", CID2, "-I", f"{CID}:/m/x"))
    job = to_pb(submission.job, pb.Job)
    assert submission.context == b""
    assert [(c.cid, c.path) for c in job.spec.contexts] == [(CID, "/job")]
    assert job.spec.verifier == pb.Verifier.VERIFIER_DETERMINISTIC
    assert [(m.cid, m.path) for m in job.spec.wasm.import_modules] == [(CID2, "/modules/0"), (CID, "/m/x")]
    submit.verify(job)


def test_wasm_run_refuses_what_is_neither_a_cid_nor_a_file(tmp_path):
    with pytest.raises(CommandError, match="is not a valid CID or local file"):
        run.wasm_submission(parse("wasm", "run", str(tmp_path / "missing.wasm")))
    with pytest.raises(CommandError, match="should point to a single file"):
        run.wasm_submission(parse("wasm", "run", str(tmp_path)))


def test_run_python_inline_sends_no_context():
    submission = run.python_submission(parse("run", "python", "-c", "print(1+1)"))
    job = to_pb(submission.job, pb.Job)
    language = job.spec.language
    assert (job.spec.engine, language.language, language.language_version) == (
        pb.Engine.ENGINE_LANGUAGE,
        "python",
        "3.10",
    )
    assert (language.deterministic, language.command, submission.context) == (True, "print(1+1)", b"")
    submit.verify(job)


def test_run_python_uploads_the_context_folder_with_the_program(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("print('hi')\n")
    (tmp_path / "data.txt").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "data.txt")
    monkeypatch.chdir(tmp_path)
    submission = run.python_submission(parse("run", "python", "src/main.py"))
    job = to_pb(submission.job, pb.Job)
    assert job.spec.language.program_path == "src/main.py"
    with tarfile.open(fileobj=io.BytesIO(submission.context), mode="r:gz") as archive:
        assert sorted(archive.getnames()) == ["data.txt", "src/main.py"]  # no link
    submit.verify(job, submission.context)
    # given relative to the context path
    other = run.python_submission(parse("run", "python", "--context-path", "src", "main.py"))
    assert to_pb(other.job, pb.Job).spec.language.program_path == "main.py"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "Please specify an inline command or a path to a python file."),
        (("x.py", "-c", "print(1)"), "give either a Python file or -c/--command, not both"),
        (("/etc/hostname",), "is not a file inside the context path"),
    ],
)
def test_run_python_refuses_a_missing_or_ambiguous_program(argv, message):
    with pytest.raises(CommandError, match=message):
        run.python_submission(parse("run", "python", *argv))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("-r", "requirements.txt"), "Spec.Language.RequirementsPath: installing requirements"),
        (("--deterministic=false",), "non-deterministic python 3.10 not supported yet"),
    ],
)
def test_run_python_refuses_what_cannot_run_offline_or_deterministically(argv, message):
    submission = run.python_submission(parse("run", "python", "-c", "print(1)", *argv))
    with pytest.raises(submit.VerifyError, match=message):
        submit.verify(to_pb(submission.job, pb.Job))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("-c", "0"), "Deal.Concurrency: concurrency must be >= 1"),
        (("-c", "1", "--confidence", "2"), "cannot be higher than the concurrency"),
        (("-i", "notacid"), "Spec.inputs[0].CID"),
        (("-u", "ftp://x/y"), "unsupported URL scheme"),
        (("--cpu", "lots"), "Spec.Resources.CPU"),
        (("--verifier", "deterministic", "--sharding-glob-pattern", "[", "-i", CID), "Spec.Sharding"),
    ],
)
def test_the_local_checks_are_the_requesters(argv, message):
    with pytest.raises(submit.VerifyError, match=message.replace("[", r"\[")):
        submit.verify(docker_job(*argv, "ubuntu"))


# ------------------------------------------------------------------------------------------------ dry run


def test_dry_run_output_is_a_job_file_create_and_validate_take_unchanged():
    job = docker_job(
        "-i", CID, "-o", "res:/res", "-l", "a", "--gpu", "1", "-e", "A=1", "ubuntu", "--", "echo", "1"
    )
    text = submit.dry_run_text(job, note="a note\non two lines")
    assert text.startswith("# a note\n# on two lines\nAPIVersion: V1beta1\n")
    warnings = io.StringIO()
    assert submit.prepare_job(text.encode(), warn=warnings) == job
    assert warnings.getvalue() == ""
    assert validate_text(text) == []


@given(st.sampled_from(["noop", "docker", "wasm"]), st.integers(1, 5), st.text(min_size=1, max_size=20))
def test_any_docker_run_dry_run_reads_back(engine, concurrency, word):
    job = docker_job("--engine", engine, "-c", str(concurrency), "image", "--", word, "--flag")
    text = submit.dry_run_text(job)
    assert jobfile.load_job(text) == job
    # a WASM job's module travels beside the file (its context): the file alone is refused by both
    wanted = (
        ["Spec.Contexts: WASM job expects one context containing code to run"] if engine == "wasm" else []
    )
    assert validate_text(text) == wanted


def test_create_fills_its_defaults_and_reads_any_case():
    job = submit.prepare_job(b"spec: {engine: NOOP}\ndeal: {CONCURRENCY: 2}\n")
    assert (job.api_version, job.deal.concurrency, job.spec.engine) == ("V1beta1", 2, pb.Engine.ENGINE_NOOP)
    assert (job.spec.verifier, job.spec.publisher) == (
        pb.Verifier.VERIFIER_NOOP,
        pb.Publisher.PUBLISHER_LOCAL,
    )
    with pytest.raises(CommandError, match=r"^The job provided is invalid: the job document is empty"):
        submit.prepare_job(b"")


# ------------------------------------------------------------------------------------------ the printout


def event(name, shard=0, source="", target="", status=""):
    return sdk_types.JobEvent(
        event_name=name, shard_index=shard, source_node_id=source, target_node_id=target, status=status
    )


def test_each_new_step_is_one_line_in_v03s_layout():
    out = io.StringIO()
    printer = follow.Printer(quiet=False, total_shards=1, out=out)
    for name in (E.CREATED, E.BID, E.BID, E.BID_REJECTED, E.BID_ACCEPTED, E.RESULTS_PROPOSED):
        printer.event(event(name, source="node-abcdef123456"))
    printer.event(event(E.COMPUTE_ERROR, source="node-abcdef123456", status="disk full"))
    printer.event(event(E.RESULTS_ACCEPTED))
    printer.event(event(E.RESULTS_PUBLISHED))
    printer.close()
    assert out.getvalue().splitlines() == [
        "\t     Creating job for submission ... done ✅",
        "\t     Finding node(s) for the job ... done ✅",
        "\t           Node accepted the job ... done ✅",
        "\t Job finished, verifying results ... done ✅",
        "\t  Error while executing the job. ... failed ❌ (node-abcdef: disk full)",
        "\t    Results accepted, publishing ... done ✅",
        "",
    ]


def test_a_sharded_job_counts_shards_that_ended():
    progress = follow.ShardProgress(3)
    # shard 0: two nodes accepted, one publishes: not yet ended; the second publishes: ended
    progress.update(event(E.RESULTS_ACCEPTED, 0, source="req", target="a"))
    progress.update(event(E.RESULTS_ACCEPTED, 0, source="req", target="b"))
    assert not progress.update(event(E.RESULTS_PUBLISHED, 0, source="a"))
    assert progress.update(event(E.RESULTS_PUBLISHED, 0, source="b"))
    # shard 1: failed
    assert progress.update(event(E.ERROR, 1, source="req", status="no node left"))
    # shard 2: one accepted node could not publish, the other did
    progress.update(event(E.RESULTS_ACCEPTED, 2, source="req", target="a"))
    progress.update(event(E.RESULTS_ACCEPTED, 2, source="req", target="b"))
    assert not progress.update(event(E.COMPUTE_ERROR, 2, source="a", status="publish failed"))
    assert progress.update(event(E.RESULTS_PUBLISHED, 2, source="b"))
    assert not progress.update(event(E.RESULTS_PUBLISHED, 2, source="b"))  # counted once
    assert progress.text() == "Shards: 3/3 done, 1 failed"


def test_the_counter_is_printed_now_and_then_off_a_terminal():
    out = io.StringIO()
    printer = follow.Printer(quiet=False, total_shards=3, out=out)
    for shard in range(3):
        printer.event(event(E.RESULTS_ACCEPTED, shard, target="a"))
        printer.event(event(E.RESULTS_PUBLISHED, shard, source="a"))
    counters = [line for line in out.getvalue().splitlines() if "Shards:" in line]
    assert counters[0] == "\tShards: 1/3 done" and counters[-1] == "\tShards: 3/3 done"
    quiet = io.StringIO()
    silent = follow.Printer(quiet=True, total_shards=3, out=quiet)
    silent.event(event(E.CREATED))
    silent.close()
    assert quiet.getvalue() == ""


# ------------------------------------------------------------------------------------------- the results


def ended_job(*rows: tuple[str, int, int, str], shards: int = 1) -> pb.JobWithInfo:
    info = pb.JobWithInfo()
    info.job.id, info.job.requester_node_id = "job-1", "requester-1"
    info.job.execution_plan.total_shards = shards
    for node, shard, state, status in rows:
        row = info.job_state.nodes[node].shards[shard]
        row.node_id, row.shard_index, row.state, row.status = node, shard, state, status
        if state == S.JOB_STATE_TYPE_COMPLETED:
            row.run_output.stdout, row.run_output.exit_code = "hello\n", 0
            row.published_result.cid = CID
    return info


def test_a_job_completed_when_every_shard_has_a_completed_result():
    info = ended_job(
        ("node-1", 0, S.JOB_STATE_TYPE_COMPLETED, ""), ("node-2", 0, S.JOB_STATE_TYPE_ERROR, "bad")
    )
    assert follow.job_outcome(info).completed
    lines = follow.results_by_node(info, details=True)
    assert lines[:8] == [
        "Job Results By Node:",
        "Node node-1:",
        "  Shard 0:",
        "    Status: Completed",
        "    Container Exit Code: 0",
        "    Stdout:",
        "      hello",
        "    Stderr: <NONE>",
    ]
    assert f"    Results CID: {CID}" in lines
    assert "    Status: Error (bad)" in lines
    assert follow.results_by_node(info, details=False) == [
        "Job Results By Node:",
        f"  Node node-1, shard 0: Completed, exit code 0, results {CID}",
        "  Node node-2, shard 0: Error, bad",
    ]


def test_a_failed_shard_is_named_with_the_requesters_reason():
    info = ended_job(
        ("node-1", 0, S.JOB_STATE_TYPE_COMPLETED, ""),
        ("node-1", 1, S.JOB_STATE_TYPE_ERROR, "exit"),
        ("requester-1", 1, S.JOB_STATE_TYPE_ERROR, "no node left"),
        shards=2,
    )
    end = follow.job_outcome(info)
    assert not end.completed
    assert end.reason == "job job-1 failed: 1 of 2 shards did not complete; shard 1: no node left"
    single = ended_job(("requester-1", 0, S.JOB_STATE_TYPE_CANCELLED, "by its owner"))
    assert follow.job_outcome(single).reason == "job job-1 failed: cancelled: by its owner"
