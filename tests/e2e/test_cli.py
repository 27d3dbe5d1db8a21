"""The real `bacalhau-grpc` CLI in subprocesses: a devstack of separate node processes, the client
commands against it, `serve` for each node type, and clean shutdowns (no process left behind)."""

import argparse
import io
import json
import os
import re
import signal
import subprocess

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bacalhau_grpc.cli import flags, submit
from bacalhau_grpc.common import channels
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.devstack import Devstack, DevstackError
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from tests.e2e import cli_support
from tests.e2e.cli_support import (
    COMMAND,
    STARTUP,
    STDOUT_TEXT,
    UUID,
    ClusterCerts,
    Lines,
    clean_env,
    event_names,
    gone,
    job_id_of,
    run_cli,
    steps,
    wait_until,
)

NOOP_JOB = """\
# A flat (seed-shaped) job file: the noop engine, one node; create fills in Verifier/Publisher.
Spec:
  Engine: Noop
  Timeout: 60
Deal:
  Concurrency: 1
"""

DETERMINISTIC_JOB = """\
APIVersion: V1beta1
Spec:
  Engine: Noop
  Verifier: Deterministic
  Publisher: Noop
  Annotations: [deterministic]
Deal:
  Concurrency: 3
"""


def test_devstack_prints_how_to_reach_it(devstack):
    text = devstack.output.text()
    assert len(devstack.pids) == 5  # verifier, requester, 3 compute nodes
    assert re.search(r"^verifier\s+verifier-[0-9a-f]{12}\s+127\.0\.0\.1:\d+", text, re.M)
    assert re.search(r"^requester\s+requester-[0-9a-f]{12}\s+127\.0\.0\.1:\d+", text, re.M)
    assert len(re.findall(r"^compute\s+node-[0-9a-f]{12}\s+127\.0\.0\.1:\d+", text, re.M)) == 3
    assert len(re.findall(r"\(bad actor\)", text)) == 1
    assert f"Requester API: {devstack.host}:{devstack.port} (TLS)" in text
    # TLS by default: the CA it made, the export line naming it, grpcurl commands with certificates
    tls = (devstack.data_dir / "tls").resolve()
    assert devstack.ca_cert == str(tls / "ca.pem")
    assert f"CA certificate: {tls / 'ca.pem'}" in text
    assert devstack.env["BACALHAU_TLS_CA_CERT"] == devstack.ca_cert
    assert f"grpcurl -cacert {devstack.ca_cert} {devstack.host}:{devstack.port} list" in text
    assert re.search(r"^Requester node protocol: 127\.0\.0\.1:\d+ \(mutual TLS", text, re.M)
    assert devstack.node_address != devstack.address
    assert (devstack.operator_cert, devstack.operator_key) == (
        str(tls / "client-operator.pem"),
        str(tls / "client-operator-key.pem"),
    )
    certificates = {p.name for p in tls.iterdir()}
    for kind, node_id, *_ in cli_support.NODE_ROW.findall(text):  # one certificate per node, for its ID
        assert {f"{kind}-{node_id}.pem", f"{kind}-{node_id}-key.pem"} <= certificates
    assert (tls / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in (devstack.data_dir / "logs").iterdir()) == [
        "compute-0.log",
        "compute-1.log",
        "compute-2.log",
        "requester.log",
        "verifier.log",
    ]
    # --no-dashboard (the tests' devstacks): no dashboard process, URL or log
    assert "--no-dashboard" in devstack.process.args
    assert "Dashboard" not in text and devstack.dashboard_url is None


def test_create_and_wait_reaches_the_published_result(devstack, job_file):
    done = run_cli(
        "create", job_file(NOOP_JOB), "--node-details", "--wait-timeout-secs", "60", env=devstack.env
    )
    assert done.returncode == 0, done.stderr + done.stdout
    job_id = job_id_of(done.stdout)
    # Bacalhau's happy path, one line per step
    happy = [
        "Creating job for submission",
        "Finding node(s) for the job",
        "Node accepted the job",
        "Job finished, verifying results",
        "Results accepted, publishing",
    ]
    remaining = iter(steps(done.stdout))
    assert all(step in remaining for step in happy), done.stdout
    assert not [step for step in steps(done.stdout) if step.endswith("!")], done.stdout
    events = event_names(devstack.env, job_id)
    assert events[-1] != "Created" and "ResultsPublished" in events
    # the two other nodes' bids were rejected (concurrency 1 on 3 nodes; a late one may not have been)
    assert events.count("Bid") - events.count("BidRejected") == 1, events
    assert "Status: Completed" in done.stdout
    assert f"      {STDOUT_TEXT}" in done.stdout  # the node's stdout
    assert "Results CID: " in done.stdout
    assert f"bacalhau-grpc get {job_id}" in done.stdout
    assert "WARNING" not in done.stderr


def test_create_without_wait_prints_only_the_id_and_list_describe_events_show_it(devstack, job_file):
    created = run_cli("create", job_file(NOOP_JOB), "--wait=false", env=devstack.env)
    assert created.returncode == 0, created.stderr
    job_id = created.stdout.strip()
    assert UUID.match(job_id)
    # follow the events to the end: the last line is the published result
    followed = run_cli("events", job_id[:8], "--follow", env=devstack.env)
    assert followed.returncode == 0, followed.stderr
    names = [line.split()[1] for line in followed.stdout.splitlines()]
    # (a bid that reached the requester after the job ended may follow the published result)
    assert names[0] == "Created" and "ResultsPublished" in names
    assert "shard 0" in followed.stdout

    listed = run_cli("list", "--id-filter", job_id[:8], env=devstack.env)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["CREATED", "ID", "JOB", "STATE", "VERIFIED", "PUBLISHED"]
    assert row.split()[1:4] == [job_id[:8], "Noop", "Completed"]

    as_json = run_cli("list", "--output", "json", "-n", "50", env=devstack.env)
    assert as_json.returncode == 0, as_json.stderr
    assert job_id in [job["ID"] for job in json.loads(as_json.stdout)]

    described = run_cli("describe", job_id, env=devstack.env)
    assert described.returncode == 0, described.stderr
    document = yaml.safe_load(described.stdout)
    assert document["Job"]["ID"] == job_id
    assert document["Job"]["Spec"]["Engine"] == "Noop"
    assert document["Job"]["Spec"]["Verifier"] == "Noop"  # create's default
    assert (
        document["Job"]["ClientID"] == ClientKey.load_or_create(cli_support.KEY_DIR).client_id
    )  # the CLI's key
    assert "ResultsPublished" in [e["EventName"] for e in document["JobEvents"]]
    described_json = run_cli("describe", job_id[:8], "--json", env=devstack.env)
    assert json.loads(described_json.stdout)["Job"]["ID"] == job_id

    events = run_cli("events", job_id, env=devstack.env)
    assert events.returncode == 0, events.stderr
    assert events.stdout.startswith(followed.stdout)  # the same lines (late bids may have been added)


def test_the_bad_actor_is_caught_by_the_deterministic_verifier(devstack, job_file):
    done = run_cli(
        "create", job_file(DETERMINISTIC_JOB), "--node-details", "--wait-timeout-secs", "60", env=devstack.env
    )
    assert done.returncode == 0, done.stderr + done.stdout
    names = event_names(devstack.env, job_id_of(done.stdout))
    assert names.count("ResultsAccepted") == 2
    assert names.count("ResultsRejected") == 1
    assert names.count("ResultsPublished") == 2
    assert "Results failed verification. !" in steps(done.stdout)
    rejected = next(line for line in done.stdout.splitlines() if "Results failed verification." in line)
    assert "not in the largest group" in rejected
    assert done.stdout.count("Status: Completed") == 2
    assert re.search(r"Status: Error \(.*not in the largest group", done.stdout), done.stdout
    listed = run_cli("list", "--include-tag", "deterministic", "--wide", env=devstack.env)
    assert re.search(r"\s2/3(\s|$)", listed.stdout), listed.stdout


def test_a_job_nobody_agrees_on_ends_in_error_and_exit_code_1(devstack):
    # confidence 3 with one bad actor among 3: the largest group (2) is below confidence: void
    text = DETERMINISTIC_JOB.replace("Concurrency: 3", "Concurrency: 3\n  Confidence: 3")
    done = run_cli("create", "-", "--node-details", "--wait-timeout-secs", "60", env=devstack.env, input=text)
    assert done.returncode == 1, done.stdout + done.stderr
    job_id = job_id_of(done.stdout)
    assert event_names(devstack.env, job_id).count("ResultsRejected") == 3
    assert "Results failed verification. !" in steps(done.stdout)
    assert "Status: Completed" not in done.stdout
    assert "To download the results" not in done.stdout  # nothing to download
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"Error: job {job_id} failed: ")
    assert "largest group 2 below confidence 3" in line


def test_server_owned_fields_are_ignored_with_a_warning(devstack, job_file):
    text = "ID: 00000000-0000-0000-0000-000000000000\nClientID: someone-else\n" + NOOP_JOB
    created = run_cli("create", job_file(text), "--wait=false", env=devstack.env)
    assert created.returncode == 0, created.stderr
    assert created.stderr.startswith(
        "WARNING: The following fields have data in them and will be ignored on creation: ClientID, ID"
    )
    assert created.stdout.strip() != "00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("Spec:\n  Enginee: Noop\n", "Spec.Enginee"),  # refused by the CLI while reading the file
        # refused by the CLI's checks before submitting (the requester's own rules)
        ("Spec:\n  Engine: Noop\nDeal:\n  Concurrency: -1\n", "Deal.Concurrency"),
        ("Deal:\n  Concurrency: 1\n", "Spec.Engine"),  # no engine
    ],
)
def test_a_bad_job_file_is_one_error_line_naming_the_field(devstack, job_file, text, named):
    failed = run_cli("create", job_file(text), env=devstack.env)
    assert failed.returncode == 1
    assert failed.stdout == ""
    (line,) = failed.stderr.strip().splitlines()
    assert line.startswith(("Error: ", "Error verifying job: "))
    assert named in line


def test_unknown_job_and_unreachable_requester_are_clear_errors(devstack, tmp_path):
    missing = run_cli("describe", "ffffffff-not-a-job", env=devstack.env)
    assert missing.returncode == 1
    assert missing.stderr == "Error: job ffffffff-not-a-job not found\n"
    nowhere = run_cli("list", "--api-port", "1", "--timeout", "2", "--retry-timeout", "0", env=devstack.env)
    assert nowhere.returncode == 1
    assert nowhere.stderr.startswith("Error: cannot reach the requester at 127.0.0.1:1")
    no_file = run_cli("create", str(tmp_path / "nope.yaml"), env=devstack.env)
    assert no_file.returncode == 1 and "cannot read the job file" in no_file.stderr


def test_sigint_stops_the_devstack_and_every_node(devstack):
    # Runs last in this module (pytest keeps file order): the module's devstack is stopped here.
    assert all(not gone(pid) for pid in devstack.pids)
    rest = devstack.stop(signal.SIGINT)
    assert devstack.process.returncode == 0, rest
    assert "Received SIGINT: stopping the devstack" in rest
    assert "Devstack stopped." in rest
    wait_until(lambda: all(gone(pid) for pid in devstack.pids), 30, "every node process to exit")
    # each node stopped gracefully (its log says so), the requester and verifier after the compute nodes
    logs = devstack.data_dir / "logs"
    for name in ("verifier", "requester", "compute-0"):
        assert "stopped" in (logs / f"{name}.log").read_text()


# ----------------------------------------------------------------------------------- devstack failures


def test_a_node_that_dies_is_named_and_the_rest_are_stopped(tmp_path):
    process = subprocess.Popen(
        [
            *COMMAND,
            "devstack",
            "--nodes",
            "2",
            "--data-dir",
            str(tmp_path),
            "--startup-timeout",
            str(STARTUP),
        ],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Lines(process.stdout)
    try:
        output.wait_for("Devstack is ready!", STARTUP + 10)
        pids = [int(pid) for pid in re.findall(r" pid (\d+)", output.text())]
        victim = re.search(r"^compute\s+(node-\S+)\s+\S+\s+pid (\d+)", output.text(), re.M)
        os.kill(int(victim.group(2)), signal.SIGKILL)
        assert process.wait(timeout=60) == 1
    finally:
        if process.poll() is None:
            process.kill()
    text = output.rest(5)
    assert (
        f"Error: compute-0 ({victim.group(1)}, pid {victim.group(2)}) exited unexpectedly with code -9"
        in text
    )
    assert "Devstack stopped." in text
    wait_until(lambda: all(gone(pid) for pid in pids), 30, "every node process to exit")


def test_nodes_stop_by_themselves_when_the_devstack_is_killed(tmp_path):
    process = subprocess.Popen(
        [
            *COMMAND,
            "devstack",
            "--nodes",
            "1",
            "--data-dir",
            str(tmp_path),
            "--startup-timeout",
            str(STARTUP),
        ],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Lines(process.stdout)
    try:
        output.wait_for("Devstack is ready!", STARTUP + 10)
    finally:
        process.kill()  # SIGKILL: the devstack cannot stop its nodes itself
        process.wait(timeout=30)
    pids = [int(pid) for pid in re.findall(r" pid (\d+)", output.text())]
    assert len(pids) == 3
    # the web dashboard (on by default) watches the same pipe
    dashboard = cli_support.DASHBOARD_LINE.search(output.text())
    assert dashboard, output.text()
    pids.append(int(dashboard.group(2)))
    wait_until(lambda: all(gone(pid) for pid in pids), 30, "the orphaned nodes and dashboard to stop")
    assert "compute stopped" in (tmp_path / "logs" / "compute-0.log").read_text()  # gracefully


async def test_devstack_library_reports_a_node_that_cannot_start(tmp_path):
    stack = Devstack(
        nodes=1, data_dir=tmp_path, requester_flags=["--node-timeout", "-1"], startup_timeout=STARTUP
    )
    with pytest.raises(DevstackError) as err:
        await stack.start()
    message = str(err.value)
    assert message.startswith("requester exited with code 1 before it was ready")
    assert "node_timeout" in message  # the tail of the requester's log says what was wrong
    assert stack.verifier is not None and gone(stack.verifier.pid)


async def test_devstack_library_starts_a_network_and_cleans_up():
    async with Devstack(nodes=2, bad_actors=1, compute_flags=["--noop-stdout", "from the library"]) as stack:
        data_dir = stack.data_dir
        assert len(stack.compute_addresses) == 2 and all(stack.compute_addresses)
        assert [node.bad_actor for node in stack.computes] == [False, True]
        assert stack.requester_address.startswith("127.0.0.1:") and stack.requester_port > 0
        assert stack.verifier_address != stack.requester_address
        pids = [node.pid for node in stack.all_nodes]
        assert stack.ca_cert.is_file()  # TLS by default, certificates in its data dir
        credentials = stack.channel_credentials()
        async with channels.open_channel(stack.requester_address, credentials=credentials) as channel:
            stub = rgrpc.RequesterServiceStub(channel)
            job = pb.Job(api_version="V1beta1")
            job.spec.engine = pb.Engine.ENGINE_NOOP
            job.spec.verifier = pb.Verifier.VERIFIER_NOOP
            job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
            job.deal.concurrency = 2  # both nodes must be registered for this to complete
            request = ClientKey.generate().signed_submit_request(job)
            created = await channels.call(stub.SubmitJob, request)
            request = rpb.WatchJobEventsRequest(job_id=created.job.id)
            events = [item.event async for item in channels.stream(stub.WatchJobEvents, request, timeout=60)]
        published = [e for e in events if e.event_name == pb.JobEventType.JOB_EVENT_TYPE_RESULTS_PUBLISHED]
        assert len(published) == 2
    assert all(gone(pid) for pid in pids)
    assert not data_dir.exists()  # a temporary data dir is removed


async def test_devstack_library_refuses_bad_sizes():
    with pytest.raises(DevstackError, match="--bad-actors must be at least 0 and less than --nodes"):
        await Devstack(nodes=2, bad_actors=2).start()
    with pytest.raises(DevstackError, match="at least one compute node"):
        await Devstack(nodes=0).start()


# ------------------------------------------------------------------------------------------------ serve


class Served:
    """`bacalhau-grpc serve ARGS` once it listens; with `certs`, TLS (its health checked as the operator)."""

    def __init__(self, *args: str, env: dict[str, str], certs: ClusterCerts | None = None) -> None:
        self.process = subprocess.Popen(
            [*COMMAND, "serve", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.output = Lines(self.process.stdout)
        self.certs = certs
        match = self.output.wait_for(r"^(requester|compute|verifier) (\S+) listening on (\S+)$", STARTUP)
        self.node_type, self.node_id, self.address = match.groups()
        self.node_address = self.address
        if certs is not None and self.node_type == "requester":  # its second port, the node protocol
            node_line = self.output.wait_for(rf"^requester {self.node_id} node protocol on (\S+)$", 10)
            self.node_address = node_line.group(1)

    def channel(self, address: str | None = None) -> grpc.Channel:
        target = address or self.address
        if self.certs is None:
            return grpc.insecure_channel(target)
        return grpc.secure_channel(target, self.certs.credentials())

    def health(self, service: str = "", address: str | None = None) -> int:
        with self.channel(address) as channel:
            request = health_pb2.HealthCheckRequest(service=service)
            return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()


def test_serve_runs_each_node_type_until_sigterm(tmp_path):
    """Each node type served with its certificate, as an operator starts a cluster by hand: the requester
    on two ports, the compute node registering at its node port."""
    certs = ClusterCerts(tmp_path / "certs")
    env = clean_env(BACALHAU_NODE_ID="verifier-from-env")
    serving = []
    try:
        verifier = Served(
            "--node-type",
            "verifier",
            "--port",
            "0",
            *certs.serve_flags("verifier", "verifier-from-env"),
            env=env,
            certs=certs,
        )
        serving.append(verifier)
        assert verifier.node_id == "verifier-from-env"
        requester = Served(
            "--node-type=requester",
            "--port=0",
            "--node-port=0",
            "--node-id=requester-1",
            f"--data-dir={tmp_path / 'requester'}",
            f"--verifier-address={verifier.address}",
            *certs.serve_flags("requester", "requester-1"),
            env=clean_env(),
            certs=certs,
        )
        serving.append(requester)
        assert requester.node_address != requester.address
        compute = Served(
            "--node-type",
            "compute",
            "--port",
            "0",
            "--node-id",
            "node-1",
            "--data-dir",
            str(tmp_path / "compute"),
            "--requester-address",
            requester.node_address,
            "--noop-exit-code",
            "3",
            "--bad-actor",
            *certs.serve_flags("compute", "node-1"),
            env=clean_env(),
            certs=certs,
        )
        serving.append(compute)
        services = {
            verifier: "bacalhau.verifier.v1.VerifierService",
            requester: "bacalhau.requester.v1.RequesterService",
            compute: "bacalhau.compute.v1.ComputeService",
        }
        for served, service in services.items():
            assert served.health() == health_pb2.HealthCheckResponse.SERVING
            assert served.health(service) == health_pb2.HealthCheckResponse.SERVING
        node_service = "bacalhau.requester.v1.RequesterNodeService"
        serving_status = requester.health(node_service, requester.node_address)
        assert serving_status == health_pb2.HealthCheckResponse.SERVING
        compute.output.wait_for("registered with requester", 30)
        # the compute node keeps its ID in its data dir
        assert (tmp_path / "compute" / "node_id").read_text().strip() == compute.node_id
    finally:
        codes = [served.stop() for served in reversed(serving)]
    assert codes == [0, 0, 0]


def test_serve_insecure_runs_in_plaintext_on_one_port(tmp_path):
    """`--insecure`: no certificates, everything in plaintext; the requester serves one port."""
    serving = []
    try:
        verifier = Served("--node-type", "verifier", "--insecure", env=clean_env())
        serving.append(verifier)
        requester = Served(
            "--node-type=requester",
            "--insecure",
            f"--data-dir={tmp_path / 'requester'}",
            f"--verifier-address={verifier.address}",
            env=clean_env(),
        )
        serving.append(requester)
        compute = Served(
            *("--node-type", "compute", "--insecure", "--data-dir", str(tmp_path / "compute")),
            *("--requester-address", requester.address),
            env=clean_env(),
        )
        serving.append(compute)
        assert requester.node_id.startswith("requester-") and compute.node_id.startswith("node-")
        assert "node protocol on" not in requester.output.text()
        compute.output.wait_for("registered with requester", 30)
        for served in serving:
            assert served.health() == health_pb2.HealthCheckResponse.SERVING
    finally:
        codes = [served.stop() for served in reversed(serving)]
    assert codes == [0, 0, 0]


def test_serve_refuses_bad_settings_with_one_line(tmp_path):
    no_verifier = run_cli(
        "serve", "--node-type", "requester", "--insecure", "--data-dir", str(tmp_path), env=clean_env()
    )
    assert no_verifier.returncode == 1
    assert no_verifier.stderr.strip().startswith("Error: ") and "verifier_address" in no_verifier.stderr
    wrong_flag = run_cli("serve", "--node-type", "verifier", "--insecure", "--bad-actor", env=clean_env())
    assert wrong_flag.returncode == 1
    assert "Error: --bad-actor does not apply to a verifier node" in wrong_flag.stderr
    bad_env = run_cli("serve", "--node-type", "verifier", "--insecure", env=clean_env(BACALHAU_PORT="http"))
    assert bad_env.returncode == 1 and "BACALHAU_PORT" in bad_env.stderr


# ---------------------------------------------------------------------------------- CLI pieces in-process


def test_create_fills_go_defaults_and_clears_server_owned_fields():
    warnings = io.StringIO()
    job = submit.prepare_job(
        b"ID: x\nCreatedAt: '2022-11-17T13:29:01Z'\nSpec:\n  Engine: Noop\n", warn=warnings
    )
    assert (job.api_version, job.deal.concurrency) == ("V1beta1", 1)
    # Publisher Local (v0.3: Estuary): the results can be downloaded
    assert (job.spec.verifier, job.spec.publisher) == (
        pb.Verifier.VERIFIER_NOOP,
        pb.Publisher.PUBLISHER_LOCAL,
    )
    assert job.id == "" and not job.HasField("created_at")
    assert warnings.getvalue() == (
        "WARNING: The following fields have data in them and will be ignored on creation: CreatedAt, ID\n"
    )
    kept = submit.prepare_job(b"Spec: {Engine: Noop, Verifier: Deterministic}\nDeal: {Concurrency: 3}\n")
    assert (kept.spec.verifier, kept.deal.concurrency) == (pb.Verifier.VERIFIER_DETERMINISTIC, 3)
    with pytest.raises(
        flags.CommandError, match=r"^The job provided is invalid: Spec.Engine: unknown Engine"
    ):
        submit.prepare_job(b"Spec: {Engine: Cobol}")


def test_api_address_flags_win_over_environment_over_default():
    none = argparse.Namespace(api_host=None, api_port=None)
    assert flags.api_address(none, {}) == "127.0.0.1:1234"
    env = {"BACALHAU_API_HOST": "10.0.0.1", "BACALHAU_API_PORT": "999"}
    assert flags.api_address(none, env) == "10.0.0.1:999"
    assert flags.api_address(argparse.Namespace(api_host="h", api_port=5), env) == "h:5"
    with pytest.raises(flags.CommandError, match="BACALHAU_API_PORT"):
        flags.api_address(none, {"BACALHAU_API_PORT": "x"})
