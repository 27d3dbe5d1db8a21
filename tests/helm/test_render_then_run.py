"""Render the chart, then run what it renders, as local processes: the real Helm renders it (2 compute nodes,
no Docker); each Deployment and StatefulSet pod's container becomes a `bacalhau-grpc` process with the
container's command, args and env, `$(VAR)` references expanded as Kubernetes expands them (POD_NAME and
POD_NAMESPACE from made-up pods). Every in-cluster address (`<service>.<namespace>.svc.<domain>:<port>`, a
compute pod's own DNS name) becomes 127.0.0.1 and a free port, the listen host 0.0.0.0 becomes 127.0.0.1,
and every volume mount a temporary folder. Then: each process answers gRPC health, the `helm test` pod's
own check passes, a job runs through them with the SDK, and the real grpcurl lists each one's services.

So the chart's wiring is the one that works: flags the CLI takes, addresses that name each other,
advertised compute addresses the requester can dial, node IDs from pod names."""

from __future__ import annotations

import asyncio
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
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.compute.settings import DEFAULT_WASM_CACHE_DIR
from bacalhau_grpc.sdk import Client
from bacalhau_grpc.sdk import sdk_types as m
from tests.helm.support import WORKLOAD_KINDS, helm_check, pod_spec
from tests.integration.common_testing import grpcurl_path, run_process

NAMESPACE = "bacalhau-test"
VALUES = {"compute": {"replicas": 2, "docker": {"mode": "none"}}}
BIN = Path(sys.executable).parent
START_DEADLINE = 30.0
# SIGTERM, then SIGKILL after the pod's grace period (Kubernetes' default terminationGracePeriodSeconds).
STOP_GRACE = 30.0
# Kubernetes' expansion of $(VAR) in command, args and env values: `$$` is a literal `$`, and a
# reference to an undefined variable stays as it is.
REFERENCE = re.compile(r"\$(\$|\(([A-Za-z_][A-Za-z0-9_.-]*)\))")
ADDRESS_FLAGS = ("--host", "--port")


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

    def port_named(self, name: str | int) -> int:
        """The container port a Service's targetPort (a name or a number) means."""
        if isinstance(name, int):
            return name
        for item in self.spec["containers"]:
            for port in item.get("ports", []):
                if port.get("name") == name:
                    return port["containerPort"]
        raise AssertionError(f"pod {self.name} has no port named {name}")


@dataclass
class Process:
    pod: Pod
    container: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def address(self) -> str:
        [port] = self.pod.ports.values()
        return f"127.0.0.1:{port}"

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
            else:
                pod = Pod(f"{name}-7c9f5b6d4-x{i}q2z", obj["kind"], labels, pod_spec(obj))
            for item in pod.spec["containers"]:
                for port in item.get("ports", []):
                    pod.ports[port["containerPort"]] = free_port()
            pods.append(pod)
    return pods


def address_map(objects: list[dict[str, Any]], pods: list[Pod], domain: str) -> dict[str, str]:
    """Every in-cluster host:port the pods may dial → 127.0.0.1:<local port> of the pod behind it."""
    mapping: dict[str, str] = {}
    for service in (o for o in objects if o["kind"] == "Service"):
        name, spec = service["metadata"]["name"], service["spec"]
        backends = [p for p in pods if spec["selector"].items() <= p.labels.items()]
        assert backends, f"Service {name} selects no pod"
        hosts = [name, f"{name}.{NAMESPACE}", f"{name}.{NAMESPACE}.svc", f"{name}.{NAMESPACE}.svc.{domain}"]
        for port in spec["ports"]:
            target = port.get("targetPort", port["port"])
            for host in hosts:  # a Service's name: one of its pods (as a connection lands on one)
                mapping[f"{host}:{port['port']}"] = (
                    f"127.0.0.1:{backends[0].ports[backends[0].port_named(target)]}"
                )
            if spec.get("clusterIP") == "None":  # headless: each pod by its own name too
                for pod in backends:
                    if pod.subdomain == name:
                        local = f"127.0.0.1:{pod.ports[pod.port_named(target)]}"
                        for host in (f"{pod.name}.{h}" for h in hosts[1:]):
                            mapping[f"{host}:{port['port']}"] = local
    return mapping


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

    def value(self, text: str) -> str:
        text = self.pattern.sub(lambda match: self.addresses[match[1]], text)
        for mount, local in self.mounts:
            if text == mount or text.startswith(mount.rstrip("/") + "/"):
                return str(local) + text[len(mount) :]
        return text

    def listen(self, name: str, text: str) -> str:
        """The value of --host / --port (or BACALHAU_HOST / BACALHAU_PORT)."""
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
                pending = arg[2:]
            elif arg.split("=", 1)[0] in ADDRESS_FLAGS and "=" in arg:
                flag, value = arg.split("=", 1)
                out.append(f"{flag}={self.listen(flag[2:], value)}")
            else:
                out.append(self.value(arg))
        return out

    def env(self, name: str, value: str) -> str:
        if name in ("BACALHAU_HOST", "BACALHAU_PORT"):
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


def prepare(pod: Pod, item: dict[str, Any], addresses: dict[str, str], root: Path) -> tuple[list[str], dict]:
    """argv and environment of one container, made local."""
    mounts = {}
    for mount in item.get("volumeMounts", []):
        local = root / pod.name / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"]] = local
    rewriter = Rewriter(addresses, pod.ports, mounts)
    variables = container_env(item, pod)
    argv = [expand(part, variables) for part in [*item["command"], *item.get("args", [])]]
    argv = local_command(argv[:1]) + rewriter.args(argv[1:])
    if "--wasm-cache-dir" in argv:
        # The compiled-module cache is this machine's, shared as every test's nodes share it: a compute
        # node compiles the CPython interpreter (~10 s of CPU) in the background when its cache is cold,
        # and a fresh folder per pod and run would make two nodes do that on every run.
        argv[argv.index("--wasm-cache-dir") + 1] = str(DEFAULT_WASM_CACHE_DIR)
    environ = base_environ(root / "home")
    environ.update({name: rewriter.env(name, value) for name, value in variables.items()})
    return argv, environ


@contextlib.contextmanager
def running(pods: list[Pod], addresses: dict[str, str], root: Path) -> Iterator[list[Process]]:
    """Starts each pod's containers; always stops them (SIGTERM, then SIGKILL after STOP_GRACE)."""
    processes: list[Process] = []
    (root / "home").mkdir(parents=True, exist_ok=True)
    try:
        for pod in pods:
            assert not pod.spec.get("initContainers"), "docker mode none renders no init containers"
            for item in pod.spec["containers"]:
                assert item["command"] == ["bacalhau-grpc"], item["name"]
                argv, environ = prepare(pod, item, addresses, root)
                log = root / f"{pod.name}.{item['name']}.log"
                with log.open("wb") as out:
                    popen = subprocess.Popen(
                        argv, env=environ, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                    )
                processes.append(Process(pod, item["name"], argv, popen, log))
        yield processes
    finally:
        for process in processes:
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for process in processes:
            try:
                process.popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()


async def wait_serving(process: Process, service: str, deadline: float) -> None:
    """Polls the process's gRPC health (each call waits for the connection) until SERVING or the deadline."""
    loop = asyncio.get_running_loop()
    last = "no answer"
    async with grpc.aio.insecure_channel(process.address) as channel:
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


async def test_the_rendered_network_runs_a_job(tmp_path):
    objects = helm_check.manifests(helm_check.render(VALUES, namespace=NAMESPACE))
    domain = helm_check.load_values(helm_check.CHART_DIR / "values.yaml")["clusterDomain"]
    pods = make_pods(objects)
    assert sorted(p.labels["app.kubernetes.io/component"] for p in pods) == [
        "compute",
        "compute",
        "requester",
        "verifier",
    ]
    addresses = address_map(objects, pods, domain)
    compute_pods = sorted(p.name for p in pods if p.kind == "StatefulSet")
    services = {
        "requester": "bacalhau.requester.v1.RequesterService",
        "verifier": "bacalhau.verifier.v1.VerifierService",
        "compute": "bacalhau.compute.v1.ComputeService",
    }

    with running(pods, addresses, tmp_path) as processes:
        component = {p.pod.name: p.pod.labels["app.kubernetes.io/component"] for p in processes}
        deadline = asyncio.get_running_loop().time() + START_DEADLINE
        await asyncio.gather(*(wait_serving(p, services[component[p.pod.name]], deadline) for p in processes))
        requester = next(p for p in processes if component[p.pod.name] == "requester")

        # The `helm test` pod's own check, on the same addresses.
        [test_pod] = [o for o in objects if o["kind"] == "Pod"]
        test_container = test_pod["spec"]["containers"][0]
        argv = local_command(test_container["command"]) + [
            Rewriter(addresses, {}, {}).value(arg) for arg in test_container["args"]
        ]
        rc, out, err = await run_process(*argv, timeout=60)
        assert rc == 0, out + err
        assert out.count(": SERVING") == 4 and "every service is SERVING" in out

        # A job through the network: submitted to the requester, bid on by a compute pod (its node ID is
        # its pod name), run, verified and published.
        async with asyncio.timeout(60):
            async with Client(requester.address, key=ClientKey.load_or_create(tmp_path / "key")) as client:
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

        # The real grpcurl lists each process's services: its own, health and both reflections.
        expected = {
            "requester": {services["requester"], "bacalhau.content.v1.ContentService"},
            "compute": {services["compute"], "bacalhau.content.v1.ContentService"},
            "verifier": {services["verifier"]},
        }
        for process in processes:
            rc, out, err = await run_process(
                grpcurl_path(), "-plaintext", "-max-time", "20", process.address, "list"
            )
            assert rc == 0, err
            assert set(out.split()) == expected[component[process.pod.name]] | {
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            }
        for process in processes:
            assert process.popen.poll() is None, process.output()

    for process in processes:  # stopped by SIGTERM, gracefully
        assert process.popen.returncode == 0, process.output()
