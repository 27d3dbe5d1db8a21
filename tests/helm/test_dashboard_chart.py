"""The chart's web dashboard (dashboard.enabled), through the real Helm (v4 Go SDK): off by default;
enabled, a Deployment running `bacalhau-grpc dashboard` against the requester's client API (with TLS as a
client of the cluster, or plaintext in insecure mode), its key, its probes on /healthz, a Service on its
port, its NetworkPolicy and NOTES; the schema refusing bad dashboard values by name. Then render-then-run:
the rendered network and the rendered dashboard run as local processes (as test_render_then_run.py runs
them), and the dashboard answers /healthz, its pages and its JSON at its Service's address."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import aiohttp
import helm_python as helm
import pytest

from bacalhau_grpc.cli.main import build_parser
from bacalhau_grpc.common import certs
from bacalhau_grpc.common.signing import KEY_FILE_NAME, ClientKey
from tests.helm import test_render_then_run as rtr
from tests.helm.support import container, env, find, flag, helm_check, pod_spec, render_objects

NS = helm_check.NAMESPACE
BASE = f"{helm_check.RELEASE}-bacalhau-grpc"
DASHBOARD = {"dashboard": {"enabled": True}}
REQUESTER_HOST = f"{BASE}-requester.{NS}.svc.cluster.local"
TLS_DIR = "/run/bacalhau-grpc/tls"
KEY_DIR = "/run/bacalhau-grpc/key"


def enabled(**values: Any) -> dict[str, Any]:
    """Values with the dashboard on, `dashboard_*` keyword arguments merged into its block."""
    out: dict[str, Any] = {"dashboard": {"enabled": True}}
    for key, value in values.items():
        if key.startswith("dashboard_"):
            out["dashboard"][key.removeprefix("dashboard_")] = value
        else:
            out[key] = value
    return out


def dashboard_of(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The dashboard's Deployment and its container."""
    deployment = find(objects, "Deployment", "dashboard")
    return deployment, container(deployment, "dashboard")


def volumes_of(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {volume["name"]: volume for volume in pod_spec(obj).get("volumes", [])}


def mounts_of(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {mount["name"]: mount for mount in item.get("volumeMounts", [])}


def parsed(args: list[str]) -> Any:
    """The container's args as the real CLI parses them (a flag it does not take fails here)."""
    return build_parser().parse_args(args)


# ------------------------------------------------------------------------------------------- rendering


def test_the_dashboard_is_off_by_default():
    objects = render_objects()
    assert not [
        o for o in objects if o["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboard"
    ]
    assert "dashboard" not in helm_check.notes(helm_check.render()).lower()
    values = helm_check.load_values(helm_check.CHART_DIR / "values.yaml")["dashboard"]
    assert values["enabled"] is False and values["allowCancel"] is False


def test_enabled_it_runs_the_dashboard_against_the_requesters_client_api():
    objects = render_objects(DASHBOARD)
    deployment, item = dashboard_of(objects)
    assert deployment["spec"]["replicas"] == 1
    assert item["command"] == ["bacalhau-grpc"]
    args = item["args"]
    assert args[0] == "dashboard"
    assert flag(args, "--host") == "0.0.0.0" and flag(args, "--port") == "8080"
    assert flag(args, "--timeout") == "10"
    # The requester's client API, at its Service (what the helm test pod dials too).
    assert f"{flag(args, '--api-host')}:{flag(args, '--api-port')}" == f"{REQUESTER_HOST}:1234"
    assert "--allow-cancel" not in args
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in item["ports"]
    chart = helm_check.load_values(helm_check.CHART_DIR / "Chart.yaml")
    assert item["image"] == f"bacalhau-grpc:{chart['appVersion']}"  # the chart's image, as every service
    # The flags are ones the real CLI takes, meaning what the chart means.
    cli = parsed(args)
    assert cli.handler.__name__ == "cmd_dashboard"
    assert (cli.host, cli.port, cli.timeout, cli.allow_cancel) == ("0.0.0.0", 8080, 10.0, False)
    assert (cli.api_host, cli.api_port) == (REQUESTER_HOST, "1234")
    # Ports follow the values.
    moved = render_objects(enabled(dashboard_port=9090, requester={"service": {"port": 4321}}))
    args = dashboard_of(moved)[1]["args"]
    assert flag(args, "--port") == "9090" and flag(args, "--api-port") == "4321"
    assert dashboard_of(moved)[1]["ports"][0]["containerPort"] == 9090


def test_allow_cancel_timeout_and_extra_args_become_flags():
    objects = render_objects(
        enabled(
            dashboard_allowCancel=True, dashboard_timeout=2.5, dashboard_extraArgs=["--retry-timeout", "3"]
        )
    )
    args = dashboard_of(objects)[1]["args"]
    assert args.count("--allow-cancel") == 1
    assert flag(args, "--timeout") == "2.5"
    assert args[-2:] == ["--retry-timeout", "3"]
    cli = parsed(args)
    assert cli.allow_cancel is True and cli.timeout == 2.5 and cli.retry_timeout == 3.0


def test_allowed_hosts_become_flags():
    args = dashboard_of(render_objects(enabled(dashboard_allowedHosts=["dash.example.org", "dashboard"])))[1][
        "args"
    ]
    assert parsed(args).allowed_host == ["dash.example.org", "dashboard"]
    assert "--allowed-host" not in dashboard_of(render_objects(DASHBOARD))[1]["args"]


def test_probes_ask_healthz_for_readiness_and_the_port_for_liveness():
    _, item = dashboard_of(render_objects(DASHBOARD))
    assert item["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # Alive while it listens: a requester that is down makes it not ready, never restarts it.
    assert item["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert item["startupProbe"]["tcpSocket"] == {"port": "http"}
    assert "http" in [port["name"] for port in item["ports"]]


def test_a_service_targets_the_dashboard_port():
    objects = render_objects(DASHBOARD)
    deployment, _ = dashboard_of(objects)
    service = find(objects, "Service", "dashboard")
    assert service["metadata"]["name"] == deployment["metadata"]["name"] == f"{BASE}-dashboard"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}
    ]
    selector = service["spec"]["selector"]
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert selector["app.kubernetes.io/component"] == "dashboard"
    # No other Service selects the dashboard's pods, and the dashboard's selects nothing else.
    for other in (o for o in objects if o["kind"] == "Service" and o is not service):
        assert other["spec"]["selector"]["app.kubernetes.io/component"] != "dashboard"
    exposed = render_objects(
        enabled(dashboard_service={"type": "LoadBalancer", "port": 80, "annotations": {"a.example/b": "c"}})
    )
    service = find(exposed, "Service", "dashboard")
    assert service["spec"]["type"] == "LoadBalancer" and service["spec"]["ports"][0]["port"] == 80
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["metadata"]["annotations"] == {"a.example/b": "c"}


def test_the_dashboard_pod_is_locked_down_like_the_others():
    objects = render_objects(DASHBOARD)
    deployment, item = dashboard_of(objects)
    spec = pod_spec(deployment)
    requester = pod_spec(find(objects, "Deployment", "requester"))
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["serviceAccountName"] == requester["serviceAccountName"]
    assert spec["securityContext"] == requester["securityContext"]
    assert (
        item["securityContext"]
        == container(find(objects, "Deployment", "requester"), "requester")["securityContext"]
    )
    assert item["securityContext"]["readOnlyRootFilesystem"] is True
    assert item["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in item["volumeMounts"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "bacalhau-grpc"
    # A new CA restarts it too (it issues its client certificate from it).
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert (
        annotations["bacalhau-grpc/tls-checksum"]
        == find(objects, "Deployment", "requester")["spec"]["template"]["metadata"]["annotations"][
            "bacalhau-grpc/tls-checksum"
        ]
    )


def test_its_key_is_an_empty_dir_of_its_own_or_your_secret():
    deployment, item = dashboard_of(render_objects(DASHBOARD))
    assert env(item)["BACALHAU_DIR"] == KEY_DIR
    assert mounts_of(item)["key"] == {"name": "key", "mountPath": KEY_DIR}
    assert "emptyDir" in volumes_of(deployment)["key"]
    deployment, item = dashboard_of(render_objects(enabled(dashboard_key={"existingSecret": "dash-key"})))
    assert mounts_of(item)["key"] == {"name": "key", "mountPath": KEY_DIR, "readOnly": True}
    assert volumes_of(deployment)["key"]["secret"] == {
        "secretName": "dash-key",
        "defaultMode": 0o440,
        "items": [{"key": KEY_FILE_NAME, "path": KEY_FILE_NAME}],
    }
    deployment, _ = dashboard_of(
        render_objects(enabled(dashboard_key={"existingSecret": "dash-key", "secretKey": "ed25519.pem"}))
    )
    assert volumes_of(deployment)["key"]["secret"]["items"] == [{"key": "ed25519.pem", "path": KEY_FILE_NAME}]


def tls_flags(args: list[str]) -> dict[str, str | None]:
    return {name: flag(args, f"--{name}") for name in ("ca-cert", "client-cert", "client-key")}


def test_with_tls_it_is_a_client_of_the_cluster_with_its_own_certificate():
    objects = render_objects(DASHBOARD)
    deployment, item = dashboard_of(objects)
    [init] = pod_spec(deployment)["initContainers"]
    assert init["name"] == "tls" and init["args"][:2] == ["certs", "issue"]
    assert flag(init["args"], "--role") == "client" and flag(init["args"], "--node-id") == "$(POD_NAME)"
    assert "--dns" not in init["args"]  # a client: dialled by no one
    cert, key = (f"{TLS_DIR}/{name}" for name in certs.cert_file_names("client", "$(POD_NAME)"))
    assert tls_flags(item["args"]) == {
        "ca-cert": "/run/bacalhau-grpc/trust/ca.pem",
        "client-cert": cert,
        "client-key": key,
    }
    assert "--no-tls" not in item["args"]
    # Its certificate and the CA's certificate, read-only; the CA's key only in the init container.
    mounts = mounts_of(item)
    assert mounts["tls"]["readOnly"] is True and mounts["tls-trust"]["readOnly"] is True
    assert "tls-ca" not in mounts and "tls-ca" in mounts_of(init)
    assert volumes_of(deployment)["tls-ca"]["secret"]["secretName"] == f"{BASE}-ca"
    # The same client as the `helm test` pod: the same certificate files, from the same source.
    [test_pod] = [o for o in objects if o["kind"] == "Pod"]
    test_args = test_pod["spec"]["containers"][0]["args"]
    assert [flag(test_args, f"--{name}") for name in ("ca", "cert", "key")] == list(
        tls_flags(item["args"]).values()
    )


def test_existing_secret_mode_mounts_the_operators_client_certificate():
    values = helm_check.load_values(helm_check.CI_DIR / "tls-existing-secret-values.yaml") | DASHBOARD
    deployment, item = dashboard_of(render_objects(values))
    assert "initContainers" not in pod_spec(deployment)
    assert volumes_of(deployment)["tls"]["secret"]["secretName"] == "bacalhau-operator-tls"
    assert tls_flags(item["args"]) == {
        "ca-cert": f"{TLS_DIR}/ca.crt",
        "client-cert": f"{TLS_DIR}/tls.crt",
        "client-key": f"{TLS_DIR}/tls.key",
    }
    # Without a client certificate: the requester's CA alone (its client API takes TLS clients).
    del values["tls"]["existingSecret"]["client"]
    deployment, item = dashboard_of(render_objects(values))
    assert volumes_of(deployment)["tls"]["secret"] == {
        "secretName": "bacalhau-requester-tls",
        "defaultMode": 0o444,
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    assert tls_flags(item["args"]) == {
        "ca-cert": f"{TLS_DIR}/ca.crt",
        "client-cert": None,
        "client-key": None,
    }


def test_cert_manager_modes_give_it_a_client_certificate():
    values = helm_check.load_values(helm_check.CI_DIR / "tls-cert-manager-csi-values.yaml") | DASHBOARD
    deployment, item = dashboard_of(render_objects(values))
    attributes = volumes_of(deployment)["tls"]["csi"]["volumeAttributes"]
    assert attributes["csi.cert-manager.io/uri-sans"] == "spiffe://bacalhau-grpc/client/${POD_NAME}"
    assert attributes["csi.cert-manager.io/key-usages"] == "digital signature,client auth"
    assert tls_flags(item["args"])["client-cert"] == f"{TLS_DIR}/tls.crt"
    values = helm_check.load_values(helm_check.CI_DIR / "tls-cert-manager-values.yaml") | DASHBOARD
    deployment, _ = dashboard_of(render_objects(values))
    assert flag(container(deployment, "tls")["args"], "--role") == "client"


def test_insecure_mode_is_plaintext():
    deployment, item = dashboard_of(render_objects(enabled(tls={"mode": "insecure"})))
    assert "--no-tls" in item["args"]
    assert tls_flags(item["args"]) == {"ca-cert": None, "client-cert": None, "client-key": None}
    assert "initContainers" not in pod_spec(deployment)
    assert not {"tls", "tls-ca", "tls-trust"} & set(volumes_of(deployment))
    assert parsed(item["args"]).tls is False


def policies_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["labels"]["app.kubernetes.io/component"]: o["spec"]
        for o in objects
        if o["kind"] == "NetworkPolicy"
    }


def component_of(peer: dict[str, Any]) -> str | None:
    return peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")


def test_network_policies_let_it_reach_the_requester_and_be_reached():
    policies = policies_of(render_objects(DASHBOARD))
    assert sorted(policies) == ["compute", "dashboard", "requester", "verifier"]
    dashboard = policies["dashboard"]
    assert dashboard["policyTypes"] == ["Ingress", "Egress"]
    assert dashboard["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "dashboard"
    assert dashboard["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]  # from anyone
    [to_requester] = [rule for rule in dashboard["egress"] if "to" in rule]
    assert [component_of(peer) for peer in to_requester["to"]] == ["requester"]
    assert to_requester["ports"] == [{"port": 1234, "protocol": "TCP"}]  # the client API's container port
    assert {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]} in dashboard[
        "egress"
    ]
    # The requester's API takes anyone by default; with named clients, the dashboard too.
    api = policies["requester"]["ingress"][0]
    assert "from" not in api
    ops = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}}}
    extra = {"to": [{"ipBlock": {"cidr": "10.9.0.0/16"}}]}
    policies = policies_of(
        render_objects(
            enabled(
                dashboard_port=9000,
                networkPolicy={
                    "clients": [ops],
                    "dashboardFrom": [ops],
                    "extraEgress": {"dashboard": [extra]},
                },
            )
        )
    )
    api = policies["requester"]["ingress"][0]
    assert [component_of(peer) for peer in api["from"]] == [None, "test", "dashboard"]
    assert policies["dashboard"]["ingress"] == [{"from": [ops], "ports": [{"port": 9000, "protocol": "TCP"}]}]
    assert policies["dashboard"]["egress"][-1] == extra
    # Without the dashboard, the requester's clients are as they were.
    api = policies_of(render_objects({"networkPolicy": {"clients": [ops]}}))["requester"]["ingress"][0]
    assert [component_of(peer) for peer in api["from"]] == [None, "test"]
    assert not policies_of(render_objects(enabled(networkPolicy={"enabled": False})))


def test_notes_say_how_to_reach_the_dashboard():
    text = helm_check.notes(helm_check.render(enabled(dashboard_service={"port": 80})))
    assert f"kubectl --namespace {NS} port-forward service/{BASE}-dashboard 8080:80" in text
    assert "http://localhost:8080/" in text
    assert "7. Open the web dashboard" in text
    text = helm_check.notes(helm_check.render(enabled(tls={"mode": "insecure"})))
    assert "6. Open the web dashboard" in text


def test_the_ci_scenario_renders_the_dashboard():
    values = helm_check.load_values(helm_check.CI_DIR / "dashboard-values.yaml")
    assert values["dashboard"]["enabled"] is True
    count, problems = helm_check.check(helm_check.Scenario("ci/dashboard-values.yaml", values))
    assert problems == [] and count > 0
    deployment, item = dashboard_of(render_objects(values))
    assert "--allow-cancel" in item["args"]
    assert (
        volumes_of(deployment)["key"]["secret"]["secretName"] == values["dashboard"]["key"]["existingSecret"]
    )


BAD_VALUES = [
    pytest.param({"port": 0}, ["/dashboard/port", "0"], id="port-0"),
    pytest.param({"port": 70000}, ["/dashboard/port", "got 70,000"], id="port-70000"),
    pytest.param({"port": "8080"}, ["/dashboard/port", "string"], id="port-type"),
    pytest.param({"service": {"port": 0}}, ["/dashboard/service/port"], id="service-port"),
    pytest.param(
        {"service": {"type": "Ingress"}}, ["/dashboard/service/type", "'Ingress'"], id="service-type"
    ),
    pytest.param({"bogus": 1}, ["/dashboard", "'bogus' not allowed"], id="unknown-key"),
    pytest.param({"key": {"secret": "x"}}, ["/dashboard/key", "'secret' not allowed"], id="unknown-key-key"),
    pytest.param({"key": {"existingSecret": "Bad_Name"}}, ["/dashboard/key/existingSecret"], id="key-secret"),
    pytest.param({"allowCancel": "yes"}, ["/dashboard/allowCancel", "boolean"], id="allow-cancel"),
    pytest.param({"allowedHosts": ["a b"]}, ["/dashboard/allowedHosts/0", "pattern"], id="allowed-host"),
    pytest.param({"timeout": 0}, ["/dashboard/timeout"], id="timeout"),
    pytest.param({"replicas": 0}, ["/dashboard/replicas"], id="replicas"),
    pytest.param({"extraArgs": [1]}, ["/dashboard/extraArgs/0"], id="args-type"),
]


@pytest.mark.parametrize(("dashboard", "expected"), BAD_VALUES)
def test_the_schema_refuses_bad_dashboard_values_by_name(dashboard, expected):
    values = {"dashboard": {"enabled": True, **dashboard}}
    with pytest.raises(helm.HelmValuesError) as caught:
        helm_check.render(values)
    message = str(caught.value)
    for part in expected:
        assert part in message, message
    assert any(expected[0] in problem for problem in helm_check.lint(values))


def test_the_schema_refuses_unknown_network_policy_keys_for_it():
    with pytest.raises(helm.HelmValuesError, match="'dashbord' not allowed"):
        helm_check.render({"networkPolicy": {"extraEgress": {"dashbord": []}}})


# --------------------------------------------------------------------------------- render, then run


def dashboard_values(mode: str) -> dict[str, Any]:
    """The render-then-run network of `mode`, with the dashboard: in generate mode cancel on and a key of
    yours; otherwise a key of its own. No retries: /healthz says 503 as soon as the requester is gone."""
    block: dict[str, Any] = {"enabled": True, "extraArgs": ["--retry-timeout", "0"], "timeout": 5}
    if mode == "generate":
        block |= {"allowCancel": True, "key": {"existingSecret": "dashboard-key"}}
    return {**rtr.MODES[mode], "dashboard": block}


async def read_ready_line(process: asyncio.subprocess.Process, deadline: float) -> str:
    """The dashboard's "Dashboard: <url> ..." line, printed once it listens (what it printed before, else)."""
    assert process.stdout is not None
    seen = []
    async with asyncio.timeout(deadline):
        while line := (await process.stdout.readline()).decode(errors="replace"):
            if line.startswith("Dashboard: "):
                return line
            seen.append(line)
    pytest.fail(f"the dashboard exited ({await process.wait()}) before listening:\n{''.join(seen)}")


@pytest.mark.parametrize("mode", sorted(rtr.MODES))
async def test_the_rendered_dashboard_serves_the_rendered_network(tmp_path, mode):
    objects = helm_check.manifests(helm_check.render(dashboard_values(mode), namespace=rtr.NAMESPACE))
    domain = helm_check.load_values(helm_check.CHART_DIR / "values.yaml")["clusterDomain"]
    pods = rtr.make_pods(objects)
    [dashboard] = [pod for pod in pods if pod.component == "dashboard"]
    network = [pod for pod in pods if pod is not dashboard]
    addresses, behind = rtr.address_map(objects, pods, domain)
    secrets = rtr.secrets_of(objects)
    if mode == "existingSecret":
        secrets |= rtr.operator_secrets(tmp_path, sorted(p.name for p in network if p.kind == "StatefulSet"))[
            1
        ]
    yours = ClientKey.load_or_create(tmp_path / "your-key")
    secrets["dashboard-key"] = {KEY_FILE_NAME: yours.path.read_bytes()}

    with rtr.running(network, addresses, behind, secrets, tmp_path / "pods") as net:
        deadline = asyncio.get_running_loop().time() + rtr.START_DEADLINE
        await asyncio.gather(
            *(rtr.wait_serving(p, rtr.SERVICES[p.pod.component], deadline) for p in net.processes)
        )
        [requester] = net.component("requester")

        # The dashboard's pod: its init container (its client certificate), then its container, made local
        # as the network's are; it dials the requester's client API at the Service's name.
        root = tmp_path / "dashboard"
        volumes = rtr.make_volumes(dashboard, secrets, root)
        rtr.run_init_containers(dashboard, addresses, volumes, root, net)
        [item] = dashboard.spec["containers"]
        argv, environ, _ = rtr.prepare(dashboard, item, addresses, volumes, root)
        host_at, port_at = argv.index("--api-host") + 1, argv.index("--api-port") + 1
        dialled = f"{argv[host_at]}:{argv[port_at]}"
        assert behind[dialled] is requester.pod and addresses[dialled] == requester.address
        if mode != "insecure":  # the name it verifies is one the requester's certificate has
            assert argv[host_at] in net.cert_names[requester.pod.name]
        argv[host_at], argv[port_at] = addresses[dialled].rsplit(":", 1)
        process = await asyncio.create_subprocess_exec(
            *argv, env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            await read_ready_line(process, rtr.START_DEADLINE)
            # Through the dashboard Service's address, at the readiness probe's path.
            service = f"{BASE}-dashboard.{rtr.NAMESPACE}.svc.{domain}:8080"
            assert behind[service] is dashboard
            url = f"http://{addresses[service]}"
            probe = item["readinessProbe"]["httpGet"]
            assert dashboard.local(probe["port"]) == addresses[service]
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                async with http.get(url + probe["path"]) as response:
                    assert response.status == 200, await response.text()
                    assert (await response.json())["ok"] is True
                for page in ("/network", "/jobs"):
                    async with http.get(url + page) as response:
                        assert response.status == 200, page
                async with http.get(url + "/api/config") as response:
                    config = await response.json()
                assert config["allow_cancel"] is (mode == "generate")
                if mode == "generate":  # your key, from the Secret
                    assert config["client_id"] == yours.client_id
                else:  # its own, made in its key volume
                    made = ClientKey.load_or_create(volumes["key"])
                    assert (volumes["key"] / KEY_FILE_NAME).exists()
                    assert config["client_id"] == made.client_id
                async with http.get(url + "/api/jobs") as response:
                    assert response.status == 200

                # The requester gone: /healthz says so (the pod is not ready), the dashboard stays up.
                requester.popen.send_signal(signal.SIGTERM)
                requester.popen.wait(timeout=rtr.STOP_GRACE)
                async with http.get(url + probe["path"]) as response:
                    assert response.status == 503
                    assert (await response.json())["ok"] is False
            assert process.returncode is None
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(rtr.STOP_GRACE):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
