"""TLS as a user meets it: the devstack's default (a CA in <data-dir>/tls, mutual TLS between its
processes), a job through its whole lifecycle across them, the requester killed with SIGKILL and brought
back with the same certificate, `serve` refusing to run without certificates unless `--insecure` (and
warning about plaintext off loopback), the CLI's one-line errors when client and server disagree about
TLS, and grpcurl with the operator's certificate on the requester's node port.

One devstack (2 compute nodes, restarted when they crash) serves the module; the test that kills its
requester runs after the job test (pytest keeps file order)."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.cli_support import (
    COMMAND,
    STARTUP,
    ClusterCerts,
    Lines,
    RunningDevstack,
    clean_env,
    gone,
    job_id_of,
    run_cli,
)

STDOUT_TEXT = "hello over mutual TLS"
STACK = ("--nodes", "2", "--noop-stdout", STDOUT_TEXT, "--restart-on-crash")
WAIT = ("--wait-timeout-secs", "90")
NODE_SERVICE = "bacalhau.requester.v1.RequesterNodeService"
CLIENT_SERVICE = "bacalhau.requester.v1.RequesterService"
# A failed handshake is reported at once: well inside the --timeout the commands are given.
QUICK = 10.0
SLOW_TIMEOUT = ("--timeout", "30")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = RunningDevstack(tmp_path_factory.mktemp("tls"), STACK)
    yield running
    running.stop_all()


def grpcurl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    binary = Path(COMMAND[0]).parent / "grpcurl"
    return subprocess.run(
        [str(binary), "-max-time", "20", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def timed_cli(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = run_cli(*args, env=env)
    return result, time.monotonic() - started


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()  # one line: no gRPC core log on the way
    assert line.startswith("Error: ")
    return line


# ------------------------------------------------------------------------------- the TLS devstack


def test_the_devstack_is_tls_by_default_and_says_how_to_connect(stack):
    text = stack.output.text()
    assert stack.ca_cert and Path(stack.ca_cert).is_file()
    assert re.search(
        rf"^export BACALHAU_API_HOST=127\.0\.0\.1 BACALHAU_API_PORT={stack.port} "
        rf"BACALHAU_TLS_CA_CERT={re.escape(stack.ca_cert)}$",
        text,
        re.M,
    )
    assert f"  grpcurl -cacert {stack.ca_cert} {stack.address} list" in text
    operator = f"-cert {stack.operator_cert} -key {stack.operator_key}"
    assert f"  grpcurl -cacert {stack.ca_cert} {operator} {stack.node_address} list" in text
    # every node runs with its own certificate, named for its node ID
    for kind, node_id, _address, pid in re.findall(
        r"^(verifier|requester|compute)\s+(\S+)\s+(\S+)\s+pid (\d+)", text, re.M
    ):
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        tls_dir = Path(stack.ca_cert).parent
        assert str(tls_dir / f"{kind}-{node_id}.pem").encode() in command
        assert b"--insecure" not in command


def test_a_job_runs_its_whole_lifecycle_over_mutual_tls(stack, tmp_path):
    """Bids, runs, deterministic verification, publication and the download, every call between the
    processes over mutual TLS."""
    done = run_cli(
        *("docker", "run", "--engine", "noop", "-c", "2", "--verifier", "deterministic"),
        *("--node-details", *WAIT, "image"),
        env=stack.env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("Status: Completed") == 2
    assert done.stdout.count(STDOUT_TEXT) == 2
    got = run_cli("get", job_id_of(done.stdout), "--output-dir", str(tmp_path / "out"), env=stack.env)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "out" / "combined_results" / "stdout").read_text().startswith(STDOUT_TEXT)


def test_the_requester_killed_comes_back_with_its_certificate_and_jobs(stack):
    before = run_cli("docker", "run", "--engine", "noop", "--id-only", *WAIT, "image", env=stack.env)
    assert before.returncode == 0, before.stderr
    job_before = before.stdout.strip()
    (row,) = re.findall(r"^requester\s+(\S+)\s+(\S+)\s+pid (\d+)", stack.output.text(), re.M)
    node_id, address, pid = row
    os.kill(int(pid), signal.SIGKILL)
    stack.output.wait_for(rf"^requester \({node_id}, pid {pid}\) exited unexpectedly with code -9", 30)
    restarted = stack.output.wait_for(
        rf"^requester restarted: {node_id} listening on {re.escape(address)} again, pid (\d+)$", STARTUP
    )
    new_pid = int(restarted.group(1))
    assert new_pid != int(pid) and not gone(new_pid)
    command = Path(f"/proc/{new_pid}/cmdline").read_bytes().split(b"\0")
    assert str(Path(stack.ca_cert).parent / f"requester-{node_id}.pem").encode() in command
    assert stack.node_address.rpartition(":")[2].encode() in command  # its node port, where nodes call

    # Its jobs survived; both compute nodes find it again on its node port (a job on both of them).
    described = run_cli("describe", job_before, env=stack.env)
    assert described.returncode == 0, described.stderr
    assert "State: Completed" in described.stdout
    after = run_cli(
        "docker", "run", "--engine", "noop", "-c", "2", "--node-details", *WAIT, "image", env=stack.env
    )
    assert after.returncode == 0, after.stdout + after.stderr
    assert after.stdout.count("Status: Completed") == 2
    assert stack.process.poll() is None


# ---------------------------------------------------------------------------------- client errors


def test_a_plaintext_client_at_the_tls_port_is_told_at_once(stack):
    plain = {k: v for k, v in stack.env.items() if k != "BACALHAU_TLS_CA_CERT"}
    result, took = timed_cli("list", *SLOW_TIMEOUT, env=plain)
    assert one_error_line(result) == (
        f"Error: the requester at {stack.address} closed the connection: it may be serving TLS: give "
        "--ca-cert or BACALHAU_TLS_CA_CERT (the cluster's CA certificate)"
    )
    assert took < QUICK
    # --tls=false wins over the environment: the same refusal
    forced, took = timed_cli("describe", "some-job", "--tls=false", *SLOW_TIMEOUT, env=stack.env)
    assert "it may be serving TLS" in one_error_line(forced) and took < QUICK


def test_tls_needs_a_ca_and_the_right_one(stack, tmp_path):
    plain = {k: v for k, v in stack.env.items() if k != "BACALHAU_TLS_CA_CERT"}
    no_ca = run_cli("list", "--tls", env=plain)
    assert one_error_line(no_ca).startswith(
        "Error: TLS needs the cluster's CA certificate: give --ca-cert FILE or BACALHAU_TLS_CA_CERT"
    )
    other = ClusterCerts(tmp_path / "other")
    result, took = timed_cli("list", "--ca-cert", str(other.ca), *SLOW_TIMEOUT, env=plain)
    assert one_error_line(result) == (
        f"Error: the requester at {stack.address} presented a certificate that the CA certificate "
        f"{other.ca} does not verify (unable to get local issuer certificate): is it the CA of that cluster?"
    )
    assert took < QUICK
    missing = run_cli("list", "--ca-cert", str(tmp_path / "nope.pem"), env=plain)
    assert one_error_line(missing) == f"Error: the CA certificate {tmp_path / 'nope.pem'} does not exist"


def test_the_node_port_needs_a_client_certificate(stack):
    node_port = stack.node_address.rpartition(":")[2]
    result, took = timed_cli("list", "--api-port", node_port, *SLOW_TIMEOUT, env=stack.env)
    assert one_error_line(result).startswith(
        f"Error: the requester at 127.0.0.1:{node_port} refused the TLS connection: is this the "
        "requester's node port, which needs an operator's client certificate (--client-cert and "
        "--client-key)?"
    )
    assert took < QUICK
    operator = ("--client-cert", stack.operator_cert, "--client-key", stack.operator_key)
    listed = run_cli("list", "--all", "--api-port", node_port, *operator, env=stack.env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split()[:3] == ["CREATED", "ID", "JOB"]
    # the same from the environment
    env = dict(
        stack.env,
        BACALHAU_API_PORT=node_port,
        BACALHAU_TLS_CLIENT_CERT=stack.operator_cert,
        BACALHAU_TLS_CLIENT_KEY=stack.operator_key,
    )
    assert run_cli("version", env=env).returncode == 0
    half = run_cli("list", "--client-cert", stack.operator_cert, env=stack.env)
    assert one_error_line(half) == (
        "Error: the client certificate needs its key: give --client-key FILE (or BACALHAU_TLS_CLIENT_KEY)"
    )


def test_a_tls_client_at_a_plaintext_devstack_is_told_at_once(tmp_path):
    insecure = RunningDevstack(tmp_path, ("--nodes", "1", "--insecure"))
    try:
        text = insecure.output.text()
        assert insecure.ca_cert is None and "BACALHAU_TLS_CA_CERT" not in insecure.env
        assert f"  grpcurl -plaintext {insecure.address} list" in text
        assert not (insecure.data_dir / "tls").exists()
        for pid in insecure.pids:
            assert b"--insecure" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        ran = run_cli("docker", "run", "--engine", "noop", *WAIT, "image", env=insecure.env)
        assert ran.returncode == 0, ran.stdout + ran.stderr

        other = ClusterCerts(tmp_path / "certs")
        result, took = timed_cli("list", "--ca-cert", str(other.ca), *SLOW_TIMEOUT, env=insecure.env)
        assert one_error_line(result) == (
            f"Error: the requester at {insecure.address} did not complete a TLS handshake: is it serving "
            "plaintext? (drop --tls / --ca-cert / BACALHAU_TLS_CA_CERT)"
        )
        assert took < QUICK
    finally:
        insecure.stop_all()


def test_a_requester_certificate_for_another_host_is_named(tmp_path):
    """`serve` with certificates by hand: the requester on its two ports. A certificate issued for another
    host name than the one dialled fails the handshake, and the CLI says which host."""
    certs = ClusterCerts(tmp_path / "certs")
    served = subprocess.Popen(
        [
            *COMMAND,
            *("serve", "--node-type", "requester", "--node-id", "requester-elsewhere"),
            *("--port", "0", "--node-port", "0"),
            *("--data-dir", str(tmp_path / "requester"), "--verifier-address", "127.0.0.1:1"),
            *certs.serve_flags("requester", "requester-elsewhere", dns=["requester.example"]),
        ],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = Lines(served.stdout)
        address = output.wait_for(r"^requester requester-elsewhere listening on (\S+)$", STARTUP).group(1)
        node_address = output.wait_for(r"^requester requester-elsewhere node protocol on (\S+)$", 10).group(1)
        assert node_address != address
        host, port = address.rsplit(":", 1)
        result, took = timed_cli(
            "list", "--api-port", port, "--ca-cert", str(certs.ca), *SLOW_TIMEOUT, env=clean_env()
        )
        assert one_error_line(result) == (
            f"Error: the certificate of the requester at {address} does not name the host {host}: connect to "
            "a DNS name or IP address it was issued for (`certs issue --dns/--ip`; localhost and 127.0.0.1 "
            "by default)"
        )
        assert took < QUICK
    finally:
        served.send_signal(signal.SIGTERM)
        try:
            assert served.wait(timeout=30) == 0
        finally:
            if served.poll() is None:
                served.kill()


# ------------------------------------------------------------------------------------------ serve


@pytest.mark.parametrize(
    ("node_type", "flags"),
    [
        ("verifier", ()),
        ("requester", ("--verifier-address", "127.0.0.1:1", "--data-dir")),
        ("compute", ("--requester-address", "127.0.0.1:1", "--data-dir")),
    ],
)
def test_serve_refuses_to_start_without_certificates_unless_insecure(tmp_path, node_type, flags):
    data_dir = [str(tmp_path / "data")] if flags else []
    refused = run_cli("serve", "--node-type", node_type, *flags, *data_dir, env=clean_env(), timeout=60)
    line = one_error_line(refused)
    assert (
        f"the {node_type} node refuses to serve without TLS: give --tls-cert, --tls-key and --tls-ca" in line
    )
    assert "or --insecure for plaintext (development only)" in line
    assert not (tmp_path / "data").exists()  # nothing started


def test_serve_refuses_half_a_tls_configuration(tmp_path):
    certs = ClusterCerts(tmp_path / "certs")
    cert, key, ca = certs.serve_flags("verifier", "v1")[1::2]
    refused = run_cli("serve", "--node-type", "verifier", "--tls-cert", cert, "--tls-ca", ca, env=clean_env())
    assert "--tls-key is missing" in one_error_line(refused)
    both = run_cli(
        *("serve", "--node-type", "verifier", "--insecure"),
        *("--tls-cert", cert, "--tls-key", key, "--tls-ca", ca),
        env=clean_env(),
    )
    assert "--insecure and TLS certificates were both given" in one_error_line(both)


def serve_verifier_insecure(host: str) -> str:
    """`serve --node-type verifier --insecure --host HOST`: its output until it listens, then stopped."""
    process = subprocess.Popen(
        [*COMMAND, "serve", "--node-type", "verifier", "--insecure", "--host", host, "--port", "0"],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Lines(process.stdout)
    try:
        output.wait_for(r"^verifier \S+ listening on \S+$", STARTUP)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
    return output.rest(5)


def test_insecure_off_loopback_is_logged_as_a_warning():
    exposed = serve_verifier_insecure("0.0.0.0")
    (warning,) = [line for line in exposed.splitlines() if " WARNING " in line]
    assert "verifier serving in PLAINTEXT on 0.0.0.0 (--insecure)" in warning
    loopback = serve_verifier_insecure("127.0.0.1")
    assert " WARNING " not in loopback
    assert "plaintext (--insecure), on loopback only" in loopback


# ---------------------------------------------------------------------------------------- grpcurl


def test_grpcurl_with_the_operator_certificate_on_the_node_port(stack):
    operator = ["-cacert", stack.ca_cert, "-cert", stack.operator_cert, "-key", stack.operator_key]
    listed = grpcurl(*operator, stack.node_address, "list")
    assert listed.returncode == 0, listed.stderr
    assert {NODE_SERVICE, CLIENT_SERVICE, "grpc.health.v1.Health"} <= set(listed.stdout.split())

    described = grpcurl(*operator, stack.node_address, "describe", f"{NODE_SERVICE}.Heartbeat")
    assert described.returncode == 0, described.stderr
    assert "rpc Heartbeat ( .bacalhau.requester.v1.HeartbeatRequest )" in described.stdout

    # the client API as the operator: its certificate is its identity, no signing helper needed
    version = grpcurl(*operator, "-d", "{}", stack.node_address, f"{CLIENT_SERVICE}/GetVersion")
    assert version.returncode == 0, version.stderr
    assert '"gitversion": "v' in version.stdout

    # the node protocol is for compute certificates: an operator's is refused before anything happens
    refused = grpcurl(
        *operator, "-d", '{"node_id": "node-x"}', stack.node_address, f"{NODE_SERVICE}/Heartbeat"
    )
    assert refused.returncode != 0 and refused.stdout == ""
    assert "Code: PermissionDenied" in refused.stderr
    assert "client" in refused.stderr

    # without a client certificate, the node port does not even finish the handshake
    anonymous = grpcurl("-cacert", stack.ca_cert, stack.node_address, "list")
    assert anonymous.returncode != 0

    # the client API port needs only the CA
    client_api = grpcurl("-cacert", stack.ca_cert, stack.address, "list")
    assert client_api.returncode == 0, client_api.stderr
    assert CLIENT_SERVICE in client_api.stdout.split() and NODE_SERVICE not in client_api.stdout.split()
