"""The HTTP and exec bid probes against a real HTTP server on 127.0.0.1:0 and real `bash -c` commands."""

import asyncio
import json
import socket
from pathlib import Path

import pytest
from aiohttp import web

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.model.jobfile import message_to_dict
from bacalhau_grpc.compute.domain.bidding import BidPolicy, default_bidder
from bacalhau_grpc.compute.domain.capacity import CapacityTracker
from bacalhau_grpc.compute.domain.probes import PROBE_DATA_ENV, ask_command, ask_http, probe_payload
from tests.unit.compute.support import make_job

NODE_ID = "node-000000000001"
TOTAL = pb.ResourceUsageData(cpu=2.0, memory=4 * 1024**3)


class ProbeServer:
    """Answers every POST with `status` (or holds it until stopped, with `hang`); records the requests."""

    def __init__(self) -> None:
        self.status = 200
        self.hang = False
        self.requests: list[tuple[str, dict]] = []
        self._runner: web.AppRunner | None = None
        self._stopping: list[asyncio.Event] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.content_type, await request.json()))
        if self.hang:
            stop = asyncio.Event()
            self._stopping.append(stop)
            await stop.wait()
        return web.Response(status=self.status)

    async def start(self) -> "ProbeServer":
        app = web.Application()
        app.router.add_post("/probe", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/probe"
        return self

    async def stop(self) -> None:
        for stop in self._stopping:
            stop.set()
        await self._runner.cleanup()


@pytest.fixture
async def server():
    probe = await ProbeServer().start()
    yield probe
    await probe.stop()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bidder(**policy):
    return default_bidder(
        is_installed=lambda engine: engine == pb.Engine.ENGINE_NOOP,
        verifiers=[pb.Verifier.VERIFIER_NOOP],
        publishers=[pb.Publisher.PUBLISHER_NOOP],
        per_job=TOTAL,
        tracker=CapacityTracker(TOTAL),
        policy=BidPolicy(**policy),
        node_id=NODE_ID,
    )


def test_the_payload_is_v03_s_document():
    job = make_job(cpu="500m", timeout=30)
    job.execution_plan.total_shards = 3
    document = json.loads(probe_payload(NODE_ID, job))
    assert document == {
        "node_id": NODE_ID,
        "job_id": job.id,
        "spec": message_to_dict(job.spec),
        "execution_plan": {"ShardsTotal": 3},
    }
    assert document["spec"]["Engine"] == "Noop" and document["spec"]["Resources"]["CPU"] == "500m"


# --------------------------------------------------------------------------------------------- HTTP


async def test_http_200_is_a_bid_and_the_job_is_posted_as_json(server):
    job = make_job()
    decision = await bidder(probe_http=server.url).decide(job, 0)
    assert decision.accepted
    assert server.requests == [("application/json", json.loads(probe_payload(NODE_ID, job)))]


@pytest.mark.parametrize("status", [201, 403, 500, 503])
async def test_http_any_other_status_is_a_refusal_naming_url_and_status(server, status):
    server.status = status
    decision = await bidder(probe_http=server.url).decide(make_job(), 0)
    assert (decision.accepted, decision.reason) == (
        False,
        f"url `{server.url}` returned {status} status code",
    )


async def test_http_unreachable_url_is_a_refusal_with_the_cause():
    url = f"http://127.0.0.1:{free_port()}/probe"
    decision = await bidder(probe_http=url).decide(make_job(), 0)
    assert not decision.accepted
    assert decision.reason.startswith(f"url `{url}` could not be reached: ")
    assert "Connect" in decision.reason or "refused" in decision.reason


async def test_http_a_probe_that_does_not_answer_in_time_is_a_refusal(server):
    server.hang = True
    reason = await ask_http(server.url, probe_payload(NODE_ID, make_job()), timeout=0.3)
    assert reason == f"url `{server.url}` did not answer within 0.3s"


async def test_http_the_probe_is_not_asked_about_jobs_the_node_refuses_anyway(server):
    decision = await bidder(probe_http=server.url).decide(make_job(engine=pb.Engine.ENGINE_DOCKER), 0)
    assert decision.reason == "executor Docker not installed"
    assert server.requests == []


# --------------------------------------------------------------------------------------------- exec


async def test_exec_exit_0_is_a_bid():
    assert (await bidder(probe_exec="true").decide(make_job(), 0)).accepted


async def test_exec_non_zero_is_a_refusal_naming_command_and_code():
    command = "echo 'not today' >&2; exit 3"
    decision = await bidder(probe_exec=command).decide(make_job(), 0)
    assert (decision.accepted, decision.reason) == (
        False,
        f"command `{command}` returned non-zero exit code 3",
    )


async def test_exec_gets_the_job_on_stdin_and_in_its_environment_only(tmp_path):
    job = make_job()
    command = "; ".join(
        [
            f"cat > {tmp_path}/stdin.json",
            f'printf %s "${PROBE_DATA_ENV}" > {tmp_path}/env.json',
            f"env > {tmp_path}/env",
        ]
    )
    assert await ask_command(command, probe_payload(NODE_ID, job)) is None
    stdin = json.loads((tmp_path / "stdin.json").read_text())
    assert stdin == json.loads((tmp_path / "env.json").read_text()) == json.loads(probe_payload(NODE_ID, job))
    names = {line.split("=", 1)[0] for line in (tmp_path / "env").read_text().splitlines()}
    # bash adds PWD, SHLVL and _ itself; of the node's environment only PATH is passed on.
    assert names - {"PWD", "SHLVL", "_"} == {PROBE_DATA_ENV, "PATH"}


async def test_exec_commands_on_the_path_are_found():
    assert await ask_command("grep -q '\"job_id\"'", probe_payload(NODE_ID, make_job())) is None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


async def test_exec_a_command_past_its_timeout_is_killed_with_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    command = f"sleep 60 & echo $! > {pid_file}; wait"
    reason = await ask_command(command, "{}", timeout=1.5)
    assert reason == f"command `{command}` did not finish within 1.5s"
    assert not _alive(int(pid_file.read_text()))


async def test_exec_a_command_that_does_not_read_its_stdin_is_fine():
    payload = "x" * (100 * 1024)  # more than a pipe holds
    assert await ask_command("exit 0", payload) is None
    assert await ask_command("exit 5", payload) == "command `exit 5` returned non-zero exit code 5"


async def test_exec_a_job_too_large_for_an_environment_variable_is_a_refusal():
    reason = await ask_command("exit 0", "x" * (1024 * 1024))  # Linux: 128 KiB per variable
    assert reason is not None and reason.startswith("command `exit 0` could not be run: ")


async def test_exec_without_bash_on_the_path_is_a_refusal(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = await ask_command("true", "{}")
    assert reason is not None and reason.startswith("command `true` could not be run: ")
