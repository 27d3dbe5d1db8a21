"""Render the chart, then run what it renders, as local processes: the real Helm renders it (2 compute nodes,
no Docker) in three TLS modes: generate (the default), existingSecret and insecure (plaintext). Each
Deployment and StatefulSet pod's init containers, then its containers, become processes with the
container's command, args and env, `$(VAR)` references expanded as Kubernetes expands them (POD_NAME and
POD_NAMESPACE from made-up pods). Every in-cluster address (`<service>.<namespace>.svc.<domain>:<port>`, a
compute pod's own DNS name) becomes 127.0.0.1 and a free port, the listen host 0.0.0.0 becomes 127.0.0.1,
every port a container declares a free port, every volume a temporary folder shared by the pod's
containers, and a Secret volume the Secret's files (its `items`, its modes).

generate: each pod's `tls` init container issues its certificate from the CA Secret the chart rendered,
with the names the chart gives it; as this test reaches every in-cluster name at 127.0.0.1, it adds
`--ip 127.0.0.1` to each issue command. existingSecret: the test makes the Secrets as the chart's README
tells an operator to (`bacalhau-grpc certs`, the same names, and 127.0.0.1). In both, it checks that every
name a container dials is one that the certificate of the pod behind it names (read from the certificate
file the pod serves with). Then: each process answers gRPC health on its plaintext health port (as the
kubelet's probes ask), its TLS ports refuse plaintext and the health port serves nothing else; the `helm
test` pod's own check passes (over TLS with its own client certificate); a job runs through them with the
SDK (verifying the requester with the CA's certificate); and the real grpcurl lists each one's services
(with an operator's client certificate at the mutual-TLS ports).

So the chart's wiring is the one that works: flags the CLI takes, addresses that name each other,
certificates that name the hosts their peers dial and the identities the services check, advertised
compute addresses the requester can dial, node IDs from pod names."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bacalhau_grpc.common import certs
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.compute.settings import DEFAULT_WASM_CACHE_DIR
from bacalhau_grpc.sdk import Client
from bacalhau_grpc.sdk import sdk_types as m
from tests.helm.support import WORKLOAD_KINDS, helm_check, pod_spec
from tests.integration.common_testing import grpcurl_path, run_process

NAMESPACE = "bacalhau-test"
NETWORK = {"compute": {"replicas": 2, "docker": {"mode": "none"}}}
EXISTING_SECRETS = {
    "requester": "requester-tls",
    "verifier": "verifier-tls",
    "compute": "compute-tls",
    "client": "operator-tls",
}
MODES = {
    "generate": NETWORK,  # the chart's default: TLS, each pod issuing its certificate from the chart's CA
    "existingSecret": {**NETWORK, "tls": {"mode": "existingSecret", "existingSecret": EXISTING_SECRETS}},
    "insecure": {**NETWORK, "tls": {"mode": "insecure"}},
}
BASE = f"{helm_check.RELEASE}-bacalhau-grpc"
BIN = Path(sys.executable).parent
START_DEADLINE = 30.0
INIT_DEADLINE = 60.0
LOOPBACK = "127.0.0.1"
# SIGTERM, then SIGKILL after the pod's grace period (Kubernetes' default terminationGracePeriodSeconds).
STOP_GRACE = 30.0
# Kubernetes' expansion of $(VAR) in command, args and env values: `$$` is a literal `$`, and a
# reference to an undefined variable stays as it is.
REFERENCE = re.compile(r"\$(\$|\(([A-Za-z_][A-Za-z0-9_.-]*)\))")
ADDRESS_FLAGS = ("--host", "--port", "--node-port", "--health-port")
SERVICES = {
    "requester": "bacalhau.requester.v1.RequesterService",
    "verifier": "bacalhau.verifier.v1.VerifierService",
    "compute": "bacalhau.compute.v1.ComputeService",
}


def expand(text: str, variables: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match[1] == "$":
            return "$"
        return variables.get(match[2], match[0])

    return REFERENCE.sub(replace, text)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Pod:
    """One made-up pod of a workload: its name, labels, spec, and local ports for its container ports."""

    name: str
    kind: str
    labels: dict[str, str]
    spec: dict[str, Any]
    subdomain: str = ""
    ports: dict[int, int] = field(default_factory=dict)  # container port -> local port
    claims: list[str] = field(default_factory=list)  # a StatefulSet's volumeClaimTemplates

    def port_named(self, name: str | int) -> int:
        """The container port a Service's targetPort (a name or a number) means."""
        if isinstance(name, int):
            return name
        for item in self.spec["containers"]:
            for port in item.get("ports", []):
                if port.get("name") == name:
                    return port["containerPort"]
        raise AssertionError(f"pod {self.name} has no port named {name}")

    def local(self, name: str) -> str:
        """127.0.0.1:<local port> of the container port named `name`."""
        return f"{LOOPBACK}:{self.ports[self.port_named(name)]}"

    @property
    def component(self) -> str:
        return self.labels["app.kubernetes.io/component"]


@dataclass
class Process:
    pod: Pod
    container: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def address(self) -> str:
        """The container's main port (named grpc): the client API of the requester."""
        return self.pod.local("grpc")

    @property
    def health_address(self) -> str:
        """Its plaintext health port, where the kubelet's probes ask."""
        return self.pod.local("health")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def make_pods(objects: list[dict[str, Any]]) -> list[Pod]:
    """The pods Kubernetes would make: <statefulset>-<ordinal>, <deployment>-<hash>-<suffix>."""
    pods = []
    for obj in objects:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        name, spec = obj["metadata"]["name"], obj["spec"]
        labels = spec["template"]["metadata"]["labels"]
        for i in range(spec.get("replicas", 1)):
            if obj["kind"] == "StatefulSet":
                pod = Pod(f"{name}-{i}", obj["kind"], labels, pod_spec(obj), subdomain=spec["serviceName"])
                pod.claims = [claim["metadata"]["name"] for claim in spec.get("volumeClaimTemplates", [])]
            else:
                pod = Pod(f"{name}-7c9f5b6d4-x{i}q2z", obj["kind"], labels, pod_spec(obj))
            for item in pod.spec["containers"]:
                for port in item.get("ports", []):
                    pod.ports[port["containerPort"]] = free_port()
            pods.append(pod)
    return pods


def address_map(
    objects: list[dict[str, Any]], pods: list[Pod], domain: str
) -> tuple[dict[str, str], dict[str, Pod]]:
    """Every in-cluster host:port the pods may dial → 127.0.0.1:<local port> of the pod behind it, and →
    that pod."""
    mapping: dict[str, str] = {}
    behind: dict[str, Pod] = {}
    for service in (o for o in objects if o["kind"] == "Service"):
        name, spec = service["metadata"]["name"], service["spec"]
        backends = [p for p in pods if spec["selector"].items() <= p.labels.items()]
        assert backends, f"Service {name} selects no pod"
        hosts = [name, f"{name}.{NAMESPACE}", f"{name}.{NAMESPACE}.svc", f"{name}.{NAMESPACE}.svc.{domain}"]
        for port in spec["ports"]:
            target = port.get("targetPort", port["port"])
            for host in hosts:  # a Service's name: one of its pods (as a connection lands on one)
                mapping[f"{host}:{port['port']}"] = backends[0].local(target)
                behind[f"{host}:{port['port']}"] = backends[0]
            if spec.get("clusterIP") == "None":  # headless: each pod by its own name too
                for pod in backends:
                    if pod.subdomain == name:
                        for host in (f"{pod.name}.{h}" for h in hosts[1:]):
                            mapping[f"{host}:{port['port']}"] = pod.local(target)
                            behind[f"{host}:{port['port']}"] = pod
    return mapping, behind


class Rewriter:
    """Turns one container's strings into the local equivalents: addresses, listen host/port, paths."""

    def __init__(self, addresses: dict[str, str], ports: dict[int, int], mounts: dict[str, Path]) -> None:
        names = sorted(addresses, key=len, reverse=True)
        self.addresses = addresses
        self.pattern = re.compile(
            r"(?<![A-Za-z0-9.-])(" + "|".join(re.escape(n) for n in names) + r")(?![0-9])"
        )
        self.ports = ports
        self.mounts = sorted(mounts.items(), key=lambda item: len(item[0]), reverse=True)
        self.dialled: list[str] = []  # the in-cluster host:port values made local

    def _local(self, match: re.Match[str]) -> str:
        self.dialled.append(match[1])
        return self.addresses[match[1]]

    def value(self, text: str) -> str:
        text = self.pattern.sub(self._local, text)
        for mount, local in self.mounts:
            if text == mount or text.startswith(mount.rstrip("/") + "/"):
                return str(local) + text[len(mount) :]
        return text

    def listen(self, name: str, text: str) -> str:
        """The value of --host / --port / --node-port / --health-port (or their BACALHAU_ variables)."""
        if name == "host":
            return "127.0.0.1" if text in ("0.0.0.0", "::", "") else text
        return str(self.ports[int(text)])

    def args(self, args: list[str]) -> list[str]:
        out: list[str] = []
        pending: str | None = None
        for arg in args:
            if pending is not None:
                out.append(self.listen(pending, arg))
                pending = None
            elif arg in ADDRESS_FLAGS:
                out.append(arg)
                pending = arg[2:].replace("-", "_")
            elif arg.split("=", 1)[0] in ADDRESS_FLAGS and "=" in arg:
                flag, value = arg.split("=", 1)
                out.append(f"{flag}={self.listen(flag[2:].replace('-', '_'), value)}")
            else:
                out.append(self.value(arg))
        return out

    def env(self, name: str, value: str) -> str:
        if name in ("BACALHAU_" + flag[2:].replace("-", "_").upper() for flag in ADDRESS_FLAGS):
            return self.listen(name.split("_", 1)[1].lower(), value)
        return self.value(value)


def container_env(item: dict[str, Any], pod: Pod) -> dict[str, str]:
    """The container's env as Kubernetes resolves it: the Downward API, then each value expanded with the
    variables defined before it."""
    fields = {"metadata.name": pod.name, "metadata.namespace": NAMESPACE}
    variables: dict[str, str] = {}
    for var in item.get("env", []):
        if "valueFrom" in var:
            path = var["valueFrom"]["fieldRef"]["fieldPath"]
            assert path in fields, f"{var['name']}: no made-up value for {path}"
            variables[var["name"]] = fields[path]
        else:
            variables[var["name"]] = expand(var.get("value", ""), variables)
    return variables


def local_command(command: list[str]) -> list[str]:
    """The image's programs, from this venv: bacalhau-grpc, and /opt/bacalhau-grpc/bin/python."""
    program = command[0]
    if program == "bacalhau-grpc":
        return [str(BIN / "bacalhau-grpc"), *command[1:]]
    if program == "/opt/bacalhau-grpc/bin/python":
        return [sys.executable, *command[1:]]
    raise AssertionError(f"no local stand-in for {program}")


def base_environ(home: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("BACALHAU_", "OTEL_", "DOCKER_HOST"))}
    environ["HOME"] = str(home)
    return environ


def secrets_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, bytes]]:
    """Each rendered Secret's files by name: its data (base64) and stringData."""
    found = {}
    for obj in objects:
        if obj["kind"] == "Secret":
            files = {key: base64.b64decode(value) for key, value in (obj.get("data") or {}).items()}
            files.update({key: value.encode() for key, value in (obj.get("stringData") or {}).items()})
            found[obj["metadata"]["name"]] = files
    return found


def make_volumes(pod: Pod, secrets: dict[str, dict[str, bytes]], root: Path) -> dict[str, Path]:
    """A local folder for each of the pod's volumes (shared by its containers, as a pod's volumes are):
    empty for an emptyDir or a claim; a Secret's files (its `items` or every key, with their modes)."""
    folders = {}
    for volume in pod.spec.get("volumes", []):
        folder = root / pod.name / volume["name"]
        folder.mkdir(parents=True)
        if "secret" in volume:
            source = volume["secret"]
            assert source["secretName"] in secrets, f"{pod.name}: no Secret {source['secretName']}"
            data = secrets[source["secretName"]]
            items = source.get("items") or [{"key": key, "path": key} for key in data]
            for item in items:
                path = folder / item["path"]
                path.write_bytes(data[item["key"]])
                path.chmod(item.get("mode", source.get("defaultMode", 0o644)))
        else:
            assert {"emptyDir", "persistentVolumeClaim"} & volume.keys(), f"no local stand-in for {volume}"
        folders[volume["name"]] = folder
    for claim in pod.claims:  # a StatefulSet's volumeClaimTemplates
        folders[claim] = root / pod.name / claim
        folders[claim].mkdir(parents=True)
    return folders


def prepare(
    pod: Pod, item: dict[str, Any], addresses: dict[str, str], volumes: dict[str, Path], root: Path
) -> tuple[list[str], dict, Rewriter]:
    """argv and environment of one container, made local, and the Rewriter that made them (what it
    dialled)."""
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in item.get("volumeMounts", [])}
    rewriter = Rewriter(addresses, pod.ports, mounts)
    variables = container_env(item, pod)
    argv = [expand(part, variables) for part in [*item["command"], *item.get("args", [])]]
    argv = local_command(argv[:1]) + rewriter.args(argv[1:])
    if "--wasm-cache-dir" in argv:
        # The compiled-module cache is the host's, shared as every test's nodes share it: a compute node
        # compiles the CPython interpreter (seconds of CPU) in the background when its cache is cold,
        # and a fresh folder per pod and run would make two nodes do that on every run.
        argv[argv.index("--wasm-cache-dir") + 1] = str(DEFAULT_WASM_CACHE_DIR)
    if argv[1:3] == ["certs", "issue"] and "--dns" in argv and LOOPBACK not in issued_names(argv, "--ip"):
        # This test reaches every in-cluster name at 127.0.0.1: a certificate for the names is one for
        # 127.0.0.1 here (that the names are the right ones is checked separately).
        argv += ["--ip", LOOPBACK]
    environ = base_environ(root / "home")
    environ.update({name: rewriter.env(name, value) for name, value in variables.items()})
    return argv, environ, rewriter


def issued_names(argv: list[str], option: str = "--dns") -> list[str]:
    """The values of a `certs issue` command's --dns (or --ip) options."""
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == option]


@dataclass
class Network:
    """The rendered pods, running: their processes, the names each pod's certificate was issued for, and
    the in-cluster addresses each container dials (host:port → the pod behind it)."""

    processes: list[Process] = field(default_factory=list)
    cert_names: dict[str, list[str]] = field(default_factory=dict)  # pod → its certificate's DNS names
    dialled: list[tuple[str, str, Pod]] = field(default_factory=list)  # (container, host:port, pod behind)

    def component(self, name: str) -> list[Process]:
        return [p for p in self.processes if p.pod.component == name]


def run_init_containers(
    pod: Pod, addresses: dict[str, str], volumes: dict[str, Path], root: Path, net: Network
):
    """A pod's init containers, in order, each to its end (exit 0), as the kubelet runs them."""
    for item in pod.spec.get("initContainers", []):
        assert item["name"] == "tls", f"no local stand-in for the init container {item['name']}"
        argv, environ, _ = prepare(pod, item, addresses, volumes, root)
        assert argv[1:3] == ["certs", "issue"], argv
        done = subprocess.run(
            argv, env=environ, capture_output=True, text=True, timeout=INIT_DEADLINE, check=False
        )
        assert done.returncode == 0, f"{pod.name} init container {item['name']}:\n{done.stdout}{done.stderr}"


@contextlib.contextmanager
def running(
    pods: list[Pod],
    addresses: dict[str, str],
    behind: dict[str, Pod],
    secrets: dict[str, dict[str, bytes]],
    root: Path,
) -> Iterator[Network]:
    """Starts each pod (its init containers, then its containers); always stops them (SIGTERM, then
    SIGKILL after STOP_GRACE)."""
    net = Network()
    (root / "home").mkdir(parents=True, exist_ok=True)
    try:
        for pod in pods:
            volumes = make_volumes(pod, secrets, root)
            run_init_containers(pod, addresses, volumes, root, net)
            for item in pod.spec["containers"]:
                assert item["command"] == ["bacalhau-grpc"], item["name"]
                argv, environ, rewriter = prepare(pod, item, addresses, volumes, root)
                net.dialled += [(f"{pod.name}/{item['name']}", a, behind[a]) for a in rewriter.dialled]
                if "--tls-cert" in argv:
                    net.cert_names[pod.name] = dns_names(Path(argv[argv.index("--tls-cert") + 1]))
                log = root / f"{pod.name}.{item['name']}.log"
                with log.open("wb") as out:
                    popen = subprocess.Popen(
                        argv, env=environ, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                    )
                net.processes.append(Process(pod, item["name"], argv, popen, log))
        yield net
    finally:
        for process in net.processes:
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for process in net.processes:
            try:
                process.popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()


async def wait_serving(process: Process, service: str, deadline: float) -> None:
    """Polls the process's gRPC health on its plaintext health port, as the kubelet's probes do (each call
    waits for the connection), until SERVING or the deadline."""
    loop = asyncio.get_running_loop()
    last = "no answer"
    async with grpc.aio.insecure_channel(process.health_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while loop.time() < deadline:
            if process.popen.poll() is not None:
                pytest.fail(f"{process.pod.name} exited ({process.popen.returncode}):\n{process.output()}")
            try:
                answer = await stub.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=0.5, wait_for_ready=True
                )
            except grpc.aio.AioRpcError as error:
                last = error.code().name
                continue
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    pytest.fail(f"{process.pod.name} {service}: {last} after {START_DEADLINE} s:\n{process.output()}")


async def plaintext_health(address: str) -> grpc.StatusCode:
    """What a plaintext health check at `address` gets (OK, or the failure's code)."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


async def plaintext_call(address: str, method: str) -> grpc.StatusCode:
    """The status of a plaintext call of `method` (an empty request) at `address`."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            await channel.unary_unary(method)(b"", timeout=5)
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def dns_names(cert_file: Path) -> list[str]:
    """The DNS names a certificate file names (its subject alternative names)."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )


def service_names(name: str) -> list[str]:
    """A Service's in-cluster names, short to fully qualified."""
    return [name, f"{name}.{NAMESPACE}", f"{name}.{NAMESPACE}.svc", f"{name}.{NAMESPACE}.svc.cluster.local"]


def operator_secrets(root: Path, compute_pods: list[str]) -> tuple[Path, dict[str, dict[str, bytes]]]:
    """existingSecret mode as its README describes it: an operator's CA (`bacalhau-grpc certs ca`) and
    certificates (`certs issue`) for the names the chart's Services and pods have, in Secrets laid out as
    the chart reads them. (This test reaches those names at 127.0.0.1, so each names it too.) The CA's
    folder, and the Secrets' files by name."""
    ca = root / "operator-ca"
    certs.create_ca(ca)
    ca_pem = (ca / certs.CA_CERT_FILE).read_bytes()

    def pair(role: str, node_id: str, dns: list[str]) -> tuple[bytes, bytes]:
        issued = certs.issue(ca, role=role, node_id=node_id, dns=dns, ips=[LOOPBACK], out_dir=root / "issued")
        return issued.cert.read_bytes(), issued.key.read_bytes()

    made: dict[str, dict[str, bytes]] = {}
    requester = f"{BASE}-requester"
    for role, node_id, dns in (
        (
            "requester",
            requester,
            [*service_names(requester), *service_names(f"{requester}-node"), "localhost"],
        ),
        ("verifier", f"{BASE}-verifier", service_names(f"{BASE}-verifier")),
        ("client", "operator", []),
    ):
        cert, key = pair(role, node_id, dns)
        made[EXISTING_SECRETS[role]] = {"tls.crt": cert, "tls.key": key, "ca.crt": ca_pem}
    compute: dict[str, bytes] = {"ca.crt": ca_pem}
    for pod in compute_pods:
        cert, key = pair("compute", pod, [f"{pod}.{name}" for name in service_names(f"{BASE}-compute")])
        compute |= {f"{pod}.crt": cert, f"{pod}.key": key}
    made[EXISTING_SECRETS["compute"]] = compute
    return ca, made


def chart_ca(secrets: dict[str, dict[str, bytes]], folder: Path) -> Path:
    """The CA the chart made (generate mode), as `bacalhau-grpc certs` keeps one: ca.pem, ca-key.pem."""
    [files] = [files for name, files in secrets.items() if name == f"{BASE}-ca"]
    folder.mkdir(parents=True)
    (folder / certs.CA_CERT_FILE).write_bytes(files["tls.crt"])
    (folder / certs.CA_KEY_FILE).write_bytes(files["tls.key"])
    return folder


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_the_rendered_network_runs_a_job(tmp_path, mode):
    objects = helm_check.manifests(helm_check.render(MODES[mode], namespace=NAMESPACE))
    domain = helm_check.load_values(helm_check.CHART_DIR / "values.yaml")["clusterDomain"]
    secure = mode != "insecure"
    pods = make_pods(objects)
    assert sorted(p.component for p in pods) == ["compute", "compute", "requester", "verifier"]
    addresses, behind = address_map(objects, pods, domain)
    secrets = secrets_of(objects)
    compute_pods = sorted(p.name for p in pods if p.kind == "StatefulSet")
    ca_dir = None  # the CA's certificate and key (ca.pem, ca-key.pem): the chart's, or the operator's
    if mode == "generate":
        ca_dir = chart_ca(secrets, tmp_path / "chart-ca")
    elif mode == "existingSecret":
        ca_dir, made = operator_secrets(tmp_path, compute_pods)
        secrets |= made
    [test_pod] = make_pods_of_hook(objects)

    with running(pods, addresses, behind, secrets, tmp_path / "pods") as net:
        deadline = asyncio.get_running_loop().time() + START_DEADLINE
        await asyncio.gather(*(wait_serving(p, SERVICES[p.pod.component], deadline) for p in net.processes))
        [requester] = net.component("requester")

        # Each pod issued its certificate (TLS) for every name its peers dial it at.
        if secure:
            assert sorted(net.cert_names) == sorted(p.name for p in pods)
        else:
            assert net.cert_names == {}
        # (compute nodes dial the requester and advertise their own names; the requester dials the verifier)
        assert {pod.component for _, _, pod in net.dialled} == {"requester", "verifier", "compute"}
        for who, address, pod in net.dialled:
            host = address.rsplit(":", 1)[0]
            if secure:
                assert host in net.cert_names[pod.name], (
                    f"{who} dials {host}: not in {pod.name}'s certificate"
                )

        # The health port is plaintext and serves health alone; with TLS the service ports refuse
        # plaintext; in insecure mode they are plaintext.
        for process in net.processes:
            assert await plaintext_health(process.health_address) == grpc.StatusCode.OK
            service = SERVICES[process.pod.component]
            assert await plaintext_call(process.health_address, f"/{service}/Nothing") == (
                grpc.StatusCode.UNIMPLEMENTED
            )
            ports = ["grpc", "grpc-node"] if process.pod.component == "requester" and secure else ["grpc"]
            for name in ports:
                expected = grpc.StatusCode.UNAVAILABLE if secure else grpc.StatusCode.OK
                assert await plaintext_health(process.pod.local(name)) == expected, (process.pod.name, name)

        # The `helm test` pod's own check (over TLS, its client certificate issued by its init container),
        # on the same addresses.
        test_volumes = make_volumes(test_pod, secrets, tmp_path / "test-pod")
        run_init_containers(test_pod, addresses, test_volumes, tmp_path / "test-pod", net)
        [test_container] = test_pod.spec["containers"]
        argv, environ, rewriter = prepare(test_pod, test_container, addresses, test_volumes, tmp_path)
        argv = local_command(test_container["command"]) + argv[1:]
        if secure:
            assert "--cert" in argv and "--key" in argv  # a client certificate of its own
            for address in rewriter.dialled:
                assert address.rsplit(":", 1)[0] in net.cert_names[behind[address].name], address
        rc, out, err = await run_process(*argv, timeout=60, env=environ)
        assert rc == 0, out + err
        targets = 5 if secure else 4  # with TLS, the requester's node protocol too
        assert out.count(": SERVING") == targets and "every service is SERVING" in out

        # A job through the network: submitted to the requester (its client API over TLS, verified with
        # the cluster CA's certificate), bid on by a compute pod (its node ID is its pod name), run,
        # verified and published.
        tls_options: dict[str, Any] = {}
        if secure:
            ca_cert = ca_dir / certs.CA_CERT_FILE
            tls_options = {"ca_cert": str(ca_cert)}
        async with asyncio.timeout(60):
            key = ClientKey.load_or_create(tmp_path / "key")
            async with Client(requester.address, key=key, **tls_options) as client:
                job = await client.submit(
                    m.Job(
                        spec=m.Spec(
                            engine=m.Engine.NOOP, verifier=m.Verifier.NOOP, publisher=m.Publisher.NOOP
                        ),
                        deal=m.Deal(concurrency=1),
                    )
                )
                events = [event async for event in client.events(job.id, follow=True)]
        names = [event.event_name for event in events]
        assert names[-1] == m.JobEventType.RESULTS_PUBLISHED, names
        bidders = {event.source_node_id for event in events if event.event_name == m.JobEventType.BID}
        assert bidders and bidders <= set(compute_pods), bidders

        # The real grpcurl lists each process's services: its own, health and both reflections (with TLS
        # as an operator: a client certificate of the cluster's CA, for the mutual-TLS ports).
        if secure:
            operator = certs.issue(ca_dir, role="client", node_id="operator", out_dir=tmp_path / "operator")
            transport = ["-cacert", str(ca_cert), "-cert", str(operator.cert), "-key", str(operator.key)]
        else:
            transport = ["-plaintext"]
        content, node_protocol = (
            "bacalhau.content.v1.ContentService",
            "bacalhau.requester.v1.RequesterNodeService",
        )
        expected = {
            # with TLS the node protocol is on a port of its own, in insecure mode on the one port
            "requester": {SERVICES["requester"], content} | (set() if secure else {node_protocol}),
            "compute": {SERVICES["compute"], content},
            "verifier": {SERVICES["verifier"]},
        }
        listed = [(process.address, expected[process.pod.component]) for process in net.processes]
        if secure:
            listed.append((requester.pod.local("grpc-node"), {node_protocol, SERVICES["requester"], content}))
        for address, services in listed:
            rc, out, err = await run_process(grpcurl_path(), *transport, "-max-time", "20", address, "list")
            assert rc == 0, err
            assert set(out.split()) == services | {
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            }
        for process in net.processes:
            assert process.popen.poll() is None, process.output()

    for process in net.processes:  # stopped by SIGTERM, gracefully
        assert process.popen.returncode == 0, process.output()


def make_pods_of_hook(objects: list[dict[str, Any]]) -> list[Pod]:
    """The `helm test` pod (a Pod object) as a made-up pod."""
    return [
        Pod(obj["metadata"]["name"], "Pod", obj["metadata"]["labels"], pod_spec(obj))
        for obj in objects
        if obj["kind"] == "Pod"
    ]
