"""The services' image (Dockerfile): `make image` builds it on the local engine, then it runs as a user
(and the Helm chart) would run it: the command line, its user, and the services in containers.

The containers use the host's network (so the test also runs on an engine without a bridge network), each
service on free 127.0.0.1 ports picked here. They speak TLS as the chart's do: a CA and a certificate per
service made here with `bacalhau-grpc certs` (the host's own CLI), mounted read-only at /tls, the
requester's node protocol on a port of its own, and each service's health on a plaintext port (what the
kubelet's probes ask, and what this test waits on). Every container is removed, whatever happens.
"""

import contextlib
import dataclasses
import json
import os
import re
import socket
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bacalhau_grpc.common import certs

REPO = Path(__file__).resolve().parents[2]
IMAGE = "bacalhau-grpc:latest"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
# Cold: the Debian base (about a minute), then apt and PyPI downloads (about two); warm: seconds.
BUILD_TIMEOUT = 900
STARTUP = 60.0  # seconds for a service in a container to answer its health check
JOB_TIMEOUT = 240  # seconds for a submitted Python job to end (the interpreter is compiled first)
UID = 10001
TLS_MOUNT = "/tls"  # where the containers see the certificates
COMPUTE_NODE_ID = "node-imagetest"  # a compute node's ID is the one its certificate names


@pytest.fixture(scope="module")
def image(docker_engine: str) -> str:
    """bacalhau-grpc:latest, freshly built: `make image` reuses the base image and the layer cache."""
    done = subprocess.run(
        ["make", "--no-print-directory", "image"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, (
        f"make image exited {done.returncode}:\n{done.stdout[-5000:]}{done.stderr[-5000:]}"
    )
    return IMAGE


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert done.returncode == 0, (
            f"docker {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (the kernel's picks; all held open together, so they differ)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def logs(container: str) -> str:
    done = docker("logs", container, check=False)
    return done.stdout + done.stderr


# As the Helm chart runs the services: a read-only root file system, volumes at /data and /tmp.
READ_ONLY = ("--read-only", "--tmpfs", "/tmp", "--tmpfs", f"/data:exec,uid={UID},gid={UID},mode=0755")


@dataclasses.dataclass
class Tls:
    """The cluster's certificates, made on the host with `bacalhau-grpc certs` (for localhost and
    127.0.0.1): the host folder, its read-only mount, and each service's `serve` TLS flags."""

    folder: Path

    @property
    def mount(self) -> tuple[str, ...]:
        return ("-v", f"{self.folder}:{TLS_MOUNT}:ro")

    def flags(self, role: str, node_id: str) -> tuple[str, ...]:
        cert, key = certs.cert_file_names(role, node_id)
        return (
            *("--tls-cert", f"{TLS_MOUNT}/{cert}", "--tls-key", f"{TLS_MOUNT}/{key}"),
            *("--tls-ca", f"{TLS_MOUNT}/{certs.CA_CERT_FILE}"),
        )

    def host_file(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Tls:
    """A CA, a certificate for each service and an operator's client certificate, readable by the image's
    user (owned by it when this runs as root, else world-readable: test keys only) in a folder it can
    enter."""
    folder = tmp_path_factory.mktemp("tls")
    certs.create_ca(folder)
    for role, node_id in (
        ("requester", "requester-imagetest"),
        ("verifier", "verifier-imagetest"),
        ("compute", COMPUTE_NODE_ID),
        ("client", "operator"),
    ):
        certs.issue(folder, role=role, node_id=node_id)
    folder.chmod(0o755)
    for path in folder.iterdir():
        if os.geteuid() == 0:
            os.chown(path, UID, UID)
        else:
            path.chmod(0o644)
    return Tls(folder)


@contextlib.contextmanager
def started(image: str, *args: str, name: str, options: tuple[str, ...] = ()) -> Iterator[str]:
    """A detached container on the host network running the image with `args`; removed on exit."""
    container = f"bacalhau-grpc-image-test-{name}-{uuid.uuid4().hex[:8]}"
    try:
        docker("run", "-d", "--name", container, "--network", "host", *options, image, *args)
        yield container
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, timeout=60, check=False)


def wait_until_serving(container: str, address: str, service: str = "") -> None:
    """Asks the container's gRPC health service at its plaintext health port `address` until it says
    SERVING (each try waits for the server to be ready, up to a few seconds); fails early, with the log,
    when the container has stopped."""
    deadline = time.monotonic() + STARTUP
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            state = docker("inspect", "--format", "{{.State.Status}}", container).stdout.strip()
            if state != "running":
                pytest.fail(f"{container} is {state}; its log:\n{logs(container)}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(
                    f"{container} did not answer SERVING within {STARTUP:g} s; its log:\n{logs(container)}"
                )
            try:
                status = stub.Check(
                    health_pb2.HealthCheckRequest(service=service),
                    timeout=min(3.0, remaining),
                    wait_for_ready=True,
                ).status
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
                continue
            assert status == health_pb2.HealthCheckResponse.SERVING, (
                f"{container}: {status}\n{logs(container)}"
            )
            return


def health(address: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.StatusCode | int:
    """One health check at `address` (TLS with `credentials`, else plaintext): the serving status, or the
    failed call's code."""
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        try:
            return (
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
            )
        except grpc.RpcError as exc:
            return exc.code()


# ------------------------------------------------------------------------------------------ the image


def test_the_image_is_set_up_for_the_chart(image):
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] == f"{UID}:{UID}"  # numeric: Kubernetes can check runAsNonRoot
    assert config["WorkingDir"] == "/data"
    assert config["Entrypoint"] == ["bacalhau-grpc"]
    assert config["Cmd"] == ["--help"]
    # requester (client API, node protocol), compute, verifier, and the plaintext health port
    assert set(config["ExposedPorts"]) == {"1234/tcp", "1235/tcp", "1236/tcp", "1237/tcp", "1238/tcp"}
    assert {"HOME=/data", "BACALHAU_DIR=/data/client", "PYTHONUNBUFFERED=1"} <= set(config["Env"])
    assert config["Labels"]["org.opencontainers.image.version"] == VERSION


def test_version_client_prints_the_package_version(image):
    done = docker("run", "--rm", image, "version", "--client")
    assert done.stdout.strip() == f"Client Version: v{VERSION}"


def test_runs_as_bacalhau_with_a_writable_home_and_a_read_only_venv(image):
    assert docker("run", "--rm", "--entrypoint", "id", image).stdout.startswith(
        f"uid={UID}(bacalhau) gid={UID}(bacalhau)"
    )
    script = 'echo "$HOME"; test -w "$HOME" && echo home-writable; test -w /opt/bacalhau-grpc || echo venv-ro'
    done = docker("run", "--rm", "--entrypoint", "bash", image, "-c", script)
    assert done.stdout.split() == ["/data", "home-writable", "venv-ro"]


def test_serve_help_lists_the_node_types(image):
    done = docker("run", "--rm", image, "serve", "--help")
    assert "--node-type" in done.stdout
    assert re.search(r"requester.*compute.*verifier", done.stdout, re.S)


def test_no_command_prints_the_help(image):
    assert "usage: bacalhau-grpc" in docker("run", "--rm", image).stdout


# --------------------------------------------------------------------------------------- the services


def test_a_verifier_container_answers_its_health_check(image, tls):
    port, health_port = free_ports(2)
    serve = (
        *("serve", "--node-type", "verifier", "--host", "127.0.0.1", "--port", str(port)),
        *("--health-port", str(health_port), "--node-id", "verifier-imagetest"),
        *tls.flags("verifier", "verifier-imagetest"),
    )
    with started(image, *serve, name="verifier", options=tls.mount) as container:
        wait_until_serving(container, f"127.0.0.1:{health_port}")
        wait_until_serving(container, f"127.0.0.1:{health_port}", "bacalhau.verifier.v1.VerifierService")
        # Its port is mutual TLS: a plaintext call fails, one with a certificate of the CA is served.
        assert health(f"127.0.0.1:{port}") == grpc.StatusCode.UNAVAILABLE
        client_cert, client_key = certs.cert_file_names("client", "operator")
        credentials = grpc.ssl_channel_credentials(
            tls.host_file(certs.CA_CERT_FILE), tls.host_file(client_key), tls.host_file(client_cert)
        )
        assert health(f"127.0.0.1:{port}", credentials) == health_pb2.HealthCheckResponse.SERVING


def test_serve_refuses_to_start_without_tls_or_insecure(image):
    done = docker("run", "--rm", image, "serve", "--node-type", "verifier", check=False)
    assert done.returncode != 0
    assert "refuses to serve without TLS" in done.stderr, done.stderr


@dataclasses.dataclass
class Network:
    """The three services, each in its own container: their addresses (the requester's client API, the
    others' one port), plaintext health addresses and container names by kind, and the certificates."""

    address: dict[str, str]
    health: dict[str, str]
    containers: dict[str, str]
    tls: Tls

    def logs(self) -> str:
        return "\n".join(f"--- {kind} ({name})\n{logs(name)}" for kind, name in self.containers.items())


@pytest.fixture(scope="module")
def network(image, tls) -> Iterator[Network]:
    """The three services, each in a container with the image's defaults (their data dirs and the WASM
    module cache under HOME=/data, as the user bacalhau) on a read-only root file system, with TLS: the
    compute node reaches the requester's node protocol port (mutual TLS), the requester the verifier."""
    kinds = ("requester", "compute", "verifier")
    ports = dict(zip(kinds, free_ports(3), strict=True))
    health_ports = dict(zip(kinds, free_ports(3), strict=True))
    (node_port,) = free_ports(1)
    address = {kind: f"127.0.0.1:{port}" for kind, port in ports.items()}
    health = {kind: f"127.0.0.1:{port}" for kind, port in health_ports.items()}
    node_ids = {
        "requester": "requester-imagetest",
        "compute": COMPUTE_NODE_ID,
        "verifier": "verifier-imagetest",
    }
    peers = {
        "verifier": (),
        "requester": ("--verifier-address", address["verifier"], "--node-port", str(node_port)),
        "compute": ("--requester-address", f"127.0.0.1:{node_port}"),
    }
    containers = {}
    with contextlib.ExitStack() as stack:
        for kind, peer in peers.items():
            serve = (
                *("serve", "--node-type", kind, "--host", "127.0.0.1", "--port", str(ports[kind])),
                *("--health-port", str(health_ports[kind]), "--node-id", node_ids[kind]),
                *tls.flags(kind, node_ids[kind]),
                *peer,
            )
            containers[kind] = stack.enter_context(
                started(image, *serve, name=kind, options=(*READ_ONLY, *tls.mount))
            )
        for kind, container in containers.items():
            wait_until_serving(container, health[kind])
        yield Network(address, health, containers, tls)


def cli(image: str, network: Network, command: str) -> str:
    """Runs `command` (bash) in a client container of the image, pointed at the requester's client API
    over TLS (BACALHAU_TLS_CA_CERT: the CA's certificate); its stdout."""
    host, port = network.address["requester"].rsplit(":", 1)
    env = (
        *("-e", f"BACALHAU_API_HOST={host}", "-e", f"BACALHAU_API_PORT={port}"),
        *("-e", f"BACALHAU_TLS_CA_CERT={TLS_MOUNT}/{certs.CA_CERT_FILE}"),
    )
    done = docker(
        *("run", "--rm", "--network", "host", *env, *network.tls.mount),
        *("--entrypoint", "bash", image, "-c", command),
        timeout=JOB_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"{command!r} exited {done.returncode}:\n{done.stdout}{done.stderr}\n{network.logs()}")
    return done.stdout


def test_the_services_serve_tls_and_plaintext_health_alone(network):
    for kind in ("requester", "compute", "verifier"):
        assert health(network.health[kind]) == health_pb2.HealthCheckResponse.SERVING
        assert health(network.address[kind]) == grpc.StatusCode.UNAVAILABLE  # TLS only


@pytest.fixture(scope="module")
def python_job(image, network) -> str:
    """A Python job (deterministic CPython under wasmtime on the compute node), run to its end: its ID."""
    output = cli(image, network, "bacalhau-grpc run python -c 'print(6 * 7)'")
    assert re.search(r"Node node-\w+, shard 0: Completed, exit code 0", output), output  # a short ID
    match = re.search(r"Job ID: (\S+)", output)
    assert match, output
    return match.group(1)


def test_the_services_run_a_python_job_and_the_compute_node_caches_the_interpreter(python_job, network):
    # The compiled interpreter lands in the default cache, under HOME, readable by the node's user only.
    cache = "/data/.cache/bacalhau-grpc/wasm"
    listing = f"stat -c '%u %a' {cache} && ls {cache}"
    done = docker("exec", network.containers["compute"], "bash", "-c", listing)
    owner_and_mode, *files = done.stdout.splitlines()
    assert owner_and_mode == f"{UID} 700"
    assert any(name.endswith(".cwasm") for name in files), done.stdout


def test_the_results_of_the_job_download(image, network, python_job):
    # Debian bookworm's python3 (3.11.2) has no tarfile extraction filters: archive.py unpacks without them.
    command = (
        f"bacalhau-grpc get {python_job} --output-dir results >&2 && cat results/combined_results/stdout"
    )
    assert cli(image, network, command) == "42\n"
