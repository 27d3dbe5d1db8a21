"""What a new user meets in the first hour, through the real CLI against a devstack of node processes:

* a job past its `--timeout` (a Docker container, a WASM module) ends every row of the shard, with the
  reason, within a few seconds of its deadline; the node stops the execution and nothing reopens after;
* `validate` and `create` give the same verdict on the same job files (v0.3-style test job files among
  them: tests/data/jobfiles), listing every problem, and the requester refuses the same problems.
"""

import subprocess
import time
from pathlib import Path

import pytest

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.sdk import SyncClient, api_address, sdk_types
from bacalhau_grpc.sdk.client import to_pb, to_sdk
from tests.e2e import cli_support
from tests.e2e.cli_support import UUID, job_id_of, run_cli, wait_until

WASM = Path(__file__).resolve().parent.parent / "wasm"
JOBFILES = Path(__file__).resolve().parent.parent / "data" / "jobfiles"
GOOD = sorted((JOBFILES / "good").iterdir())
BAD = sorted(path for path in (JOBFILES / "bad").iterdir() if path.suffix != ".problems")
S = pb.JobStateType
E = pb.JobEventType
TERMINAL = {S.JOB_STATE_TYPE_COMPLETED, S.JOB_STATE_TYPE_ERROR, S.JOB_STATE_TYPE_CANCELLED}
# How long after its deadline a timed-out shard may take to end every row (a loaded 2-core machine).
SLACK = 5.0


def sdk(devstack) -> SyncClient:
    return SyncClient(
        api_address(None, None, devstack.env),
        key=ClientKey.load_or_create(cli_support.KEY_DIR),
        ca_cert=devstack.ca_cert,
    )


def job_info(devstack, job_id: str) -> pb.JobWithInfo:
    with sdk(devstack) as client:
        return to_pb(client.get(job_id), pb.JobWithInfo)


def rows(info: pb.JobWithInfo) -> dict[str, pb.JobShardState]:
    return {node_id: node.shards[0] for node_id, node in info.job_state.nodes.items()}


def seconds(event: pb.JobEvent) -> float:
    return event.event_time.ToMicroseconds() / 1e6


def assert_timed_out(devstack, done: subprocess.CompletedProcess, timeout: float) -> pb.JobWithInfo:
    """The printout and the job of a single-shard job that ran past its timeout."""
    assert done.returncode == 1, done.stdout + done.stderr
    job_id = job_id_of(done.stdout)
    reason = "shard timed out while in state WaitingForResults, see --timeout"
    assert done.stderr.strip() == f"Error: job {job_id} failed: {reason}"
    info = job_info(devstack, job_id)
    requester = info.job.requester_node_id
    by_node = rows(info)
    assert set(by_node) - {requester}, "a compute node held the shard"
    # Every row ended in Error with its reason: the shard's timeout on the requester's row; on a node's row,
    # the shard's timeout or the node's own (its executor stops the run at the same timeout).
    for node_id, row in by_node.items():
        assert row.state == S.JOB_STATE_TYPE_ERROR, (node_id, row)
        expected = (row.status == reason) if node_id == requester else ("timed out" in row.status)
        assert expected, (node_id, row)
    events = list(info.job_events)
    accepted = next(e for e in events if e.event_name == E.JOB_EVENT_TYPE_BID_ACCEPTED)
    ended = [e for e in events if e.event_name in (E.JOB_EVENT_TYPE_ERROR, E.JOB_EVENT_TYPE_COMPUTE_ERROR)]
    assert {e.target_node_id or e.source_node_id for e in ended} == set(by_node)
    for event in ended:  # every row ended at the deadline (first bid accepted + timeout), not a ticker later
        assert timeout - 0.5 <= seconds(event) - seconds(accepted) <= timeout + SLACK, event
    return info


def test_a_docker_job_past_its_timeout_ends_every_row_and_its_container(devstack, docker_engine):
    started = time.monotonic()
    done = run_cli(
        "docker", "run", "--timeout", "3", docker_engine, "--", "sleep", "60", env=devstack.env, timeout=60
    )
    assert time.monotonic() - started < 3 + 20  # the CLI saw the job end: it did not wait for `sleep 60`
    info = assert_timed_out(devstack, done, 3.0)
    job_id = info.job.id

    def containers() -> str:
        listed = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=bacalhau-grpc.job-id={job_id}"],
            capture_output=True,
            text=True,
            check=True,
        )
        return listed.stdout.strip()

    wait_until(lambda: containers() == "", 15, "the node to stop and remove the job's container")
    # Whatever the node reports once it stopped, no row reopens.
    assert rows(job_info(devstack, job_id)) == rows(info)


def test_a_wasm_job_past_its_deadline_ends_every_row(devstack):
    done = run_cli("wasm", "run", "--timeout", "2", str(WASM / "spin.wasm"), env=devstack.env, timeout=60)
    info = assert_timed_out(devstack, done, 2.0)
    described = run_cli("describe", info.job.id, env=devstack.env)
    assert described.returncode == 0
    assert "State: Waiting" not in described.stdout and "State: Running" not in described.stdout
    assert described.stdout.count("State: Error") >= 2


# --------------------------------------------------------------------------- validate and create


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_a_good_file_is_valid_and_create_submits_it(devstack, path):
    checked = run_cli("validate", str(path), env=devstack.env)
    assert (checked.returncode, checked.stdout) == (0, "The Job is valid\n"), checked.stderr
    created = run_cli("create", "--wait=false", str(path), env=devstack.env)
    assert created.returncode == 0, created.stderr
    assert UUID.match(created.stdout.strip())


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_a_bad_file_gets_every_problem_from_validate_create_and_the_requester(devstack, path):
    problems = path.with_name(path.name + ".problems").read_text().splitlines()
    checked = run_cli("validate", str(path), env=devstack.env)
    assert checked.returncode == 1
    assert checked.stdout.splitlines() == ["The Job is not valid. See errors:", *(f"- {p}" for p in problems)]

    created = run_cli("create", "--wait=false", str(path), env=devstack.env)
    assert created.returncode == 1 and created.stdout == ""
    lines = created.stderr.strip().splitlines()
    assert lines[0].endswith(f"{len(problems)} problems:"), created.stderr
    assert lines[0].startswith(("Error verifying job: ", "Error: The job provided is invalid: "))
    assert lines[1:] == [f"- {p}" for p in problems]

    # The requester's own checks (nothing checked before sending) refuse the same problems.
    from bacalhau_grpc.cli import submit

    try:
        job = submit.read_job(path.read_bytes())
    except InvalidArgumentError:
        return  # a file that cannot be read never reaches the requester
    with sdk(devstack) as client, pytest.raises(InvalidArgumentError) as refused:
        client.submit(to_sdk(job, sdk_types.Job))
    assert [str(problem) for problem in refused.value.problems] == problems


def test_validate_with_no_file_prints_usage_and_what_to_do(devstack):
    done = run_cli("validate", env=devstack.env, input="")
    assert done.returncode == 1 and done.stdout == ""
    usage, message = done.stderr.strip().splitlines()
    assert usage.startswith("usage: bacalhau-grpc validate")
    assert message == "You must specify a filename or provide the content to be validated via stdin."
