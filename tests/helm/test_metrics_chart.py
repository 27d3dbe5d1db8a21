"""The chart's metrics and log format, through the real Helm (v4 Go SDK) and kubernetes-validate: JSON logs
by default; with metrics.enabled a metrics port on every node (flag, container port, Service port named
metrics, Prometheus' scrape annotations, a NetworkPolicy rule); the ServiceMonitor only when asked for; and
the rendered flags are ones `serve` takes."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from bacalhau_grpc.cli.main import build_parser
from bacalhau_grpc.cli.serve import build_settings
from tests.helm.support import WORKLOAD_KINDS, container, find, flag, helm_check, render_objects

COMPONENTS = ("requester", "compute", "verifier")
PORT = 9464
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
METRICS = {"metrics": {"enabled": True, "port": PORT}, "networkPolicy": {"metricsFrom": [MONITORING]}}
ANNOTATIONS = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": str(PORT),
    "prometheus.io/path": "/metrics",
}


def workload(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    [found] = [
        o
        for o in objects
        if o["kind"] in WORKLOAD_KINDS and o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


def services(objects: list[dict[str, Any]], component: str) -> list[dict[str, Any]]:
    return [
        o
        for o in objects
        if o["kind"] == "Service" and o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]


def metrics_ports(service: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in service["spec"]["ports"] if p["name"] == "metrics"]


def node_args(objects: list[dict[str, Any]], component: str) -> list[str]:
    return container(workload(objects, component), component)["args"]


def test_json_logs_and_no_metrics_by_default():
    objects = render_objects()
    for component in COMPONENTS:
        args = node_args(objects, component)
        assert flag(args, "--log-format") == "json", args
        assert flag(args, "--metrics-port") is None, args
        pod = workload(objects, component)
        annotations = pod["spec"]["template"]["metadata"].get("annotations", {})
        assert not [key for key in annotations if key.startswith("prometheus.io/")]
        ports = container(pod, component)["ports"]
        assert "metrics" not in [p["name"] for p in ports]
        for service in services(objects, component):
            assert not metrics_ports(service)
    assert not [o for o in objects if o["kind"] == "ServiceMonitor"]
    # Text logs when asked for.
    text = render_objects({"logFormat": "text"})
    assert {flag(node_args(text, c), "--log-format") for c in COMPONENTS} == {"text"}


def test_metrics_give_every_node_a_port_annotations_services_and_a_policy_rule():
    # Lint clean and every object valid for Kubernetes (strict), as `make helm-lint` checks its scenarios.
    count, problems = helm_check.check(helm_check.Scenario("metrics", METRICS))
    assert problems == [] and count > 0
    objects = render_objects(METRICS)
    for component in COMPONENTS:
        pod = workload(objects, component)
        args = node_args(objects, component)
        assert flag(args, "--metrics-port") == str(PORT), args
        annotations = pod["spec"]["template"]["metadata"]["annotations"]
        assert {k: annotations[k] for k in ANNOTATIONS} == ANNOTATIONS
        ports = container(pod, component)["ports"]
        assert {"name": "metrics", "containerPort": PORT, "protocol": "TCP"} in ports
        # One of the component's Services has the metrics port, aimed at the container's.
        with_metrics = [s for s in services(objects, component) if metrics_ports(s)]
        assert len(with_metrics) == 1, component
        [port] = metrics_ports(with_metrics[0])
        assert port == {
            "name": "metrics",
            "port": PORT,
            "targetPort": "metrics",
            "protocol": "TCP",
            "appProtocol": "http",
        }
        # The NetworkPolicy lets the monitoring namespace reach it.
        policy = find(objects, "NetworkPolicy", component)["spec"]
        assert {"from": [MONITORING], "ports": [{"port": PORT, "protocol": "TCP"}]} in policy["ingress"]
    # The requester's metrics are on a ClusterIP Service of its own, not on its (maybe public) API Service.
    requester = {s["metadata"]["name"]: s for s in services(objects, "requester")}
    metrics_service = requester[f"{helm_check.RELEASE}-bacalhau-grpc-requester-metrics"]
    assert metrics_service["spec"]["type"] == "ClusterIP"
    assert not metrics_ports(requester[f"{helm_check.RELEASE}-bacalhau-grpc-requester"])
    # The pod annotations of the values come along with the scrape annotations.
    annotated = render_objects({**METRICS, "verifier": {"podAnnotations": {"example.com/team": "data"}}})
    annotations = workload(annotated, "verifier")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["example.com/team"] == "data" and annotations["prometheus.io/scrape"] == "true"
    # Without metricsFrom the metrics ports take connections from anyone.
    open_policy = render_objects({"metrics": {"enabled": True}})
    assert {"ports": [{"port": PORT, "protocol": "TCP"}]} in find(open_policy, "NetworkPolicy", "verifier")[
        "spec"
    ]["ingress"]


def test_the_service_monitor_is_rendered_only_when_enabled_and_scrapes_every_node():
    assert not [o for o in render_objects(METRICS) if o["kind"] == "ServiceMonitor"]
    # Asked for without metrics: nothing to scrape, nothing rendered.
    only_monitor = render_objects({"metrics": {"serviceMonitor": {"enabled": True}}})
    assert not [o for o in only_monitor if o["kind"] == "ServiceMonitor"]

    values = {
        **METRICS,
        "metrics": {
            "enabled": True,
            "port": PORT,
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}, "scrapeTimeout": "10s"},
        },
    }
    objects = render_objects(values)
    [monitor] = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/instance"] == helm_check.RELEASE
    # Its metadata is valid Kubernetes ObjectMeta.
    carrier = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": monitor["metadata"]}
    assert helm_check.validate(carrier) == []
    spec = monitor["spec"]
    assert spec["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert spec["namespaceSelector"] == {"matchNames": [helm_check.NAMESPACE]}
    # What it selects: each component's Service with the metrics port, and no other release's.
    selector = spec["selector"]
    [expression] = selector["matchExpressions"]

    def selected(service: dict[str, Any]) -> bool:
        labels = service["metadata"]["labels"]
        return all(labels.get(k) == v for k, v in selector["matchLabels"].items()) and (
            labels.get(expression["key"]) in expression["values"]
        )

    scraped = {
        s["metadata"]["labels"]["app.kubernetes.io/component"]
        for s in objects
        if s["kind"] == "Service" and selected(s) and metrics_ports(s)
    }
    assert scraped == set(COMPONENTS)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param({"logFormat": "xml"}, ["/logFormat", "'json', 'text'"], id="log-format"),
        pytest.param({"metrics": {"port": 0}}, ["/metrics/port"], id="metrics-port"),
        pytest.param({"metrics": {"scrape": True}}, ["/metrics", "'scrape' not allowed"], id="metrics-key"),
        pytest.param(
            {"metrics": {"serviceMonitor": {"interval": "often"}}},
            ["/metrics/serviceMonitor/interval"],
            id="interval",
        ),
    ],
)
def test_the_schema_refuses_bad_metrics_and_log_values(values, expected):
    with pytest.raises(helm.HelmValuesError) as caught:
        helm_check.render(values)
    for part in expected:
        assert part in str(caught.value), str(caught.value)


@pytest.mark.parametrize("component", COMPONENTS)
def test_serve_takes_the_rendered_metrics_and_log_flags(component):
    """The node containers' args (after `bacalhau-grpc`) parse with the real CLI into settings with the
    chart's metrics port and log format."""
    objects = render_objects({**METRICS, "tls": {"mode": "insecure"}})
    args = [
        a.replace("$(POD_NAME)", f"{component}-0").replace("$(POD_IP)", "10.0.0.1")
        for a in node_args(objects, component)
    ]
    parsed = build_parser().parse_args(args)
    settings = build_settings(parsed, environ={})
    assert settings.metrics_port == PORT
    assert settings.log_format == "json"
