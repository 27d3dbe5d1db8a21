"""The submitting commands (`docker run`, `wasm run`, `run python`, `create`) as a user runs them: real
`bacalhau-grpc` subprocesses against a devstack of node processes (tests/e2e/conftest.py: 3 compute nodes,
one of them a bad actor, noop stdout), their output parsed.

Docker jobs need the Docker engine (the `docker_engine` fixture: skipped locally without one, failed on
CI); the other tests use the noop engine (`--engine noop`), WebAssembly and Python-on-WASI, which every
compute node runs in-process.
"""

import re
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.sdk import SyncClient, api_address
from bacalhau_grpc.sdk.client import to_pb
from tests.e2e import cli_support
from tests.e2e.cli_support import (
    COMMAND,
    STDOUT_TEXT,
    UUID,
    Lines,
    event_names,
    job_id_of,
    run_cli,
    steps,
)

WASM = Path(__file__).resolve().parent.parent / "wasm"
HAPPY = [
    "Creating job for submission",
    "Finding node(s) for the job",
    "Node accepted the job",
    "Job finished, verifying results",
    "Results accepted, publishing",
]
WAIT = ("--wait-timeout-secs", "90")


def sdk(devstack) -> SyncClient:
    key = ClientKey.load_or_create(cli_support.KEY_DIR)  # the key the CLI signs with
    return SyncClient(api_address(None, None, devstack.env), key=key, ca_cert=devstack.ca_cert)


def job_info(devstack, job_id: str) -> pb.JobWithInfo:
    with sdk(devstack) as client:
        return to_pb(client.get(job_id), pb.JobWithInfo)


def completed(info: pb.JobWithInfo) -> bool:
    rows = [row for node in info.job_state.nodes.values() for row in node.shards.values()]
    return any(row.state == pb.JobStateType.JOB_STATE_TYPE_COMPLETED for row in rows)


def assert_happy(done: subprocess.CompletedProcess) -> str:
    """The printout of a job that completed; its ID."""
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = job_id_of(done.stdout)
    remaining = iter(steps(done.stdout))
    assert all(step in remaining for step in HAPPY), done.stdout
    assert "Checking job status... (Enter Ctrl+C to exit at any time, your job will continue running):" in (
        done.stdout
    )
    assert "Job Results By Node:" in done.stdout
    assert f"To download the results, execute:\n  bacalhau-grpc get {job_id}\n" in done.stdout
    assert f"To get more details about the run, execute:\n  bacalhau-grpc describe {job_id}" in done.stdout
    return job_id


# ------------------------------------------------------------------------------------------ docker run


def test_docker_run_runs_a_container_and_shows_its_output(devstack, docker_engine):
    done = run_cli(
        "docker",
        "run",
        "--node-details",
        *WAIT,
        docker_engine,
        "--",
        "sh",
        "-c",
        "echo hello from docker; echo oops >&2; exit 3",
        env=devstack.env,
    )
    job_id = assert_happy(done)
    assert re.search(r"Job ID: ([a-f0-9-]{36})", done.stdout).group(1) == job_id  # what v0.3's tests use
    text = done.stdout
    assert "    Status: Completed\n    Container Exit Code: 3\n" in text  # an exit code is a result
    assert "    Stdout:\n      hello from docker\n    Stderr:\n      oops\n" in text
    assert re.search(r"    Results CID: b[a-z2-7]+\n", text)
    spec = job_info(devstack, job_id).job.spec
    assert (spec.engine, spec.publisher) == (pb.Engine.ENGINE_DOCKER, pb.Publisher.PUBLISHER_LOCAL)


def test_id_only_prints_the_id_and_waits_and_wait_false_prints_it_at_once(devstack):
    quiet = run_cli("docker", "run", "--engine", "noop", "--id-only", *WAIT, "image", env=devstack.env)
    assert quiet.returncode == 0, quiet.stderr
    assert UUID.match(quiet.stdout.strip()) and quiet.stdout.count("\n") == 1
    assert quiet.stderr == ""
    assert completed(job_info(devstack, quiet.stdout.strip()))  # it waited for the job

    at_once = run_cli("docker", "run", "--engine", "noop", "--wait=false", "image", env=devstack.env)
    assert at_once.returncode == 0, at_once.stderr
    assert UUID.match(at_once.stdout.strip()) and at_once.stdout.count("\n") == 1
    assert at_once.stderr == ""


def test_download_lays_the_results_out_as_get_does(devstack, tmp_path):
    out = tmp_path / "results"
    done = run_cli(
        "docker",
        "run",
        "--engine",
        "noop",
        "--download",
        "--output-dir",
        str(out),
        *WAIT,
        "img",
        env=devstack.env,
    )
    job_id = job_id_of(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Fetching results of job '{job_id}'..." in done.stderr
    assert str(out) in done.stdout.splitlines()
    assert "To download the results" not in done.stdout  # they are here already
    assert sorted(p.name for p in out.iterdir()) == ["combined_results", "per_shard", "raw"]
    (raw,) = (out / "raw").iterdir()
    assert raw.name.startswith("b") and (raw / "stdout").read_text() == STDOUT_TEXT
    (shard,) = (out / "per_shard").iterdir()
    assert re.fullmatch(r"0_node_\S{8}", shard.name), shard.name  # <shard>_node_<node id8>
    assert (shard / "stdout").read_text() == STDOUT_TEXT and (shard / "exitCode").read_text() == "0"
    assert (out / "combined_results" / "stdout").read_text() == STDOUT_TEXT
    assert (out / "combined_results" / "outputs").is_dir()  # the declared output


def test_a_job_that_does_not_complete_exits_1_with_the_reason(devstack):
    # three nodes, one a bad actor, confidence 3: the largest agreeing group (2) is too small
    failed = run_cli(
        "docker",
        "run",
        "--engine",
        "noop",
        "--verifier",
        "deterministic",
        "-c",
        "3",
        "--confidence",
        "3",
        *WAIT,
        "image",
        env=devstack.env,
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr
    job_id = job_id_of(failed.stdout)
    assert "Results failed verification. !" in steps(failed.stdout)
    (line,) = failed.stderr.strip().splitlines()
    assert line.startswith(f"Error: job {job_id} failed: ") and "largest group 2 below confidence 3" in line


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (("-v", "QmNoPath"), "Error: invalid input volume: QmNoPath"),
        (("-o", "outputs"), "Error: invalid output volume: outputs"),
        (("-w", "work"), "Error: workdir must be an absolute path. Passed in: work"),
        (("-c", "0"), "Error verifying job: Deal.Concurrency: concurrency must be >= 1 (it is 0)"),
        (("-i", "not-a-cid"), "Error verifying job: Spec.inputs[0].CID: "),
        (
            ("--api-port", "1", "-g", "3", "--retry-timeout", "0"),
            "Error: cannot reach the requester at 127.0.0.1:1",
        ),
        # without the CLI's checks, the requester refuses it with the same rule
        (
            ("-c", "0", "--skip-syntax-checking"),
            "Error: Deal.Concurrency: concurrency must be >= 1 (it is 0)",
        ),
    ],
)
def test_bad_flags_are_one_line_and_nothing_is_submitted(devstack, argv, line):
    failed = run_cli("docker", "run", "--engine", "noop", *argv, "image", env=devstack.env)
    assert failed.returncode == 1
    assert failed.stdout == ""
    (only,) = failed.stderr.strip().splitlines()
    assert only.startswith(line), only


def test_dry_run_prints_a_job_file_that_validate_and_create_take_unchanged(devstack, tmp_path):
    dry = run_cli(
        "docker",
        "run",
        "--dry-run",
        "--engine",
        "noop",
        "-l",
        "round-trip",
        "-e",
        "A=1",
        "img:1",
        "--",
        "echo",
        "hi",
        env=devstack.env,
    )
    assert dry.returncode == 0, dry.stderr
    document = yaml.safe_load(dry.stdout)
    assert document["Spec"]["Docker"] == {
        "Image": "img:1",
        "Entrypoint": ["echo", "hi"],
        "EnvironmentVariables": ["A=1"],
    }
    assert (document["Spec"]["Publisher"], document["Deal"]) == ("Local", {"Concurrency": 1})
    job_file = tmp_path / "job.yaml"
    job_file.write_text(dry.stdout)
    checked = run_cli("validate", str(job_file), env=devstack.env)
    assert (checked.returncode, checked.stdout) == (0, "The Job is valid\n")

    created = run_cli("create", "-", "--id-only", *WAIT, env=devstack.env, input=dry.stdout)
    assert created.returncode == 0, created.stderr
    assert created.stderr == ""  # no server-owned field to warn about
    info = job_info(devstack, created.stdout.strip())
    assert completed(info)
    assert list(info.job.spec.annotations) == ["round-trip"]
    assert list(info.job.spec.docker.entrypoint) == ["echo", "hi"]


def test_create_runs_a_bacalhau_job_file_with_any_key_and_enum_case(devstack, job_file):
    text = """\
apiversion: v1beta1
spec:
  engine: NOOP
  VERIFIER: deterministic
  publisher: LOCAL
  timeout: 60
  annotations: [mixed-case]
  Outputs:
    - storagesource: ipfs
      name: outputs
      PATH: /outputs
DEAL:
  concurrency: 3
  Confidence: 2
"""
    done = run_cli("create", job_file(text), *WAIT, env=devstack.env)
    job_id = assert_happy(done)
    info = job_info(devstack, job_id)
    # three nodes, one a bad actor: the two others agree
    assert (info.job.spec.verifier, info.job.deal.concurrency) == (pb.Verifier.VERIFIER_DETERMINISTIC, 3)
    assert [(o.name, o.path) for o in info.job.spec.outputs] == [("outputs", "/outputs")]
    checked = run_cli("validate", job_file(text), env=devstack.env)  # validate gives create's verdict
    assert (checked.returncode, checked.stdout) == (0, "The Job is valid\n")


# ------------------------------------------------------------------------------------- a sharded job


def test_a_sharded_job_is_followed_until_every_shard_ended(devstack, tmp_path):
    # a folder of 5 files the requester holds: uploaded as the context of a Python job
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(5):
        (folder / f"part{i}.txt").write_text(f"part {i}\n")
    (folder / "main.py").write_text("print('uploaded')\n")
    upload = run_cli(
        "run",
        "python",
        str(folder / "main.py"),
        "--context-path",
        str(folder),
        "--id-only",
        *WAIT,
        env=devstack.env,
    )
    assert upload.returncode == 0, upload.stderr
    context_cid = job_info(devstack, upload.stdout.strip()).job.spec.contexts[0].cid

    done = run_cli(
        "docker",
        "run",
        "--engine",
        "noop",
        "-i",
        context_cid,
        "--sharding-glob-pattern",
        "*.txt",
        "--sharding-batch-size",
        "2",
        *WAIT,
        "image",
        env=devstack.env,
    )
    job_id = assert_happy(done)
    assert "\tShards: 3/3 done\n" in done.stdout  # 5 files, 2 per shard
    info = job_info(devstack, job_id)
    assert info.job.execution_plan.total_shards == 3
    assert all(f"shard {i}: Completed" in done.stdout for i in range(3)), done.stdout
    published = event_names(devstack.env, job_id).count("ResultsPublished")
    assert published == 3  # every shard, not only the first


# --------------------------------------------------------------------------------------------- waiting


# A job that stays in bidding until cancelled (it waits for 4 bids; 3 nodes exist).
UNSCHEDULABLE = ("docker", "run", "--engine", "noop", "--min-bids", "4", "image")


def test_ctrl_c_stops_the_printout_not_the_job_and_the_wait_has_a_limit(devstack):
    process = subprocess.Popen(
        [*COMMAND, *UNSCHEDULABLE],
        env=devstack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Lines(process.stdout)
    job_ids = []
    try:
        job_ids.append(output.wait_for(r"Job ID: ([a-f0-9-]{36})", 30).group(1))
        output.wait_for(r"Finding node\(s\) for the job \.\.\. done", 30)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "Printout canceled (the job is still running)." in output.rest(5)

        limited = run_cli(*UNSCHEDULABLE, "--wait-timeout-secs", "1", env=devstack.env)
        assert limited.returncode == 1
        job_ids.append(job_id_of(limited.stdout))
        assert limited.stderr.startswith(
            f"Error: job {job_ids[-1]} did not end within 1 s (--wait-timeout-secs)"
        )
        for job_id in job_ids:  # both still running
            assert not completed(job_info(devstack, job_id))
            assert "Error" not in event_names(devstack.env, job_id)
    finally:
        if process.poll() is None:
            process.kill()
        with sdk(devstack) as client:
            for job_id in job_ids:
                client.cancel(job_id, reason="the test is done with it")


# ------------------------------------------------------------------------------------ wasm run, python


def test_wasm_run_of_a_local_module_and_then_of_its_cid(devstack, tmp_path):
    done = run_cli(
        "wasm",
        "run",
        str(WASM / "hello.wasm"),
        "first",
        "second",
        "-e",
        "GREETING=hi",
        *WAIT,
        env=devstack.env,
    )
    job_id = assert_happy(done)
    assert done.stdout.startswith(
        f'Uploading "{WASM / "hello.wasm"}" to server to execute command in context'
    )
    fetched = run_cli("get", job_id, "--output-dir", str(tmp_path / "out"), env=devstack.env)
    assert fetched.returncode == 0, fetched.stderr
    stdout = (tmp_path / "out" / "combined_results" / "stdout").read_text()
    assert stdout == "hello from wasm\nargv[0]=hello.wasm\nargv[1]=first\nargv[2]=second\nenv GREETING=hi\n"

    module_cid = job_info(devstack, job_id).job.spec.contexts[0].cid  # the uploaded module, kept by CID
    again = run_cli("wasm", "run", module_cid, "third", "--node-details", *WAIT, env=devstack.env)
    assert_happy(again)
    assert "Uploading" not in again.stdout
    assert "      argv[1]=third\n" in again.stdout


def test_run_python_runs_an_inline_program_and_a_program_file(devstack, tmp_path):
    inline = run_cli("run", "python", "-c", "print(1+1)", "--node-details", *WAIT, env=devstack.env)
    assert_happy(inline)
    assert "    Stdout:\n      2\n" in inline.stdout

    (tmp_path / "lib.py").write_text("NAME = 'module'\n")
    (tmp_path / "main.py").write_text("import sys, lib\nprint('from', lib.NAME, sys.argv[0])\n")
    program = run_cli(
        "run",
        "python",
        str(tmp_path / "main.py"),
        "--context-path",
        str(tmp_path),
        "--node-details",
        *WAIT,
        env=devstack.env,
    )
    assert_happy(program)
    assert "      from module /job/main.py\n" in program.stdout

    refused = run_cli("run", "python", "-c", "import numpy", "-r", "requirements.txt", env=devstack.env)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith(
        "Error verifying job: Spec.Language.RequirementsPath: installing requirements (requirements.txt) "
        "is not supported"
    )
