"""The devstack's web dashboard: `bacalhau-grpc devstack` starts `bacalhau-grpc dashboard` as one more
child process (on a free port, as the operator on the requester's node port, signing with the CLI's key)
and prints its URL; the URL answers over HTTP (/healthz, /api/nodes with the devstack's compute nodes);
the dashboard stops with the devstack and is restarted with --restart-on-crash. As a library it is
opt-in: `Devstack(dashboard=True)`."""

import json
import os
import re
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bacalhau_grpc.devstack import Devstack, DevstackError
from tests.e2e.cli_support import STARTUP, STDOUT_TEXT, RunningDevstack, gone, run_cli, wait_until

# Requests to the devstack's 127.0.0.1 addresses never go through a proxy of the environment.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, dict]:
    try:
        with HTTP.open(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, {}


def cmdline(pid: int) -> list[str]:
    return [part.decode() for part in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """`bacalhau-grpc devstack` as users start it: TLS, its dashboard on (the default)."""
    running = RunningDevstack(
        tmp_path_factory.mktemp("dash-devstack"),
        ("--nodes", "2", "--noop-stdout", STDOUT_TEXT),
        dashboard=True,
    )
    yield running
    running.stop_all()


def test_the_devstack_prints_its_dashboard_url_and_the_dashboard_answers(stack):
    text = stack.output.text()
    assert stack.dashboard_url and re.fullmatch(r"http://127\.0\.0\.1:\d+/", stack.dashboard_url), text
    assert f"Dashboard: {stack.dashboard_url} (pid {stack.dashboard_pid}; " in text
    # printed among the ways to reach the network, before the devstack says it is ready
    assert text.index("Dashboard: ") < text.index("Devstack is ready!")
    status, health = get(stack.dashboard_url + "healthz")
    assert (status, health["ok"]) == (200, True)
    status, nodes = get(stack.dashboard_url + "api/nodes")
    assert status == 200
    assert sorted(node["NodeID"] for node in nodes["nodes"]) == sorted(
        node_id for node_id, _address, _pid in stack.computes.values()
    )
    # a child of the devstack like the nodes: its log beside theirs
    log = (stack.data_dir / "logs" / "dashboard.log").read_text()
    assert f"Dashboard: {stack.dashboard_url} (requester {stack.node_address})" in log


def test_the_dashboard_is_the_operator_on_the_node_port_and_signs_with_the_clis_key(stack):
    command = cmdline(stack.dashboard_pid)
    assert "dashboard" in command and "--allow-cancel" in command
    host, _, port = stack.node_address.rpartition(":")
    assert command[command.index("--api-host") + 1 : command.index("--api-host") + 4] == [
        host,
        "--api-port",
        port,
    ]
    assert command[command.index("--ca-cert") + 1] == stack.ca_cert
    assert command[command.index("--client-cert") + 1] == stack.operator_cert
    assert command[command.index("--client-key") + 1] == stack.operator_key
    # the key the printed CLI instructions use (the devstack's environment's $BACALHAU_DIR) is the
    # dashboard's: the jobs the user creates are its own, so it may cancel them
    _status, config = get(stack.dashboard_url + "api/config")
    own_id = run_cli("id", env=stack.env)
    assert own_id.returncode == 0, own_id.stderr
    assert config["client_id"] == own_id.stdout.strip()
    assert config["allow_cancel"] is True
    assert (
        f"It signs with the CLI's key in {Path(stack.env['BACALHAU_DIR']).resolve()}" in stack.output.text()
    )


def test_the_dashboard_stops_with_the_devstack(stack):
    # Runs last in this module: the module's devstack is stopped here.
    pid = stack.dashboard_pid
    assert pid is not None and not gone(pid)
    rest = stack.stop(signal.SIGINT)
    assert stack.process.returncode == 0, rest
    wait_until(lambda: gone(pid), 30, "the dashboard to exit")
    with pytest.raises(urllib.error.URLError):
        HTTP.open(stack.dashboard_url + "healthz", timeout=5)


def test_no_dashboard_prints_no_dashboard(tmp_path):
    running = RunningDevstack(tmp_path, ("--nodes", "1", "--insecure", "--no-dashboard"), dashboard=True)
    try:
        text = running.output.text()
        assert "Dashboard" not in text and running.dashboard_url is None
        assert not (running.data_dir / "logs" / "dashboard.log").exists()
    finally:
        running.stop_all()


def test_a_dashboard_that_dies_is_restarted_on_its_url(tmp_path):
    running = RunningDevstack(tmp_path, ("--nodes", "1", "--insecure", "--restart-on-crash"), dashboard=True)
    try:
        url, pid = running.dashboard_url, running.dashboard_pid
        assert url and pid
        assert "plaintext" in running.output.text()
        os.kill(pid, signal.SIGKILL)
        port = url.rstrip("/").rpartition(":")[2]
        restarted = running.output.wait_for(
            rf"^dashboard restarted: dashboard listening on 127\.0\.0\.1:{port} again, pid (\d+)$", STARTUP
        )
        assert int(restarted.group(1)) != pid
        assert get(url + "healthz")[0] == 200
    finally:
        running.stop_all()


# --------------------------------------------------------------------------------------------- library


async def test_the_library_starts_a_dashboard_only_when_asked(tmp_path):
    async with Devstack(nodes=1, insecure=True, data_dir=tmp_path, startup_timeout=STARTUP) as plain:
        assert plain.dashboard is None
        with pytest.raises(DevstackError, match="runs no dashboard"):
            plain.dashboard_url  # noqa: B018
        assert [node.name for node in plain.processes] == ["verifier", "requester", "compute-0"]
    async with Devstack(
        nodes=1, insecure=True, dashboard=True, dashboard_allow_cancel=False, startup_timeout=STARTUP
    ) as stack:
        assert stack.dashboard is not None and stack.dashboard in stack.processes
        assert stack.dashboard not in stack.all_nodes  # the network's nodes only
        assert "--allow-cancel" not in stack.dashboard.args
        pid = stack.dashboard.pid
        status, nodes = get(stack.dashboard_url + "api/nodes")
        assert status == 200
        assert [node["NodeID"] for node in nodes["nodes"]] == [stack.computes[0].node_id]
        assert get(stack.dashboard_url + "api/config")[1]["allow_cancel"] is False
    assert pid is not None and gone(pid)
