"""Bacalhau v0.3 habits through the real `bacalhau-grpc` CLI in subprocesses: `describe --include-events`,
`serve --api-port`, examples in every command's help, `docker run IMAGE '-foo -bar'` refused as v0.3's
cobra did, quoted labels, `devstack` with the compute nodes' own flags (`--limit-total-cpu 1`) and
`devstack --restart-on-crash` bringing back a node killed with SIGKILL.

One devstack serves the module: 2 compute nodes limited to 1 CPU each, restarted when they crash. The
test that kills a node runs last (pytest keeps file order)."""

import json
import os
import re
import signal
import socket
import subprocess

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bacalhau_grpc.cli.output import short_node_id
from tests.e2e.cli_support import (
    COMMAND,
    STARTUP,
    UUID,
    Lines,
    RunningDevstack,
    clean_env,
    gone,
    job_id_of,
    run_cli,
    wait_until,
)

STDOUT_TEXT = "hello from a limited devstack"
WAIT = ("--wait-timeout-secs", "90")
# `devstack` with the compute flags of `serve` given directly, as v0.3's took them.
LIMITED = ("--nodes", "2", "--limit-total-cpu", "1", "--noop-stdout", STDOUT_TEXT, "--restart-on-crash")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = RunningDevstack(tmp_path_factory.mktemp("habits"), LIMITED)
    yield running
    running.stop_all()


def describe(stack, job_id: str, *flags: str) -> dict:
    described = run_cli("describe", job_id, *flags, env=stack.env)
    assert described.returncode == 0, described.stderr
    return yaml.safe_load(described.stdout)


def my_job_ids(stack) -> set[str]:
    listed = run_cli("list", "--output", "json", "-n", "1000", env=stack.env)
    assert listed.returncode == 0, listed.stderr
    return {job["ID"] for job in json.loads(listed.stdout or "[]")}


# -------------------------------------------------------------------------------------------- describe


def test_describe_include_events_shows_the_events_and_false_leaves_them_out(stack):
    done = run_cli("docker", "run", "--engine", "noop", *WAIT, "image", env=stack.env)
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = job_id_of(done.stdout)

    with_events = describe(stack, job_id, "--include-events")
    names = [event["EventName"] for event in with_events["JobEvents"]]
    assert names[0] == "Created" and "ResultsPublished" in names
    assert describe(stack, job_id) == with_events  # our default shows them too
    assert describe(stack, job_id, "--spec") == with_events  # v0.3's no-op flag

    without = describe(stack, job_id, "--include-events=false")
    assert "JobEvents" not in without and "JobLocalEvents" not in without
    assert without["Job"]["ID"] == job_id and without["JobState"] == with_events["JobState"]


# ------------------------------------------------------------------------------------------ docker run


def test_a_dash_word_after_the_image_is_v03s_unknown_flag_and_submits_nothing(stack):
    before = my_job_ids(stack)
    refused = run_cli("docker", "run", "--engine", "noop", "image", "-foo -bar", env=stack.env)
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert "unknown shorthand flag: 'f' in -foo -bar" in refused.stderr
    assert "go after --" in refused.stderr  # and how to pass it to the container
    assert my_job_ids(stack) == before

    # after --, the same words are the container's
    passed = run_cli(
        "docker",
        "run",
        "--engine",
        "noop",
        "--wait=false",
        "image",
        "--",
        "sh",
        "-c",
        "-foo -bar",
        env=stack.env,
    )
    assert passed.returncode == 0, passed.stderr
    job_id = passed.stdout.strip()
    assert UUID.match(job_id)
    assert describe(stack, job_id)["Job"]["Spec"]["Docker"]["Entrypoint"] == ["sh", "-c", "-foo -bar"]


def test_a_quoted_label_is_stored_without_its_quotes(stack):
    submitted = run_cli(
        "docker",
        "run",
        "--engine",
        "noop",
        "--wait=false",
        "-l",
        "'single'",
        "-l",
        '"double"',
        "-l",
        " 'spaced' ",
        "image",
        env=stack.env,
    )
    assert submitted.returncode == 0, submitted.stderr
    assert "WARNING" not in submitted.stderr  # no label dropped
    job_id = submitted.stdout.strip()
    assert describe(stack, job_id)["Job"]["Spec"]["Annotations"] == ["single", "double", "spaced"]
    listed = run_cli("list", "--include-tag", "single", "--wide", env=stack.env)
    assert job_id in listed.stdout


# ---------------------------------------------------------------------------------------- help, serve


@pytest.mark.parametrize("command", ["serve", "devstack", "id"])
def test_help_of_serve_devstack_and_id_shows_examples(command):
    shown = run_cli(command, "--help", env=clean_env())
    assert shown.returncode == 0, shown.stderr
    examples = shown.stdout[shown.stdout.index("\nexamples:\n") :]
    assert re.search(rf"^  (\S+=\S+ )?bacalhau-grpc {command}\b", examples, re.M), examples


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_takes_v03s_api_port_as_its_port():
    port = free_port()
    process = subprocess.Popen(  # about the flag, not the transport: plaintext
        [*COMMAND, "serve", "--node-type", "verifier", "--insecure", "--api-port", str(port)],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = Lines(process.stdout)
        output.wait_for(rf"^verifier \S+ listening on 127\.0\.0\.1:{port}$", STARTUP)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()


# -------------------------------------------------------------------------------------------- devstack


def test_devstack_gives_its_compute_flags_to_every_node(stack):
    """`devstack --limit-total-cpu 1`: a job asking for 2 CPUs is refused by both nodes, saying why."""
    submitted = run_cli(
        "docker", "run", "--engine", "noop", "--cpu", "2", "--wait=false", "image", env=stack.env
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    reason = "declined to bid: job requirements exceed max allowed per job: cpu 2 > 1"

    def refusals() -> list[str]:
        events = run_cli("events", job_id, env=stack.env).stdout.splitlines()
        return [line for line in events if "BidCancelled" in line and reason in line]

    wait_until(lambda: len(refusals()) == 2, 60, "both compute nodes to refuse the job")
    short_ids = {short_node_id(node_id) for node_id, _, _ in stack.computes.values()}
    assert {line.split()[2] for line in refusals()} == short_ids
    cancelled = run_cli("cancel", job_id, env=stack.env)
    assert cancelled.returncode == 0, cancelled.stderr


def test_restart_on_crash_brings_a_killed_node_back_on_its_address(stack):
    node_id, address, pid = stack.computes["compute-1"]
    os.kill(int(pid), signal.SIGKILL)
    stack.output.wait_for(
        rf"^compute-1 \({node_id}, pid {pid}\) exited unexpectedly with code -9; restarting it on "
        rf"{re.escape(address)} with the same node ID and data dir",
        30,
    )
    restarted = stack.output.wait_for(
        rf"^compute-1 restarted: {node_id} listening on {re.escape(address)} again, pid (\d+)$", STARTUP
    )
    assert int(restarted.group(1)) != int(pid) and not gone(int(restarted.group(1)))
    assert stack.process.poll() is None  # the devstack runs on

    # both nodes (concurrency 2) run a job: the restarted one is back in the network
    done = run_cli(
        "docker", "run", "--engine", "noop", "-c", "2", "--node-details", *WAIT, "image", env=stack.env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Node {short_node_id(node_id)}:\n  Shard 0:\n    Status: Completed\n" in done.stdout, done.stdout
    assert done.stdout.count(STDOUT_TEXT) == 2

    # Ctrl+C stops the restarted node with the others
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=60) == 0
    assert "Devstack stopped." in stack.output.rest(5)
    wait_until(lambda: gone(int(restarted.group(1))), 30, "the restarted node to stop with the devstack")
