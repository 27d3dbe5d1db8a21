"""Operating the network from the CLI, against devstacks of separate processes (TLS, real gRPC): the
compute nodes (`node list`, `node describe`, grpcurl ListNodes) with one node killed, jobs listed by state
(`list --state`, paged), `wait` on a job another client submitted (completed, failed, timed out) and
`events` / `logs` as JSON and YAML."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.devstack import Devstack
from bacalhau_grpc.sdk import Client
from bacalhau_grpc.sdk import sdk_types as m
from tests.e2e.cli_support import clean_env, run_cli

pytestmark = pytest.mark.asyncio(loop_scope="module")

FAST_HEARTBEATS = ["--heartbeat-interval=0.5", "--node-timeout=3"]
STDOUT_TEXT = "hello operators"
COMPLETED_JOBS = 5
ERROR_JOBS = 2


def noop_job() -> m.Job:
    return m.Job(
        spec=m.Spec(engine=m.Engine.NOOP, verifier=m.Verifier.NOOP, publisher=m.Publisher.LOCAL, timeout=60),
        deal=m.Deal(concurrency=1),
    )


def failing_job() -> m.Job:
    # Three nodes, one a bad actor, and a confidence of 3: the largest group of equal results (2) is below
    # it, so every result is rejected and the job ends in Error.
    return m.Job(
        spec=m.Spec(engine=m.Engine.NOOP, verifier=m.Verifier.DETERMINISTIC, publisher=m.Publisher.NOOP),
        deal=m.Deal(concurrency=3, confidence=3),
    )


def cli_env(stack: Devstack) -> dict[str, str]:
    host, port = stack.requester_address.rsplit(":", 1)
    return clean_env(BACALHAU_API_HOST=host, BACALHAU_API_PORT=port, BACALHAU_TLS_CA_CERT=str(stack.ca_cert))


def other_client(stack: Devstack, key_dir: Path) -> Client:
    """A client with a key of its own (not the CLI's): it submits, the CLI waits and lists."""
    return Client(stack.requester_address, key=ClientKey.load_or_create(key_dir), ca_cert=stack.ca_cert)


async def cli(*args: str, env: dict[str, str], timeout: float = 60):
    return await asyncio.to_thread(run_cli, *args, env=env, timeout=timeout)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("operating")
    async with Devstack(
        nodes=3,
        bad_actors=1,
        data_dir=data_dir,
        requester_flags=FAST_HEARTBEATS,
        compute_flags=["--noop-stdout", STDOUT_TEXT],
    ) as devstack:
        yield devstack


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def jobs(stack, tmp_path_factory):
    """Jobs another client submitted and that ended: (completed IDs, failed IDs)."""
    async with other_client(stack, tmp_path_factory.mktemp("submitter")) as client:
        completed = [(await client.submit(noop_job())).id for _ in range(COMPLETED_JOBS)]
        failed = [(await client.submit(failing_job())).id for _ in range(ERROR_JOBS)]
        for job_id in completed + failed:
            await client.wait(job_id, timeout=60)
    return completed, failed


# ------------------------------------------------------------------------------------------ list --state


async def test_list_filters_by_state(stack, jobs):
    completed, failed = jobs
    env = cli_env(stack)
    done = await cli("list", "--all", "--state", "Completed", "-n", "50", "-o", "json", env=env)
    assert done.returncode == 0, done.stderr
    assert sorted(job["ID"] for job in json.loads(done.stdout)) == sorted(completed)
    errors = await cli("list", "--all", "--state", "error", "--wide", env=env)  # names in any case
    assert errors.returncode == 0, errors.stderr
    header, *rows = errors.stdout.splitlines()
    assert header.split()[:4] == ["CREATED", "ID", "JOB", "STATE"]
    assert sorted(row.split()[1] for row in rows) == sorted(failed)
    assert all(row.split()[3] == "Error" for row in rows), errors.stdout
    both = await cli("list", "--all", "--state", "Completed", "--state", "Error", "-o", "yaml", env=env)
    assert both.returncode == 0, both.stderr
    assert sorted(job["ID"] for job in yaml.safe_load(both.stdout)) == sorted(completed + failed)
    # The CLI's own jobs: it submitted none (the header alone).
    none = await cli("list", "--state", "Completed", env=env)
    assert none.returncode == 0 and [line.split() for line in none.stdout.splitlines()] == [header.split()]
    bad = await cli("list", "--state", "Finished", env=env)
    assert bad.returncode == 2
    assert "unknown job state 'Finished': use one of Pending, Bidding," in bad.stderr


async def test_list_by_state_pages_past_one_page(stack, jobs, tmp_path):
    completed, failed = jobs
    async with other_client(stack, tmp_path / "reader") as client:
        # Pages of two: the requester pages over the filtered jobs (three pages for five), newest first.
        listed = [
            job.id
            async for job in client.list(all_clients=True, states=[m.JobStateType.COMPLETED], page_size=2)
        ]
        assert listed == completed[::-1]
        errors = [
            job.id async for job in client.list(all_clients=True, states=[m.JobStateType.ERROR], page_size=1)
        ]
        assert errors == failed[::-1]
    # `-n` bounds what the CLI shows.
    two = await cli("list", "--all", "--state", "Completed", "-n", "2", "-o", "json", env=cli_env(stack))
    assert [job["ID"] for job in json.loads(two.stdout)] == completed[::-1][:2]


# ------------------------------------------------------------------------------------------------ wait


async def test_wait_on_a_job_another_client_submitted(stack, tmp_path):
    env = cli_env(stack)
    async with other_client(stack, tmp_path / "submitter") as client:
        job_id = (await client.submit(noop_job())).id
    done = await cli("wait", job_id, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"Job {job_id} Completed"
    assert "Job Results By Node:" in lines
    assert done.stderr == ""


async def test_wait_on_a_failed_job_exits_1_naming_the_error(stack, jobs):
    _, failed = jobs
    done = await cli("wait", failed[0][:8], env=cli_env(stack))
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == f"Job {failed[0]} Error"
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"Error: job {failed[0]} failed: ")
    assert "largest group 2 below confidence 3" in line


async def test_wait_on_an_unknown_job(stack):
    done = await cli("wait", "ffffffff-not-a-job", env=cli_env(stack))
    assert done.returncode == 1
    assert done.stderr == "Error: job ffffffff-not-a-job not found\n"


@pytest_asyncio.fixture(loop_scope="module")
async def slow_stack(tmp_path):
    """One compute node whose noop runs take 30 s."""
    async with Devstack(
        nodes=1,
        data_dir=tmp_path / "slow",
        requester_flags=FAST_HEARTBEATS,
        compute_flags=["--noop-delay=30"],
    ) as devstack:
        yield devstack


async def test_wait_times_out_and_the_node_shows_the_running_execution(slow_stack, tmp_path):
    env = cli_env(slow_stack)
    async with other_client(slow_stack, tmp_path / "submitter") as client:
        job_id = (await client.submit(noop_job())).id
        started = time.monotonic()
        done = await cli("wait", job_id, "--timeout", "1", env=env)
        assert time.monotonic() - started < 20
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stdout == ""
        assert done.stderr == (
            f"Error: job {job_id} did not end within 1 s; it is still running (--timeout 1)\n"
        )
        # The node's heartbeats carry the running execution.
        deadline = time.monotonic() + 20
        while True:
            listed = await cli("node", "list", "-o", "json", env=env)
            assert listed.returncode == 0, listed.stderr
            (node,) = json.loads(listed.stdout)
            if node["RunningExecutions"] == 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert node["RunningExecutions"] == 1 and node["QueuedExecutions"] == 0, node
        assert node["AvailableCapacity"]["CPU"] < node["TotalCapacity"]["CPU"]
        await client.cancel(job_id)
    rejected = await cli("wait", job_id, "--timeout", "0", env=env)
    assert rejected.returncode == 2 and "must be more than 0 seconds" in rejected.stderr


# ---------------------------------------------------------------------------------------- events, logs


async def test_events_and_logs_as_json_and_yaml(stack, jobs):
    job_id = jobs[0][0]
    env = cli_env(stack)
    events = await cli("events", job_id, "-o", "json", env=env)
    assert events.returncode == 0, events.stderr
    lines = [json.loads(line) for line in events.stdout.splitlines()]
    assert lines[0]["EventName"] == "Created" and lines[0]["JobID"] == job_id
    assert "ResultsPublished" in [line["EventName"] for line in lines]
    as_yaml = await cli("events", job_id, "-o", "yaml", "--follow", env=env)
    assert as_yaml.returncode == 0, as_yaml.stderr
    documents = list(yaml.safe_load_all(as_yaml.stdout))
    assert [doc["EventName"] for doc in documents] == [line["EventName"] for line in lines]
    logs = await cli("logs", job_id, "-o", "json", env=env)
    assert logs.returncode == 0, logs.stderr
    pieces = [json.loads(line) for line in logs.stdout.splitlines()]
    stdout = "".join(piece["Data"] for piece in pieces if piece["Stream"] == "stdout")
    assert STDOUT_TEXT in stdout
    assert all(piece["ExecutionID"] and piece["NodeID"] and piece["ShardIndex"] == 0 for piece in pieces)
    logs_yaml = await cli("logs", job_id, "-o", "yaml", env=env)
    assert [doc["Data"] for doc in yaml.safe_load_all(logs_yaml.stdout)] == [p["Data"] for p in pieces]


# ----------------------------------------------------------------------------------------------- nodes


def grpcurl_path() -> str:
    candidate = Path(sys.executable).parent / "grpcurl"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    pytest.fail("grpcurl is not installed next to the Python interpreter: run `make install`")


async def grpcurl(stack: Devstack, method: str, body: object) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        grpcurl_path(),
        "-cacert",
        str(stack.ca_cert),
        "-max-time",
        "20",
        "-d",
        json.dumps(body),
        stack.requester_address,
        f"bacalhau.requester.v1.RequesterService/{method}",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_grpcurl_lists_and_gets_nodes(stack):
    rc, out, err = await grpcurl(stack, "ListNodes", {})
    assert rc == 0, err
    nodes = json.loads(out)["nodes"]
    assert sorted(node["info"]["NodeID"] for node in nodes) == sorted(n.node_id for n in stack.computes)
    for node in nodes:
        assert node["role"] == "NODE_ROLE_COMPUTE"
        assert node["state"] == "NODE_STATE_LIVE"
        assert node["info"]["Address"] and "ENGINE_NOOP" in node["info"]["Engines"]
        assert node["info"]["TotalCapacity"]["CPU"] > 0 and "last_heartbeat" in node
    rc, out, err = await grpcurl(stack, "ListNodes", {"page_size": 2})
    assert rc == 0, err
    page = json.loads(out)
    assert len(page["nodes"]) == 2 and page["next_page_token"]
    first = stack.computes[0].node_id
    rc, out, err = await grpcurl(stack, "GetNode", {"node_id": first})
    assert rc == 0, err
    assert json.loads(out)["node"]["info"]["NodeID"] == first
    rc, out, err = await grpcurl(stack, "GetNode", {"node_id": "nope"})
    assert rc != 0
    assert "Code: NotFound" in err and "node nope not found" in err


async def test_node_list_shows_a_killed_node_lost(stack):
    """Runs last: it kills a compute node."""
    env = cli_env(stack)
    victim = stack.computes[2]
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        listed = await cli("node", "list", "-o", "json", env=env)
        assert listed.returncode == 0, listed.stderr
        nodes = {node["NodeID"]: node for node in json.loads(listed.stdout)}
        if nodes[victim.node_id]["State"] == "lost" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert {node_id: node["State"] for node_id, node in nodes.items()} == {
        n.node_id: "lost" if n is victim else "live" for n in stack.computes
    }
    for node in nodes.values():
        assert node["Role"] == "compute" and node["Address"] and node["Engines"]
        assert node["TotalCapacity"]["CPU"] > 0 and node["AvailableCapacity"]["CPU"] > 0
        assert node["RunningExecutions"] == 0 and node["QueuedExecutions"] == 0
        assert node["LastHeartbeat"].endswith("Z")

    table = await cli("node", "list", "--wide", env=env)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:5] == ["ID", "ROLE", "STATE", "ADDRESS", "ENGINES"]
    states = {row.split()[0]: row.split()[2] for row in rows}
    assert states == {n.node_id: "lost" if n is victim else "live" for n in stack.computes}
    short = await cli("node", "list", env=env)
    assert any(row.split()[2] == "lost" and victim.node_id.startswith(row.split()[0]) for row in
               short.stdout.splitlines()[1:])  # fmt: skip

    described = await cli("node", "describe", victim.node_id[:12], env=env)
    assert described.returncode == 0, described.stderr
    document = yaml.safe_load(described.stdout)
    assert document["NodeID"] == victim.node_id and document["State"] == "lost"
    assert document["Address"] == victim.address
    as_json = await cli("node", "describe", victim.node_id, "-o", "json", env=env)
    assert json.loads(as_json.stdout) == document
    unknown = await cli("node", "describe", "nope", env=env)
    assert unknown.returncode == 1
    assert unknown.stdout == ""
    assert unknown.stderr == "Error: node nope not found: no compute node with this ID registered\n"
