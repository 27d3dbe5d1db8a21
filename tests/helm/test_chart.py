"""The chart through the real Helm (v4 Go SDK, helm-python-sdk) and kubernetes-validate: lint, render and
strict validation of every scenario; the schema refusing bad values by name; what the rendered objects
promise (security contexts, probes, addresses, Docker modes, tracing, NetworkPolicies, NOTES, helm test)."""

from __future__ import annotations

import base64
import hashlib
import json
import tomllib
from typing import Any

import helm_python as helm
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from bacalhau_grpc.common import certs
from tests.helm.support import (
    ROOT,
    WORKLOAD_KINDS,
    container,
    env,
    find,
    flag,
    helm_check,
    pod_spec,
    render_objects,
)

SCENARIOS = helm_check.scenarios()
NS = helm_check.NAMESPACE
BASE = f"{helm_check.RELEASE}-bacalhau-grpc"
SERVICES = {
    "requester": "bacalhau.requester.v1.RequesterService",
    "verifier": "bacalhau.verifier.v1.VerifierService",
    "compute": "bacalhau.compute.v1.ComputeService",
}


@pytest.fixture(scope="module")
def default_objects() -> list[dict[str, Any]]:
    return render_objects()


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] in WORKLOAD_KINDS]


# ------------------------------------------------------------------------------------ lint and validate


def test_the_ci_scenarios_are_there():
    assert [s.name for s in SCENARIOS] == [
        "default",
        "ci/dashboard-values.yaml",
        "ci/insecure-values.yaml",
        "ci/single-compute-values.yaml",
        "ci/three-compute-dind-values.yaml",
        "ci/tls-cert-manager-csi-values.yaml",
        "ci/tls-cert-manager-values.yaml",
        "ci/tls-existing-ca-values.yaml",
        "ci/tls-existing-secret-values.yaml",
        "ci/tracing-values.yaml",
    ]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_lints_renders_and_every_object_is_valid_kubernetes(scenario):
    count, problems = helm_check.check(scenario)
    assert problems == []
    assert count >= 8


def test_chart_metadata_follows_the_package():
    chart = yaml.safe_load((helm_check.CHART_DIR / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "bacalhau-grpc"
    assert chart["appVersion"] == project["version"]


def test_the_image_tag_defaults_to_the_app_version(default_objects):
    chart = yaml.safe_load((helm_check.CHART_DIR / "Chart.yaml").read_text())
    for obj in workloads(default_objects):
        for item in pod_spec(obj)["containers"]:
            assert item["image"] == f"bacalhau-grpc:{chart['appVersion']}"
    objects = render_objects({"image": {"repository": "registry.example/bacalhau-grpc", "tag": "1.2.3"}})
    assert container(find(objects, "Deployment", "requester"), "requester")["image"] == (
        "registry.example/bacalhau-grpc:1.2.3"
    )


# --------------------------------------------------------------------------------------------- schema

BAD_VALUES = [
    pytest.param({"compute": {"replicas": -1}}, ["/compute/replicas", "-1"], id="negative-replicas"),
    pytest.param({"compute": {"replicas": "three"}}, ["/compute/replicas", "string"], id="replicas-type"),
    pytest.param({"compute": {"docker": {"mode": "bogus"}}}, ["/compute/docker/mode", "'bogus'"], id="mode"),
    pytest.param({"bogus": 1}, ["'bogus' not allowed"], id="unknown-top-level-key"),
    pytest.param({"compute": {"dockr": {}}}, ["/compute", "'dockr' not allowed"], id="unknown-nested-key"),
    pytest.param({"verifier": {"port": 70000}}, ["/verifier/port", "got 70,000"], id="port-range"),
    pytest.param({"logLevel": "LOUD"}, ["/logLevel", "'LOUD'"], id="log-level"),
    pytest.param(
        {"requester": {"service": {"type": "Ingress"}}}, ["/requester/service/type", "'Ingress'"], id="svc"
    ),
    pytest.param(
        {"compute": {"limits": {"totalCpu": "lots"}}}, ["/compute/limits/totalCpu", "'lots'"], id="limit"
    ),
    pytest.param(
        {"requester": {"persistence": {"size": "big"}}}, ["/requester/persistence/size", "'big'"], id="size"
    ),
    pytest.param(
        {"compute": {"podDisruptionBudget": {"enabled": True, "maxUnavailable": -2}}},
        ["/compute/podDisruptionBudget/maxUnavailable"],
        id="pdb",
    ),
    pytest.param({"networkPolicy": {"enabled": "yes"}}, ["/networkPolicy/enabled", "boolean"], id="bool"),
    pytest.param({"requester": {"extraArgs": [1]}}, ["/requester/extraArgs/0"], id="args-type"),
]


@pytest.mark.parametrize(("values", "expected"), BAD_VALUES)
def test_the_schema_refuses_bad_values_by_name(values, expected):
    with pytest.raises(helm.HelmValuesError) as caught:
        helm_check.render(values)
    message = str(caught.value)
    for part in expected:
        assert part in message, message
    # `helm lint` says the same.
    assert any(expected[0] in problem for problem in helm_check.lint(values))


def test_every_schema_object_is_closed():
    """additionalProperties: false wherever the schema lists properties: a typo is an error, not ignored."""
    schema = json.loads((helm_check.CHART_DIR / "values.schema.json").read_text())
    open_objects = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(where)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(schema, "")
    assert open_objects == []


def test_socket_mode_needs_the_sockets_group():
    with pytest.raises(helm.HelmRenderError, match=r"compute\.docker\.socket\.groupId is required"):
        helm_check.render({"compute": {"docker": {"mode": "socket"}}})


# --------------------------------------------------------------------------------- the rendered objects


def test_every_pod_is_locked_down(default_objects):
    pods = [*workloads(default_objects), *(o for o in default_objects if o["kind"] == "Pod")]
    assert len(pods) == 4  # requester, verifier, compute, the test pod
    for obj in pods:
        spec = pod_spec(obj)
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False  # no SERVICE_PORT=tcp://... next to BACALHAU_PORT
        assert spec["serviceAccountName"] == BASE
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True
        assert (context["runAsUser"], context["runAsGroup"]) == (10001, 10001)
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        for item in spec["containers"]:
            sc = item["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc.get("privileged") is not True
            assert {"name": "tmp", "mountPath": "/tmp"} in item["volumeMounts"]
    account = next(o for o in default_objects if o["kind"] == "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


def test_every_object_has_the_standard_labels(default_objects):
    for obj in default_objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "bacalhau-grpc"
        assert labels["app.kubernetes.io/instance"] == helm_check.RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["helm.sh/chart"] == "bacalhau-grpc-0.1.0"


@pytest.mark.parametrize(
    ("kind", "component", "port"),
    [("Deployment", "requester", 1234), ("Deployment", "verifier", 1236), ("StatefulSet", "compute", 1235)],
)
def test_each_node_serves_on_its_port_with_grpc_health_probes_on_a_plaintext_port(
    default_objects, kind, component, port
):
    item = container(find(default_objects, kind, component), component)
    assert item["command"] == ["bacalhau-grpc"]
    assert item["args"][:3] == ["serve", "--node-type", component]
    assert flag(item["args"], "--host") == "0.0.0.0"
    assert flag(item["args"], "--port") == str(port)
    assert flag(item["args"], "--health-port") == "1238"
    ports = {p["name"]: p["containerPort"] for p in item["ports"]}
    assert ports["grpc"] == port and ports["health"] == 1238
    assert set(ports) == ({"grpc", "grpc-node", "health"} if component == "requester" else {"grpc", "health"})
    # The kubelet's gRPC probes cannot speak TLS: they ask the plaintext health port.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert item[probe]["grpc"] == {"port": 1238}
    [service] = [
        o
        for o in default_objects
        if o["kind"] == "Service" and o["metadata"]["name"] == f"{BASE}-{component}"
    ]
    assert service["spec"]["ports"][0]["targetPort"] == "grpc"
    # The health port is on no Service.
    for obj in default_objects:
        if obj["kind"] == "Service":
            assert "health" not in [p["targetPort"] for p in obj["spec"]["ports"]]


def test_the_requester_is_one_pod_on_its_claim(default_objects):
    deployment = find(default_objects, "Deployment", "requester")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    item = container(deployment, "requester")
    assert flag(item["args"], "--data-dir") == "/data"
    assert flag(item["args"], "--verifier-address") == f"{BASE}-verifier.{NS}.svc.cluster.local:1236"
    assert {"name": "data", "mountPath": "/data"} in item["volumeMounts"]
    claim = find(default_objects, "PersistentVolumeClaim", "requester")
    volumes = pod_spec(deployment)["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}} in volumes
    existing = render_objects({"requester": {"persistence": {"existingClaim": "mine"}}})
    assert not [o for o in existing if o["kind"] == "PersistentVolumeClaim"]
    volumes = pod_spec(find(existing, "Deployment", "requester"))["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "mine"}} in volumes


def test_compute_nodes_are_named_and_reached_by_their_pod(default_objects):
    statefulset = find(default_objects, "StatefulSet", "compute")
    headless = find(default_objects, "Service", "compute")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert statefulset["spec"]["serviceName"] == headless["metadata"]["name"] == f"{BASE}-compute"
    assert statefulset["spec"]["replicas"] == 3
    item = container(statefulset, "compute")
    args = item["args"]
    assert flag(args, "--node-id") == "$(POD_NAME)"
    assert flag(args, "--advertise-address") == (
        f"$(POD_NAME).{BASE}-compute.$(POD_NAMESPACE).svc.cluster.local:1235"
    )
    # With TLS, the requester's node protocol on its own Service.
    assert flag(args, "--requester-address") == f"{BASE}-requester-node.{NS}.svc.cluster.local:1237"
    assert flag(args, "--docker-host") is None
    variables = env(item)
    assert variables["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert variables["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    [template] = statefulset["spec"]["volumeClaimTemplates"]
    assert template["metadata"]["name"] == "data"
    assert template["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert {"name": "data", "mountPath": "/data"} in item["volumeMounts"]
    assert flag(args, "--data-dir") == "/data"


def test_limits_and_ipfs_become_flags():
    objects = render_objects(
        {
            "ipfs": {"connect": "/dns4/ipfs/tcp/5001"},
            "compute": {"limits": {"totalCpu": 2, "totalMemory": "4Gb", "jobGpu": "1"}},
        }
    )
    args = container(find(objects, "StatefulSet", "compute"), "compute")["args"]
    assert flag(args, "--limit-total-cpu") == "2"
    assert flag(args, "--limit-total-memory") == "4Gb"
    assert flag(args, "--limit-job-gpu") == "1"
    assert flag(args, "--limit-job-cpu") is None
    assert flag(args, "--ipfs-connect") == "/dns4/ipfs/tcp/5001"
    requester = container(find(objects, "Deployment", "requester"), "requester")["args"]
    assert flag(requester, "--ipfs-connect") == "/dns4/ipfs/tcp/5001"


def test_docker_mode_none_touches_nothing_on_the_node(default_objects):
    spec = pod_spec(find(default_objects, "StatefulSet", "compute"))
    assert [item["name"] for item in spec["initContainers"]] == ["tls"]  # its certificate, nothing else
    assert not [v for v in spec["volumes"] if "hostPath" in v]


def test_docker_mode_socket_mounts_the_nodes_socket_and_a_host_data_folder():
    objects = render_objects({"compute": {"docker": {"mode": "socket", "socket": {"groupId": 998}}}})
    statefulset = find(objects, "StatefulSet", "compute")
    spec = pod_spec(statefulset)
    assert spec["securityContext"]["supplementalGroups"] == [998]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["docker-socket"]["hostPath"] == {"path": "/var/run/docker.sock", "type": "Socket"}
    assert volumes["data"]["hostPath"] == {"path": "/var/lib/bacalhau-grpc", "type": "DirectoryOrCreate"}
    assert "volumeClaimTemplates" not in statefulset["spec"]
    item = container(statefulset, "compute")
    data_dir = f"/var/lib/bacalhau-grpc/{NS}/$(POD_NAME)"
    assert flag(item["args"], "--data-dir") == data_dir
    assert flag(item["args"], "--docker-host") == "unix:///var/run/docker.sock"
    assert {"name": "data", "mountPath": "/var/lib/bacalhau-grpc"} in item["volumeMounts"]
    assert item["securityContext"]["readOnlyRootFilesystem"] is True
    tls, init = spec["initContainers"]
    assert tls["name"] == "tls" and init["name"] == "host-data-dir"
    assert init["args"][-3:] == [data_dir, "10001", "10001"]
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert init["securityContext"]["allowPrivilegeEscalation"] is False


def test_docker_mode_dind_privileges_only_the_sidecar():
    objects = render_objects({"compute": {"docker": {"mode": "dind"}}})
    statefulset = find(objects, "StatefulSet", "compute")
    spec = pod_spec(statefulset)
    tls, dind = spec["initContainers"]  # the certificate first: it ends before the sidecar starts
    assert tls["name"] == "tls"
    assert dind["name"] == "dind" and dind["image"] == "docker:28-dind"
    assert dind["restartPolicy"] == "Always"  # a native sidecar: ready before the node starts
    assert dind["securityContext"]["privileged"] is True
    assert dind["args"][:3] == ["dockerd", "--host=unix:///run/dind/docker.sock", "--group=10001"]
    assert not [arg for arg in dind["args"] if "tcp://" in arg]
    assert "startupProbe" in dind
    compute = container(statefulset, "compute")
    assert compute["securityContext"].get("privileged") is not True
    assert compute["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert flag(compute["args"], "--docker-host") == "unix:///run/dind/docker.sock"
    # The node's data at the same path in both: the engine bind-mounts job folders by path.
    assert {"name": "data", "mountPath": "/data"} in dind["volumeMounts"]
    assert {"name": "data", "mountPath": "/data"} in compute["volumeMounts"]
    assert {"name": "dind-socket", "mountPath": "/run/dind"} in compute["volumeMounts"]
    privileged = [
        item["name"]
        for obj in workloads(objects)
        for item in [*pod_spec(obj).get("initContainers", []), *pod_spec(obj)["containers"]]
        if item.get("securityContext", {}).get("privileged")
    ]
    assert privileged == ["dind"]


def test_tracing_sets_the_otlp_variables_on_every_pod(default_objects):
    for obj in workloads(default_objects):
        for item in pod_spec(obj)["containers"]:
            assert not [name for name in env(item) if name.startswith("OTEL_")]
    objects = render_objects(helm_check.load_values(helm_check.CI_DIR / "tracing-values.yaml"))
    for obj in workloads(objects):
        for item in pod_spec(obj)["containers"]:
            variables = env(item)
            assert variables["OTEL_EXPORTER_OTLP_ENDPOINT"] == (
                "http://otel-collector.observability.svc.cluster.local:4317"
            )
            assert variables["OTEL_RESOURCE_ATTRIBUTES"] == (
                "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),deployment.environment=staging"
            )
    requester = env(container(find(objects, "Deployment", "requester"), "requester"))
    assert requester["OTEL_TRACES_SAMPLER"] == "parentbased_always_on"


def policies_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["labels"]["app.kubernetes.io/component"]: o["spec"]
        for o in objects
        if o["kind"] == "NetworkPolicy"
    }


def peers(rule: dict[str, Any]) -> list[str]:
    return [peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in rule["from"]]


def test_network_policies_are_on_by_default_and_open_only_the_requester_api(default_objects):
    policies = policies_of(default_objects)
    assert sorted(policies) == ["compute", "requester", "verifier"]
    # The client API from anyone; the node protocol (TLS) from the compute pods (and the test pod) only;
    # no rule for the health port (the kubelet is not a pod; see networkPolicy.healthFrom).
    api, node = policies["requester"]["ingress"]
    assert api == {"ports": [{"port": 1234, "protocol": "TCP"}]}  # no `from`: any client
    assert node["ports"] == [{"port": 1237, "protocol": "TCP"}]
    assert peers(node) == ["compute", "test"]
    for component, port in (("compute", 1235), ("verifier", 1236)):
        [rule] = policies[component]["ingress"]
        assert rule["ports"] == [{"port": port, "protocol": "TCP"}]
        assert peers(rule) == ["requester", "test"]
    # The compute pods dial the requester's node protocol port; the requester dials compute and verifier.
    [to_requester] = [rule for rule in policies["compute"]["egress"] if "to" in rule]
    assert to_requester["ports"] == [{"port": 1237, "protocol": "TCP"}]
    assert [rule["ports"][0]["port"] for rule in policies["requester"]["egress"]][:2] == [1235, 1236]
    # In insecure mode the compute nodes call the requester's one port.
    insecure = policies_of(render_objects({"tls": {"mode": "insecure"}}))
    [to_requester] = [rule for rule in insecure["compute"]["egress"] if "to" in rule]
    assert to_requester["ports"] == [{"port": 1234, "protocol": "TCP"}]
    assert len(insecure["requester"]["ingress"]) == 1
    assert not [
        o for o in render_objects({"networkPolicy": {"enabled": False}}) if o["kind"] == "NetworkPolicy"
    ]


def test_network_policies_with_tracing_clients_and_health_peers():
    objects = render_objects(helm_check.load_values(helm_check.CI_DIR / "tracing-values.yaml"))
    policies = policies_of(objects)
    otlp = {"port": 4317, "protocol": "TCP"}
    observability = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
    for spec in policies.values():
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        assert {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]} in spec["egress"]
        assert {"ports": [otlp], "to": [observability]} in spec["egress"]
    assert policies["verifier"]["egress"][0]["ports"][0]["port"] == 53
    nodes = {"ipBlock": {"cidr": "10.0.0.0/16"}}
    clients = render_objects(
        {
            "networkPolicy": {"clients": [{"ipBlock": {"cidr": "10.1.0.0/16"}}], "healthFrom": [nodes]},
        }
    )
    api, _, health = find(clients, "NetworkPolicy", "requester")["spec"]["ingress"]
    assert api["from"][0] == {"ipBlock": {"cidr": "10.1.0.0/16"}}
    # with TLS the compute pods do not call the client API; the test pod does
    assert [
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        for p in api["from"]
    ][1:] == ["test"]
    assert health == {"from": [nodes], "ports": [{"port": 1238, "protocol": "TCP"}]}
    for component in ("compute", "verifier"):
        assert {"from": [nodes], "ports": [{"port": 1238, "protocol": "TCP"}]} in find(
            clients, "NetworkPolicy", component
        )["spec"]["ingress"]


def test_disruption_budgets(default_objects):
    budgets = {
        o["metadata"]["labels"]["app.kubernetes.io/component"]: o["spec"]
        for o in default_objects
        if o["kind"] == "PodDisruptionBudget"
    }
    assert sorted(budgets) == ["compute", "verifier"]
    assert budgets["compute"]["maxUnavailable"] == 1
    objects = render_objects({"requester": {"podDisruptionBudget": {"enabled": True, "maxUnavailable": 0}}})
    assert find(objects, "PodDisruptionBudget", "requester")["spec"]["maxUnavailable"] == 0


def test_notes_say_how_to_reach_the_api_with_tls():
    text = helm_check.notes(helm_check.render())
    assert f"kubectl --namespace {NS} port-forward service/{BASE}-requester 1234:1234" in text
    # The CA's certificate from its Secret, for grpcurl and for the CLI/SDK (BACALHAU_TLS_CA_CERT).
    assert (
        f"kubectl --namespace {NS} get secret {BASE}-ca -o jsonpath='{{.data.tls\\.crt}}' | base64 -d "
        "> bacalhau-ca.pem"
    ) in text
    assert "grpcurl -cacert bacalhau-ca.pem localhost:1234 list" in text
    assert "BACALHAU_TLS_CA_CERT=$PWD/bacalhau-ca.pem" in text
    assert (
        "bacalhau-grpc sign-job job.yaml | grpcurl -cacert bacalhau-ca.pem -d @ localhost:1234 "
        "bacalhau.requester.v1.RequesterService/SubmitJob"
    ) in text
    assert "-plaintext" not in text
    assert f"helm test {helm_check.RELEASE} --namespace {NS}" in text
    # cert-manager: the requester's Secret carries the CA as ca.crt.
    text = helm_check.notes(helm_check.render({"tls": {"mode": "certManager"}}))
    assert f"get secret {BASE}-requester-tls -o jsonpath='{{.data.ca\\.crt}}'" in text
    # insecure: plaintext, said so.
    text = helm_check.notes(helm_check.render({"tls": {"mode": "insecure"}}))
    assert "grpcurl -plaintext localhost:1234 list" in text and "PLAINTEXT" in text
    assert "BACALHAU_TLS_CA_CERT" not in text


def test_the_helm_test_pod_checks_every_service_and_compute_pod_over_tls():
    objects = render_objects({"compute": {"replicas": 2}})
    [pod] = [o for o in objects if o["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    item = pod["spec"]["containers"][0]
    assert item["command"] == ["/opt/bacalhau-grpc/bin/python"]
    tls = "/run/bacalhau-grpc/tls"
    assert item["args"][2:] == [
        "60",
        "--ca",
        "/run/bacalhau-grpc/trust/ca.pem",
        "--cert",
        f"{tls}/client-$(POD_NAME).pem",
        "--key",
        f"{tls}/client-$(POD_NAME)-key.pem",
        f"{BASE}-requester.{NS}.svc.cluster.local:1234/{SERVICES['requester']}",
        f"{BASE}-requester-node.{NS}.svc.cluster.local:1237/bacalhau.requester.v1.RequesterNodeService",
        f"{BASE}-verifier.{NS}.svc.cluster.local:1236/{SERVICES['verifier']}",
        f"{BASE}-compute-0.{BASE}-compute.{NS}.svc.cluster.local:1235/{SERVICES['compute']}",
        f"{BASE}-compute-1.{BASE}-compute.{NS}.svc.cluster.local:1235/{SERVICES['compute']}",
    ]
    # Its own client certificate, issued by its init container.
    [init] = pod["spec"]["initContainers"]
    assert flag(init["args"], "--role") == "client" and flag(init["args"], "--node-id") == "$(POD_NAME)"
    insecure = next(o for o in render_objects({"tls": {"mode": "insecure"}}) if o["kind"] == "Pod")
    args = insecure["spec"]["containers"][0]["args"]
    assert args[3].startswith(f"{BASE}-requester.{NS}") and not [a for a in args if a.startswith("--")]
    assert "initContainers" not in insecure["spec"]


# ---------------------------------------------------------------------------------------------------- TLS

TLS_DIR = "/run/bacalhau-grpc/tls"
POD_COMPONENTS = [("Deployment", "requester"), ("Deployment", "verifier"), ("StatefulSet", "compute")]


def volumes_of(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {volume["name"]: volume for volume in pod_spec(obj).get("volumes", [])}


def mounts_of(item: dict[str, Any]) -> dict[str, str]:
    return {mount["name"]: mount["mountPath"] for mount in item.get("volumeMounts", [])}


def all_values(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == name]


def test_generate_mode_makes_an_ecdsa_ca_the_cli_issues_from(default_objects, tmp_path):
    [secret] = [o for o in default_objects if o["kind"] == "Secret"]
    assert secret["metadata"]["name"] == f"{BASE}-ca"
    assert secret["type"] == "kubernetes.io/tls"
    files = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    assert files["ca.crt"] == files["tls.crt"]
    ca = x509.load_pem_x509_certificate(files["tls.crt"])
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert (
        isinstance(ca.public_key(), ec.EllipticCurvePublicKey) and ca.public_key().curve.name == "secp256r1"
    )
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3649
    # What each pod's init container does with it: `bacalhau-grpc certs issue`.
    (tmp_path / certs.CA_CERT_FILE).write_bytes(files["tls.crt"])
    (tmp_path / certs.CA_KEY_FILE).write_bytes(files["tls.key"])
    certs.load_ca(tmp_path)
    issued = certs.issue(
        tmp_path, role="compute", node_id="c-0", dns=["c-0.example"], out_dir=tmp_path / "out"
    )
    assert certs.identity_of(issued.cert.read_bytes()) == certs.Identity("compute", "c-0")


@pytest.mark.parametrize(("kind", "component"), POD_COMPONENTS)
def test_generate_mode_each_pod_issues_its_own_certificate_and_only_its_init_container_sees_the_ca_key(
    default_objects, kind, component
):
    workload = find(default_objects, kind, component)
    spec = pod_spec(workload)
    init = container(workload, "tls")
    main = container(workload, component)
    args = init["args"]
    assert init["command"] == ["bacalhau-grpc"] and args[:2] == ["certs", "issue"]
    assert init["securityContext"] == main["securityContext"]  # as locked down as the node
    role, node_id = flag(args, "--role"), flag(args, "--node-id")
    assert role == component
    cert_file, key_file = (f"{TLS_DIR}/{name}" for name in certs.cert_file_names(role, node_id))
    assert flag(main["args"], "--tls-cert") == cert_file
    assert flag(main["args"], "--tls-key") == key_file
    assert flag(main["args"], "--tls-ca") == "/run/bacalhau-grpc/trust/ca.pem"
    assert flag(main["args"], "--insecure") is None and "--insecure" not in main["args"]
    assert flag(args, "--out") == TLS_DIR and flag(args, "--days") == "365"
    # The CA's key is in the init container alone; the node sees its own pair and the CA's certificate.
    assert mounts_of(init) == {"tls-ca": "/run/bacalhau-grpc/ca", "tls": TLS_DIR}
    assert "tls-ca" not in mounts_of(main)
    assert mounts_of(main)["tls"] == TLS_DIR and mounts_of(main)["tls-trust"] == "/run/bacalhau-grpc/trust"
    volumes = volumes_of(workload)
    assert volumes["tls"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Mi"}
    assert volumes["tls-ca"]["secret"]["secretName"] == f"{BASE}-ca"
    assert volumes["tls-ca"]["secret"]["items"] == [
        {"key": "tls.crt", "path": "ca.pem"},
        {"key": "tls.key", "path": "ca-key.pem"},
    ]
    assert volumes["tls-trust"]["secret"]["items"] == [{"key": "tls.crt", "path": "ca.pem"}]
    assert spec["initContainers"][0]["name"] == "tls"
    # A new CA restarts every pod (each issues its certificate anew): the CA's checksum, the same CA as the
    # Secret's (one CA per render).
    [secret] = [o for o in default_objects if o["kind"] == "Secret"]
    ca_digest = hashlib.sha256(base64.b64decode(secret["data"]["tls.crt"])).hexdigest()
    assert workload["spec"]["template"]["metadata"]["annotations"]["bacalhau-grpc/tls-checksum"] == ca_digest
    # Who it is and where it is dialled.
    dns = all_values(args, "--dns")
    if component == "requester":
        assert node_id == f"{BASE}-requester" == flag(main["args"], "--node-id")
        for service in (f"{BASE}-requester", f"{BASE}-requester-node"):
            assert f"{service}.{NS}.svc.cluster.local" in dns and service in dns
        assert "localhost" in dns and all_values(args, "--ip") == ["127.0.0.1"]
        assert flag(main["args"], "--node-port") == "1237"
    elif component == "verifier":
        assert node_id == "$(POD_NAME)" == flag(main["args"], "--node-id")
        assert dns[-1] == f"{BASE}-verifier.{NS}.svc.cluster.local"
        requester = container(find(default_objects, "Deployment", "requester"), "requester")
        assert flag(requester["args"], "--verifier-address").rsplit(":", 1)[0] in dns
    else:
        assert node_id == "$(POD_NAME)" == flag(main["args"], "--node-id")
        advertised = flag(main["args"], "--advertise-address").rsplit(":", 1)[0]
        assert advertised.replace("$(POD_NAMESPACE)", NS) in dns
        assert dns == [f"$(POD_NAME).{BASE}-compute{suffix}" for suffix in ("", f".{NS}", f".{NS}.svc")] + [
            f"$(POD_NAME).{BASE}-compute.{NS}.svc.cluster.local"
        ]


def test_the_requester_node_protocol_has_a_cluster_internal_service():
    objects = render_objects({"requester": {"service": {"type": "LoadBalancer"}}})
    services = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Service"}
    assert services[f"{BASE}-requester"]["type"] == "LoadBalancer"
    assert [p["port"] for p in services[f"{BASE}-requester"]["ports"]] == [1234]  # the client API alone
    node = services[f"{BASE}-requester-node"]
    assert node["type"] == "ClusterIP"
    assert node["ports"] == [
        {
            "name": "grpc-node",
            "port": 1237,
            "targetPort": "grpc-node",
            "protocol": "TCP",
            "appProtocol": "grpc",
        }
    ]


def test_the_ca_can_be_an_existing_secret():
    objects = render_objects(helm_check.load_values(helm_check.CI_DIR / "tls-existing-ca-values.yaml"))
    assert not [o for o in objects if o["kind"] == "Secret"]
    for kind, component in POD_COMPONENTS:
        workload = find(objects, kind, component)
        assert volumes_of(workload)["tls-ca"]["secret"]["secretName"] == "bacalhau-cluster-ca"
        assert flag(container(workload, "tls")["args"], "--days") == "90"


def test_insecure_mode_is_plaintext_everywhere():
    objects = render_objects(helm_check.load_values(helm_check.CI_DIR / "insecure-values.yaml"))
    assert not [o for o in objects if o["kind"] == "Secret" or o["apiVersion"].startswith("cert-manager.io")]
    assert f"{BASE}-requester-node" not in [o["metadata"]["name"] for o in objects if o["kind"] == "Service"]
    for kind, component in POD_COMPONENTS:
        workload = find(objects, kind, component)
        item = container(workload, component)
        assert "--insecure" in item["args"]
        assert not [a for a in item["args"] if a.startswith("--tls-") or a == "--node-port"]
        assert flag(item["args"], "--health-port") == "1238"
        assert "initContainers" not in pod_spec(workload)
        assert not {"tls", "tls-ca", "tls-trust"} & set(volumes_of(workload))
        assert "bacalhau-grpc/tls-checksum" not in (
            workload["spec"]["template"]["metadata"].get("annotations") or {}
        )
    compute = container(find(objects, "StatefulSet", "compute"), "compute")
    assert flag(compute["args"], "--requester-address") == f"{BASE}-requester.{NS}.svc.cluster.local:1234"


def test_cert_manager_mode_with_the_charts_own_ca():
    objects = render_objects(helm_check.load_values(helm_check.CI_DIR / "tls-cert-manager-values.yaml"))
    managed = {
        (o["kind"], o["metadata"]["name"]): o["spec"]
        for o in objects
        if o["apiVersion"] == "cert-manager.io/v1"
    }
    issuer = {"name": f"{BASE}-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert sorted(managed) == [
        ("Certificate", f"{BASE}-ca"),
        ("Certificate", f"{BASE}-requester"),
        ("Certificate", f"{BASE}-verifier"),
        ("Issuer", f"{BASE}-ca"),
        ("Issuer", f"{BASE}-selfsigned"),
    ]
    assert managed["Issuer", f"{BASE}-selfsigned"] == {"selfSigned": {}}
    ca = managed["Certificate", f"{BASE}-ca"]
    assert ca["isCA"] is True and ca["secretName"] == f"{BASE}-ca"
    assert ca["privateKey"] == {"algorithm": "ECDSA", "size": 256, "encoding": "PKCS8"}
    assert ca["issuerRef"]["name"] == f"{BASE}-selfsigned"
    assert managed["Issuer", f"{BASE}-ca"] == {"ca": {"secretName": f"{BASE}-ca"}}
    for component in ("requester", "verifier"):
        cert = managed["Certificate", f"{BASE}-{component}"]
        assert cert["uris"] == [f"spiffe://bacalhau-grpc/{component}/{BASE}-{component}"]
        assert cert["secretName"] == f"{BASE}-{component}-tls"
        assert cert["issuerRef"] == issuer
        assert cert["usages"] == ["digital signature", "server auth", "client auth"]
        assert cert["privateKey"]["algorithm"] == "ECDSA" and cert["privateKey"]["rotationPolicy"] == "Always"
        assert (cert["duration"], cert["renewBefore"]) == ("2160h", "360h")
        assert f"{BASE}-{component}.{NS}.svc.cluster.local" in cert["dnsNames"]
        workload = find(objects, "Deployment", component)
        assert "initContainers" not in pod_spec(workload)
        assert volumes_of(workload)["tls"]["secret"]["secretName"] == f"{BASE}-{component}-tls"
        item = container(workload, component)
        assert [flag(item["args"], f"--tls-{f}") for f in ("cert", "key", "ca")] == [
            f"{TLS_DIR}/tls.crt",
            f"{TLS_DIR}/tls.key",
            f"{TLS_DIR}/ca.crt",
        ]
    requester = managed["Certificate", f"{BASE}-requester"]
    assert f"{BASE}-requester-node.{NS}.svc.cluster.local" in requester["dnsNames"]
    assert {"localhost", "bacalhau.example.org"} <= set(requester["dnsNames"])
    assert requester["ipAddresses"] == ["127.0.0.1"]
    # Compute pods: one identity each, issued from the CA Certificate's Secret.
    compute = find(objects, "StatefulSet", "compute")
    assert flag(container(compute, "tls")["args"], "--role") == "compute"
    assert volumes_of(compute)["tls-ca"]["secret"]["secretName"] == f"{BASE}-ca"


def test_cert_manager_mode_with_an_issuer_of_yours_and_the_csi_driver():
    values = helm_check.load_values(helm_check.CI_DIR / "tls-cert-manager-csi-values.yaml")
    objects = render_objects(values)
    kinds = sorted(
        (o["kind"], o["metadata"]["name"]) for o in objects if o["apiVersion"] == "cert-manager.io/v1"
    )
    assert kinds == [("Certificate", f"{BASE}-requester"), ("Certificate", f"{BASE}-verifier")]
    issuer = {"name": "internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    for _, name in kinds:
        assert (
            next(o for o in objects if o["metadata"]["name"] == name and o["kind"] == "Certificate")["spec"][
                "issuerRef"
            ]
            == issuer
        )
    compute = find(objects, "StatefulSet", "compute")
    assert "initContainers" not in pod_spec(compute)
    csi = volumes_of(compute)["tls"]["csi"]
    assert csi["driver"] == "csi.cert-manager.io" and csi["readOnly"] is True
    attributes = csi["volumeAttributes"]
    assert attributes["csi.cert-manager.io/uri-sans"] == "spiffe://bacalhau-grpc/compute/${POD_NAME}"
    assert f"${{POD_NAME}}.{BASE}-compute.{NS}.svc.cluster.local" in attributes[
        "csi.cert-manager.io/dns-names"
    ].split(",")
    assert attributes["csi.cert-manager.io/issuer-name"] == "internal-ca"
    assert attributes["csi.cert-manager.io/issuer-kind"] == "ClusterIssuer"
    assert attributes["csi.cert-manager.io/key-algorithm"] == "ECDSA"
    assert attributes["csi.cert-manager.io/fs-group"] == "10001"
    test_pod = next(o for o in objects if o["kind"] == "Pod")
    test_csi = volumes_of(test_pod)["tls"]["csi"]["volumeAttributes"]
    assert test_csi["csi.cert-manager.io/uri-sans"] == "spiffe://bacalhau-grpc/client/${POD_NAME}"
    assert "csi.cert-manager.io/dns-names" not in test_csi
    # An issuer of yours holds no CA key the chart could issue from: the compute pods need the csi-driver.
    values["tls"]["certManager"]["compute"] = "initContainer"
    with pytest.raises(helm.HelmRenderError, match=r"tls\.certManager\.compute must be csi"):
        helm_check.render(values)


def test_existing_secret_mode_mounts_your_secrets():
    values = helm_check.load_values(helm_check.CI_DIR / "tls-existing-secret-values.yaml")
    objects = render_objects(values)
    assert not [o for o in objects if o["kind"] == "Secret" or o["apiVersion"].startswith("cert-manager.io")]
    for component in ("requester", "verifier"):
        workload = find(objects, "Deployment", component)
        assert volumes_of(workload)["tls"]["secret"]["secretName"] == f"bacalhau-{component}-tls"
    compute = find(objects, "StatefulSet", "compute")
    assert volumes_of(compute)["tls"]["secret"]["secretName"] == "bacalhau-compute-tls"
    args = container(compute, "compute")["args"]
    assert flag(args, "--tls-cert") == f"{TLS_DIR}/$(POD_NAME).crt"
    assert flag(args, "--tls-key") == f"{TLS_DIR}/$(POD_NAME).key"
    assert flag(args, "--tls-ca") == f"{TLS_DIR}/ca.crt"
    test_pod = next(o for o in objects if o["kind"] == "Pod")
    assert volumes_of(test_pod)["tls"]["secret"]["secretName"] == "bacalhau-operator-tls"
    # Without a client certificate, `helm test` checks the requester's API alone, with its CA.
    del values["tls"]["existingSecret"]["client"]
    test_pod = next(o for o in render_objects(values) if o["kind"] == "Pod")
    assert volumes_of(test_pod)["tls"]["secret"] == {
        "secretName": "bacalhau-requester-tls",
        "defaultMode": 0o444,
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    assert test_pod["spec"]["containers"][0]["args"][3:] == [
        "--ca",
        f"{TLS_DIR}/ca.crt",
        f"{BASE}-requester.{NS}.svc.cluster.local:1234/{SERVICES['requester']}",
    ]
    with pytest.raises(helm.HelmRenderError, match=r"tls\.existingSecret\.requester is required"):
        helm_check.render({"tls": {"mode": "existingSecret"}})


TLS_BAD_VALUES = [
    pytest.param({"tls": {"mode": "mtls"}}, ["/tls/mode", "'generate', 'certManager'"], id="mode"),
    pytest.param(
        {"tls": {"certManager": {"compute": "sidecar"}}}, ["/tls/certManager/compute"], id="compute"
    ),
    pytest.param(
        {"tls": {"certManager": {"duration": "1 year"}}}, ["/tls/certManager/duration"], id="duration"
    ),
    pytest.param({"tls": {"requesterDnsNames": ["not a name"]}}, ["/tls/requesterDnsNames/0"], id="dns"),
    pytest.param({"tls": {"ca": {"existingSecret": "Bad_Name"}}}, ["/tls/ca/existingSecret"], id="secret"),
    pytest.param({"tls": {"certManager": {"issuerRef": {"nam": "x"}}}}, ["'nam' not allowed"], id="ref"),
    pytest.param({"compute": {"healthPort": 0}}, ["/compute/healthPort"], id="health-port"),
]


@pytest.mark.parametrize(("values", "expected"), TLS_BAD_VALUES)
def test_the_schema_refuses_bad_tls_values_by_name(values, expected):
    with pytest.raises(helm.HelmValuesError) as caught:
        helm_check.render(values)
    for part in expected:
        assert part in str(caught.value), str(caught.value)


def test_the_custom_resource_check_refuses_what_cert_manager_would():
    objects = render_objects(helm_check.load_values(helm_check.CI_DIR / "tls-cert-manager-values.yaml"))
    certificate = next(
        o for o in objects if o["kind"] == "Certificate" and o["metadata"]["name"].endswith("-requester")
    )
    assert (
        helm_check.is_custom_resource(certificate) and helm_check.validate_custom_resource(certificate) == []
    )
    broken = json.loads(json.dumps(certificate))
    broken["spec"]["dnsName"] = broken["spec"].pop("dnsNames")  # misspelt
    broken["spec"]["usages"].append("server-auth")
    broken["metadata"]["nmae"] = "x"  # metadata is Kubernetes' ObjectMeta
    problems = "\n".join(helm_check.validate_custom_resource(broken))
    assert "'dnsName' was unexpected" in problems
    assert "'server-auth' is not one of" in problems
    assert "'nmae' was unexpected" in problems
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}}
    assert helm_check.validate_custom_resource(unknown) == [
        "Widget/w: example.com/v1 Widget is not a kind this check knows"
    ]
    assert not helm_check.is_custom_resource(find(objects, "NetworkPolicy", "compute"))
