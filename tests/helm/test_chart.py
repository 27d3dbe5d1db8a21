"""The chart through the real Helm (v4 Go SDK, helm-python-sdk) and kubernetes-validate: lint, render and
strict validation of every scenario; the schema refusing bad values by name; what the rendered objects
promise (security contexts, probes, addresses, Docker modes, tracing, NetworkPolicies, NOTES, helm test)."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import helm_python as helm
import pytest
import yaml

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
        "ci/single-compute-values.yaml",
        "ci/three-compute-dind-values.yaml",
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
def test_each_node_serves_on_its_port_with_grpc_health_probes(default_objects, kind, component, port):
    item = container(find(default_objects, kind, component), component)
    assert item["command"] == ["bacalhau-grpc"]
    assert item["args"][:3] == ["serve", "--node-type", component]
    assert flag(item["args"], "--host") == "0.0.0.0"
    assert flag(item["args"], "--port") == str(port)
    assert item["ports"] == [{"name": "grpc", "containerPort": port, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert item[probe]["grpc"] == {"port": port}
    service = find(default_objects, "Service", component)
    assert service["spec"]["ports"][0]["targetPort"] == "grpc"


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
    assert flag(args, "--requester-address") == f"{BASE}-requester.{NS}.svc.cluster.local:1234"
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
    assert "initContainers" not in spec
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
    [init] = spec["initContainers"]
    assert init["args"][-3:] == [data_dir, "10001", "10001"]
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert init["securityContext"]["allowPrivilegeEscalation"] is False


def test_docker_mode_dind_privileges_only_the_sidecar():
    objects = render_objects({"compute": {"docker": {"mode": "dind"}}})
    statefulset = find(objects, "StatefulSet", "compute")
    spec = pod_spec(statefulset)
    [dind] = spec["initContainers"]
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


def test_network_policies_open_only_the_requester_api():
    objects = render_objects(helm_check.load_values(helm_check.CI_DIR / "tracing-values.yaml"))
    policies = {
        o["metadata"]["labels"]["app.kubernetes.io/component"]: o["spec"]
        for o in objects
        if o["kind"] == "NetworkPolicy"
    }
    assert sorted(policies) == ["compute", "requester", "verifier"]
    [api] = policies["requester"]["ingress"]
    assert api == {"ports": [{"port": 1234, "protocol": "TCP"}]}  # no `from`: any client
    for component, port in (("compute", 1235), ("verifier", 1236)):
        [rule] = policies[component]["ingress"]
        assert rule["ports"] == [{"port": port, "protocol": "TCP"}]
        allowed = [peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in rule["from"]]
        assert allowed == ["requester", "test"]
    otlp = {"port": 4317, "protocol": "TCP"}
    observability = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
    for spec in policies.values():
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        assert {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]} in spec["egress"]
        assert {"ports": [otlp], "to": [observability]} in spec["egress"]
    egress_ports = [rule["ports"][0]["port"] for rule in policies["requester"]["egress"]]
    assert egress_ports[:2] == [1235, 1236]
    assert policies["verifier"]["egress"][0]["ports"][0]["port"] == 53
    clients = render_objects(
        {"networkPolicy": {"enabled": True, "clients": [{"ipBlock": {"cidr": "10.1.0.0/16"}}]}}
    )
    [rule] = find(clients, "NetworkPolicy", "requester")["spec"]["ingress"]
    assert rule["from"][0] == {"ipBlock": {"cidr": "10.1.0.0/16"}}
    assert [
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        for p in rule["from"]
    ][1:] == ["compute", "test"]


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


def test_notes_say_how_to_reach_the_api():
    text = helm_check.notes(helm_check.render())
    assert f"kubectl --namespace {NS} port-forward service/{BASE}-requester 1234:1234" in text
    assert "grpcurl -plaintext localhost:1234 list" in text
    assert (
        "bacalhau-grpc sign-job job.yaml | grpcurl -plaintext -d @ localhost:1234 "
        "bacalhau.requester.v1.RequesterService/SubmitJob"
    ) in text
    assert f"helm test {helm_check.RELEASE} --namespace {NS}" in text


def test_the_helm_test_pod_checks_every_service_and_compute_pod():
    objects = render_objects({"compute": {"replicas": 2}})
    [pod] = [o for o in objects if o["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    item = pod["spec"]["containers"][0]
    assert item["command"] == ["/opt/bacalhau-grpc/bin/python"]
    assert item["args"][2:] == [
        "60",
        f"{BASE}-requester.{NS}.svc.cluster.local:1234/{SERVICES['requester']}",
        f"{BASE}-verifier.{NS}.svc.cluster.local:1236/{SERVICES['verifier']}",
        f"{BASE}-compute-0.{BASE}-compute.{NS}.svc.cluster.local:1235/{SERVICES['compute']}",
        f"{BASE}-compute-1.{BASE}-compute.{NS}.svc.cluster.local:1235/{SERVICES['compute']}",
    ]
