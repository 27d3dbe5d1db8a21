"""The real grpcurl against every service of a devstack (separate processes, TLS with the devstack's
certificates), as an operator types it: list, describe, unary calls with JSON bodies (a job submitted and
followed to its published result with nothing but grpcurl) and an error showing its status code.

The requester's client API takes `-cacert` alone (server TLS, clients without certificates); its node
port, the compute nodes and the verifier serve mutual TLS, reached with the operator's client certificate
(`-cacert -cert -key`), as the devstack prints."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
from pathlib import Path

import pytest
import pytest_asyncio
from google.protobuf import json_format

from bacalhau_grpc.devstack import Devstack
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb

pytestmark = pytest.mark.asyncio(loop_scope="module")

REQUESTER = "bacalhau.requester.v1.RequesterService"
REQUESTER_NODE = "bacalhau.requester.v1.RequesterNodeService"
COMPUTE = "bacalhau.compute.v1.ComputeService"
VERIFIER = "bacalhau.verifier.v1.VerifierService"
# What each address serves as its own: the requester's client API, its node port, a compute node, the
# verifier.
SERVICES = {
    "requester": REQUESTER,
    "requester-node": REQUESTER_NODE,
    "compute": COMPUTE,
    "verifier": VERIFIER,
}
CONTENT = "bacalhau.content.v1.ContentService"
# The services an address serves besides its own: requester and compute nodes serve the content they hold;
# the requester's node port serves the client API too (for operators' client certificates).
ALSO_SERVED = {
    "requester": {CONTENT},
    "requester-node": {REQUESTER, CONTENT},
    "compute": {CONTENT},
    "verifier": set(),
}
STANDARD_SERVICES = {
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}
METHODS = {
    REQUESTER: {
        "SubmitJob",
        "GetJob",
        "ListJobs",
        "ListJobEvents",
        "ListJobShards",
        "WatchJobEvents",
        "CancelJob",
        "GetJobResults",
        "StreamJobLogs",
        "GetVersion",
        "ListNodes",
        "GetNode",
    },
    REQUESTER_NODE: {
        "RegisterNode",
        "Heartbeat",
        "OnRunComplete",
        "OnPublishComplete",
        "OnComputeFailure",
        "OnCancelComplete",
        "ReportExecutions",
    },
    COMPUTE: {
        "AskForBid",
        "BidAccepted",
        "BidRejected",
        "ResultAccepted",
        "ResultRejected",
        "CancelExecution",
        "AskForBids",
        "UpdateExecutions",
        "StreamExecutionLogs",
        "GetNodeInfo",
    },
    VERIFIER: {"Verify", "VerifyShards", "GetVerifierInfo"},
}
# One method of each service to describe: (method, request type, response type).
DESCRIBED = {
    "requester": (
        "SubmitJob",
        "bacalhau.requester.v1.SubmitJobRequest",
        "bacalhau.requester.v1.SubmitJobResponse",
    ),
    "requester-node": (
        "RegisterNode",
        "bacalhau.requester.v1.RegisterNodeRequest",
        "bacalhau.requester.v1.RegisterNodeResponse",
    ),
    "compute": (
        "GetNodeInfo",
        "bacalhau.compute.v1.GetNodeInfoRequest",
        "bacalhau.compute.v1.GetNodeInfoResponse",
    ),
    "verifier": ("Verify", "bacalhau.verifier.v1.VerifyRequest", "bacalhau.verifier.v1.VerifyResponse"),
}

# The SubmitJob body an operator types: a noop job on one node, unsigned (the devstack's requester runs
# with --allow-unsigned; a signed body comes from `bacalhau-grpc sign-job`, see the signed test below).
SUBMIT_JOB_BODY = {
    "payload": {
        "client_id": "grpcurl",
        "job": {"spec": {"engine": "ENGINE_NOOP"}, "deal": {"concurrency": 1}},
    }
}
JOB_END_TIMEOUT = 60.0
GRPCURL_TIMEOUT = 30.0


def grpcurl_path() -> str:
    candidate = Path(sys.executable).parent / "grpcurl"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    pytest.fail("grpcurl is not installed next to the Python interpreter: run `make install`")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("devstack")
    async with Devstack(nodes=1, data_dir=data_dir, requester_flags=["--allow-unsigned"]) as devstack:
        ca = ["-cacert", str(devstack.ca_cert)]
        operator = [*ca, "-cert", str(devstack.operator_cert), "-key", str(devstack.operator_key)]
        for kind in SERVICES:
            address = address_of(devstack, kind)
            TLS[address] = ca if kind == "requester" else operator
        yield devstack
        TLS.clear()


def address_of(stack: Devstack, kind: str) -> str:
    return {
        "requester": stack.requester_address,
        "requester-node": stack.requester_node_address,
        "compute": stack.compute_addresses[0],
        "verifier": stack.verifier_address,
    }[kind]


# grpcurl's TLS flags for each address of the devstack, set by the `stack` fixture: `-cacert` for the
# requester's client API, the operator's certificate too for the mutual TLS ports (the node port, compute
# nodes, the verifier).
TLS: dict[str, list[str]] = {}


async def grpcurl(address: str, *args: str, body: object = None) -> tuple[int, str, str]:
    """Runs `grpcurl -cacert CA [-cert -key] [-d JSON] ADDRESS ARGS...`: (exit code, stdout, stderr)."""
    options = [*TLS[address], "-max-time", "20"]
    if body is not None:
        options += ["-d", body if isinstance(body, str) else json.dumps(body)]
    process = await asyncio.create_subprocess_exec(
        grpcurl_path(),
        *options,
        address,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return await finished(process)


async def finished(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    """The process's exit code, stdout and stderr; killed if it runs past GRPCURL_TIMEOUT."""
    try:
        out, err = await asyncio.wait_for(process.communicate(), GRPCURL_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def call_json(address: str, method: str, body: object = "{}") -> dict:
    """A unary call that must succeed; its JSON response."""
    rc, out, err = await grpcurl(address, method, body=body)
    assert rc == 0, f"grpcurl {method} exited with {rc}: {err}"
    return json.loads(out)


# ------------------------------------------------------------------------------------- list, describe


@pytest.mark.parametrize("kind", sorted(SERVICES))
async def test_list_shows_the_service_health_and_reflection(stack, kind):
    address = address_of(stack, kind)
    rc, out, err = await grpcurl(address, "list")
    assert rc == 0, err
    assert set(out.split()) == {SERVICES[kind], *ALSO_SERVED[kind], *STANDARD_SERVICES}
    rc, out, err = await grpcurl(address, "list", SERVICES[kind])
    assert rc == 0, err
    assert set(out.split()) == {f"{SERVICES[kind]}.{method}" for method in METHODS[SERVICES[kind]]}


@pytest.mark.parametrize("kind", sorted(SERVICES))
async def test_describe_the_service_and_a_method(stack, kind):
    address, service = address_of(stack, kind), SERVICES[kind]
    rc, out, err = await grpcurl(address, "describe", service)
    assert rc == 0, err
    assert out.splitlines()[0] == f"{service} is a service:"
    assert f"service {service.rsplit('.', 1)[1]} {{" in out
    for method in METHODS[service]:
        assert f"rpc {method} (" in out
    method, request, response = DESCRIBED[kind]
    rc, out, err = await grpcurl(address, "describe", f"{service}.{method}")
    assert rc == 0, err
    assert out.splitlines()[0] == f"{service}.{method} is a method:"
    assert f"rpc {method} ( .{request} ) returns ( .{response} );" in out
    rc, out, err = await grpcurl(address, "describe", request)
    assert rc == 0, err
    assert out.splitlines()[0] == f"{request} is a message:"


@pytest.mark.parametrize("kind", sorted(SERVICES))
async def test_health_check_says_serving(stack, kind):
    reply = await call_json(
        address_of(stack, kind), "grpc.health.v1.Health/Check", {"service": SERVICES[kind]}
    )
    assert reply == {"status": "SERVING"}


# ---------------------------------------------------------------------------------------- unary calls


async def test_requester_get_version(stack):
    reply = await call_json(stack.requester_address, f"{REQUESTER}/GetVersion")
    version = reply["version"]
    assert version["gitversion"].startswith("v")
    assert version["major"].isdigit() and version["minor"].isdigit()


async def test_submit_a_job_and_follow_it_to_its_published_result(stack):
    created = await call_json(stack.requester_address, f"{REQUESTER}/SubmitJob", SUBMIT_JOB_BODY)
    job = created["job"]
    job_id = job["ID"]
    assert job["ClientID"] == "grpcurl"
    assert job["Spec"]["Engine"] == "ENGINE_NOOP"
    assert job["Deal"]["Concurrency"] == "1"  # int64 in JSON is a string
    assert job["RequesterNodeID"] == stack.requester.node_id

    # GetJob, through grpcurl, until the result is published (or the deadline).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + JOB_END_TIMEOUT
    while True:
        info = (await call_json(stack.requester_address, f"{REQUESTER}/GetJob", {"job_id": job_id}))["job"]
        names = [event["EventName"] for event in info.get("JobEvents", [])]
        if "JOB_EVENT_TYPE_RESULTS_PUBLISHED" in names:
            break
        assert "JOB_EVENT_TYPE_ERROR" not in names, info
        assert loop.time() < deadline, f"no ResultsPublished within {JOB_END_TIMEOUT} s: {names}"
        await asyncio.sleep(0.1)  # the next poll
    assert info["Job"]["ID"] == job_id
    assert names[0] == "JOB_EVENT_TYPE_CREATED"
    (published,) = [e for e in info["JobEvents"] if e["EventName"] == "JOB_EVENT_TYPE_RESULTS_PUBLISHED"]
    node_id = stack.computes[0].node_id
    assert published["SourceNodeID"] == node_id
    assert published["PublishedResult"] == {"Name": "noop", "Metadata": {"publisher": "Noop"}}
    # The job's results, by grpcurl as well.
    results = await call_json(stack.requester_address, f"{REQUESTER}/GetJobResults", {"job_id": job_id})
    assert [(r["NodeID"], r["Data"]["Name"]) for r in results["results"]] == [(node_id, "noop")]
    # Its logs, a server stream, with follow: the devstack's noop runs write nothing, so the stream
    # ends (the job has ended) without a message.
    rc, out, err = await grpcurl(
        stack.requester_address, f"{REQUESTER}/StreamJobLogs", body={"job_id": job_id, "follow": True}
    )
    assert (rc, out) == (0, ""), err


SIGNED_JOB_FILE = """\
Spec:
  Engine: Noop
  Annotations: [signed]
Deal:
  Concurrency: 1
"""


def cli_path() -> str:
    candidate = Path(sys.executable).parent / "bacalhau-grpc"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    pytest.fail("bacalhau-grpc is not installed next to the Python interpreter: run `make install`")


async def shell(command: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_shell(
        command,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return await finished(process)


async def test_a_signed_submission_made_with_sign_job_and_grpcurl(stack, tmp_path):
    """`bacalhau-grpc sign-job job.yaml | grpcurl -cacert ca.pem -d @ HOST:PORT .../SubmitJob`: the job is
    the signing key's (its ClientID is what `bacalhau-grpc id` prints)."""
    job_file = tmp_path / "job.yaml"
    job_file.write_text(SIGNED_JOB_FILE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACALHAU_")}
    env["BACALHAU_DIR"] = str(tmp_path / "client")
    cli, grpcurl_bin = shlex.quote(cli_path()), shlex.quote(grpcurl_path())
    rc, client_id, err = await shell(f"{cli} id", env)
    assert rc == 0, err
    client_id = client_id.strip()
    assert len(client_id) == 64 and int(client_id, 16) >= 0
    ca = shlex.quote(str(stack.ca_cert))
    rc, out, err = await shell(
        f"{cli} sign-job {shlex.quote(str(job_file))} | {grpcurl_bin} -cacert {ca} -max-time 20 -d @ "
        f"{stack.requester_address} {REQUESTER}/SubmitJob",
        env,
    )
    assert rc == 0, err
    job = json.loads(out)["job"]
    assert job["ClientID"] == client_id
    assert job["Spec"]["Annotations"] == ["signed"]

    # The same body with its payload changed after signing is refused: Unauthenticated.
    rc, body, err = await shell(f"{cli} sign-job {shlex.quote(str(job_file))}", env)
    assert rc == 0, err
    request = json_format.Parse(body, rpb.SubmitJobRequest())
    request.signed_payload = request.signed_payload.replace(b"signed", b"forged")
    tampered = json_format.MessageToJson(request)
    rc, out, err = await grpcurl(stack.requester_address, f"{REQUESTER}/SubmitJob", body=tampered)
    assert rc != 0 and out == ""
    assert "Code: Unauthenticated" in err
    assert "signature" in err


async def test_compute_get_node_info(stack):
    reply = await call_json(stack.compute_addresses[0], f"{COMPUTE}/GetNodeInfo")
    node = reply["node"]
    assert node["NodeID"] == stack.computes[0].node_id
    assert node["Address"] == stack.compute_addresses[0]
    assert "ENGINE_NOOP" in node["Engines"]
    assert {"VERIFIER_NOOP", "VERIFIER_DETERMINISTIC"} <= set(node["Verifiers"])
    components = {item["component"] for item in reply["debug_info"]}
    assert "rpcs" in components


async def test_verifier_get_verifier_info(stack):
    reply = await call_json(stack.verifier_address, f"{VERIFIER}/GetVerifierInfo")
    verifiers = {item["verifier"]: item["description"] for item in reply["formats"]}
    assert set(verifiers) == {"VERIFIER_NOOP", "VERIFIER_DETERMINISTIC"}
    assert all(verifiers.values())


# --------------------------------------------------------------------------------------------- errors


async def test_an_unknown_job_shows_not_found(stack):
    rc, out, err = await grpcurl(
        stack.requester_address, f"{REQUESTER}/GetJob", body={"job_id": "no-such-job"}
    )
    assert rc != 0
    assert out == ""
    assert "Code: NotFound" in err
    assert "Message: job no-such-job not found" in err
    assert '"@type":"type.googleapis.com/google.rpc.ErrorInfo"' in err
    assert '"reason":"NOT_FOUND"' in err


async def test_an_invalid_submission_shows_invalid_argument_naming_the_field(stack):
    body = json.loads(json.dumps(SUBMIT_JOB_BODY))
    body["payload"]["job"]["deal"]["concurrency"] = 0
    rc, _, err = await grpcurl(stack.requester_address, f"{REQUESTER}/SubmitJob", body=body)
    assert rc != 0
    assert "Code: InvalidArgument" in err
    assert "Deal.Concurrency" in err
