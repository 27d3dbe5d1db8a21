"""The CLI's commands for looking at jobs (list, describe, events, cancel, get, version), in subprocesses
against a real devstack; jobs are submitted with the SDK under the CLI's own key, so they are the CLI
user's jobs."""

import asyncio
import json
import subprocess
import time

import pytest
import yaml

from bacalhau_grpc.common.errors import ResourceExhaustedError
from bacalhau_grpc.sdk import sdk_types as m
from tests.e2e import cli_support
from tests.e2e.cli_support import Lines, run_cli, sdk, start_spinning

MANY = 1005  # past the requester's 1,000-row page limit


def noop(publisher: m.Publisher = m.Publisher.NOOP) -> m.Job:
    return m.Job(
        spec=m.Spec(engine=m.Engine.NOOP, verifier=m.Verifier.NOOP, publisher=publisher, annotations=["e2e"]),
        deal=m.Deal(concurrency=1),
    )


async def _submit_many(devstack, count: int) -> list[str]:
    deadline = time.monotonic() + 300
    async with sdk(devstack) as client:
        ids = []
        for _ in range(count):  # one after another: their creation times are in this order
            while True:
                try:
                    ids.append((await client.submit(noop())).id)
                    break
                except ResourceExhaustedError:  # 64 jobs of this client still running: wait for one
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)
        return ids


@pytest.fixture(scope="module")
def many_jobs(devstack):
    return asyncio.run(_submit_many(devstack, MANY))


def test_list_pages_past_a_thousand_jobs_sorting_before_cutting(devstack, many_jobs):
    listed = run_cli("list", "-n", str(MANY), "-o", "json", env=devstack.env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    ids = [job["ID"] for job in json.loads(listed.stdout)]
    assert ids[:MANY] == many_jobs[::-1]  # newest first, every one of them
    oldest = run_cli("list", "-n", "3", "--no-reverse", "-o", "json", env=devstack.env)
    assert [job["ID"] for job in json.loads(oldest.stdout)] == many_jobs[:3]
    by_id = run_cli("list", "-n", "5", "--sort-by", "id", "--reverse=false", "-o", "yaml", env=devstack.env)
    assert [job["ID"] for job in yaml.safe_load(by_id.stdout)] == sorted(many_jobs)[:5]
    prefix = run_cli("list", "--id-filter", many_jobs[7][:8], "--wide", "--hide-header", env=devstack.env)
    assert prefix.returncode == 0 and many_jobs[7] in prefix.stdout
    assert len(prefix.stdout.splitlines()) == 1
    table = run_cli("list", "-n", "2", env=devstack.env)
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["CREATED", "ID", "JOB", "STATE", "VERIFIED", "PUBLISHED"]
    assert [row.split()[1] for row in rows] == [job_id[:8] for job_id in many_jobs[::-1][:2]]
    bad = run_cli("list", "-n", "0", env=devstack.env)
    assert bad.returncode == 2 and "must be at least 1" in bad.stderr
    bad_sort = run_cli("list", "--sort-by", "size", env=devstack.env)
    assert bad_sort.returncode == 2 and "invalid choice: 'size'" in bad_sort.stderr


def test_describe_in_yaml_and_json_and_events(devstack, many_jobs):
    job_id = many_jobs[0]
    as_yaml = run_cli("describe", job_id[:8], env=devstack.env)
    assert as_yaml.returncode == 0, as_yaml.stderr
    document = yaml.safe_load(as_yaml.stdout)
    assert document["Job"]["ID"] == job_id and document["Job"]["Spec"]["Annotations"] == ["e2e"]
    as_json = run_cli("describe", job_id, "-o", "json", env=devstack.env)
    assert json.loads(as_json.stdout) == document
    followed = run_cli("events", job_id, "--follow", env=devstack.env)
    assert followed.returncode == 0 and "ResultsPublished" in followed.stdout


def test_logs_follow_a_running_job_until_it_is_cancelled(devstack):
    job_id = start_spinning(devstack)
    follower = subprocess.Popen(
        [*cli_support.COMMAND, "logs", job_id, "--follow"],
        env=devstack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(follower.stdout)
        lines.wait_for("^spinning$", 60)  # while the job runs
        assert follower.poll() is None
        cancelled = run_cli("cancel", job_id, "--reason", "enough spinning", env=devstack.env)
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout == f"Job {job_id} cancelled\n"
        assert follower.wait(timeout=60) == 0, follower.stderr.read()
    finally:
        if follower.poll() is None:
            follower.kill()
    described = yaml.safe_load(run_cli("describe", job_id, env=devstack.env).stdout)
    rows = [row for node in described["JobState"]["Nodes"].values() for row in node["Shards"].values()]
    assert "Cancelled" in {row["State"] for row in rows}
    again = run_cli("cancel", job_id, env=devstack.env)
    assert again.returncode == 0  # cancelling a cancelled job again succeeds
    missing = run_cli("cancel", "ffffffff-nope", env=devstack.env)
    assert missing.returncode == 1 and missing.stderr.startswith("Error: job ffffffff-nope not found")
    logs = run_cli("logs", job_id, env=devstack.env)
    assert logs.returncode == 0


def test_get_downloads_the_results(devstack, tmp_path):
    async def run() -> str:
        async with sdk(devstack) as client:
            job = await client.submit(noop(publisher=m.Publisher.LOCAL))
            async for _ in client.events(job.id, follow=True):
                pass
            return job.id

    job_id = asyncio.run(run())
    got = run_cli("get", job_id, "--output-dir", str(tmp_path / "out"), env=devstack.env)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == str(tmp_path / "out")
    assert f"Fetching results of job '{job_id}'..." in got.stderr
    assert (tmp_path / "out" / "combined_results" / "stdout").read_text() == cli_support.STDOUT_TEXT
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["combined_results", "per_shard", "raw"]


def test_version_of_client_and_server(devstack):
    text = run_cli("version", env=devstack.env)
    assert text.returncode == 0, text.stderr
    client_line, server_line = text.stdout.splitlines()
    assert client_line.startswith("Client Version: ") and server_line.startswith("Server Version: ")
    document = json.loads(run_cli("version", "-o", "json", env=devstack.env).stdout)
    assert set(document) == {"clientVersion", "serverVersion"}
    assert document["clientVersion"]["gitversion"] == client_line.removeprefix("Client Version: ")
    alone = run_cli("version", "--client", "--api-port", "1", env=devstack.env)
    assert alone.returncode == 0 and "Server Version" not in alone.stdout
    unreachable = run_cli(
        "version", "--api-port", "1", "--timeout", "2", "--retry-timeout", "0", env=devstack.env
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("Error: cannot reach the requester at 127.0.0.1:1")
