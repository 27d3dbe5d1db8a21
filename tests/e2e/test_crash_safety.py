"""Crash safety with real processes: kill -9 the requester, a compute node or the verifier while jobs run,
restart it (same command line, same data dir), and every job still ends as it should, with no event lost
or recorded twice, and the services find each other again by themselves.

The requester and the verifier are restarted on the port they had (the others know them by address): the
test picks those ports at run time (bind port 0, read it, close it) and passes them with --port (and the
requester's node port, where the compute nodes reach it, with --node-port). A compute node restarts on a
new port and registers again with its new address. Everything runs over TLS (the devstack's certificates):
a restarted node comes back with the certificate it had.
"""

import asyncio
import collections
import contextlib
import dataclasses
import os
import signal
import socket
import sys
import time

import pytest

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.errors import BacalhauError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.devstack import Devstack, Node
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from bacalhau_grpc.requester.settings import RequesterSettings

E = pb.JobEventType
JOBS = 6
RUN_SECONDS = 1.0
DEADLINE = 90.0  # for every job to end after the restart
# Events one node records at most once per shard (keyed by type, source, target, shard).
ONCE = {
    E.JOB_EVENT_TYPE_CREATED,
    E.JOB_EVENT_TYPE_BID,
    E.JOB_EVENT_TYPE_BID_ACCEPTED,
    E.JOB_EVENT_TYPE_BID_REJECTED,
    E.JOB_EVENT_TYPE_RESULTS_PROPOSED,
    E.JOB_EVENT_TYPE_RESULTS_ACCEPTED,
    E.JOB_EVENT_TYPE_RESULTS_REJECTED,
    E.JOB_EVENT_TYPE_RESULTS_PUBLISHED,
    E.JOB_EVENT_TYPE_COMPUTE_ERROR,
}
PER_NODE = {
    f"BACALHAU_{name}"
    for name in ("NODE_ID", "HOST", "PORT", "DATA_DIR", "REQUESTER_ADDRESS", "VERIFIER_ADDRESS", "BAD_ACTOR")
}
HONEST_LIFECYCLE = [
    E.JOB_EVENT_TYPE_BID,
    E.JOB_EVENT_TYPE_BID_ACCEPTED,
    E.JOB_EVENT_TYPE_RESULTS_PROPOSED,
    E.JOB_EVENT_TYPE_RESULTS_ACCEPTED,
    E.JOB_EVENT_TYPE_RESULTS_PUBLISHED,
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def requester_flags(port: int, node_port: int) -> list[str]:
    flags = ["--port", str(port), "--node-port", str(node_port)]
    if any(f.name == "allow_unsigned" for f in dataclasses.fields(RequesterSettings)):
        flags.append("--allow-unsigned")
    return flags


def _without_fd_watch(args: list[str]) -> list[str]:
    """The node's command line without --stop-when-fd-closes (that pipe end is closed by now)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--stop-when-fd-closes":
            skip = True
            continue
        out.append(arg)
    return out


def child_env() -> dict[str, str]:
    """The environment the devstack gives its children: what it decides per node does not leak in."""
    env = {k: v for k, v in os.environ.items() if k not in PER_NODE}
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def kill_and_restart(node: Node, while_down=None) -> None:
    """SIGKILL the node's process, await `while_down()` if given, then start it again with the same command
    line, data dir and log; the devstack stops the new process at the end (node.process is replaced)."""
    assert node.process is not None and node.process.returncode is None
    os.kill(node.process.pid, signal.SIGKILL)
    await node.process.wait()
    if while_down is not None:
        await while_down()
    with open(node.log_path, "ab") as log:
        node.process = await asyncio.create_subprocess_exec(
            sys.executable,
            *_without_fd_watch(node.args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env=child_env(),
            start_new_session=True,
        )


async def eventually(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = await check()
        except BacalhauError as exc:  # e.g. the requester is restarting
            last = exc
            value = None
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last error: {last})")


def log_size(node: Node) -> int:
    try:
        return node.log_path.stat().st_size
    except OSError:
        return 0


def logged_since(node: Node, offset: int, text: str) -> bool:
    with open(node.log_path, "rb") as log:
        log.seek(offset)
        return text in log.read().decode(errors="replace")


def payload(index: int) -> pb.JobCreatePayload:
    job = pb.Job(api_version="V1beta1")
    job.spec.engine = pb.Engine.ENGINE_NOOP
    job.spec.verifier = pb.Verifier.VERIFIER_NOOP
    job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
    job.spec.annotations.append(f"crash-{index}")
    job.deal.concurrency = 1
    return pb.JobCreatePayload(client_id="crash-test", job=job)


class Client:
    def __init__(self, address: str, credentials) -> None:
        self.channel = channels.open_channel(address, credentials=credentials)
        self.stub = rgrpc.RequesterServiceStub(self.channel)

    async def submit(self, index: int) -> str:
        response = await channels.call(self.stub.SubmitJob, rpb.SubmitJobRequest(payload=payload(index)))
        return response.job.id

    async def events(self, job_id: str) -> list[pb.JobEvent]:
        response = await channels.call(self.stub.GetJob, rpb.GetJobRequest(job_id=job_id), timeout=2.0)
        return list(response.job.job_events)


def ended(events: list[pb.JobEvent], requester_id: str) -> str | None:
    """ "Completed", "Error" or None (still running), from the job's events (one shard)."""
    if any(e.event_name == E.JOB_EVENT_TYPE_ERROR and e.source_node_id == requester_id for e in events):
        return "Error"
    if any(e.event_name == E.JOB_EVENT_TYPE_RESULTS_PUBLISHED for e in events):
        return "Completed"
    return None


def check_events(job_id: str, events: list[pb.JobEvent]) -> None:
    counts = collections.Counter(
        (e.event_name, e.source_node_id, e.target_node_id, e.shard_index)
        for e in events
        if e.event_name in ONCE
    )
    twice = {key: n for key, n in counts.items() if n > 1}
    assert not twice, f"job {job_id}: events recorded more than once: {twice}"
    published = [e for e in events if e.event_name == E.JOB_EVENT_TYPE_RESULTS_PUBLISHED]
    assert len(published) == 1, f"job {job_id}: {len(published)} publications"
    publisher = published[0].source_node_id
    assert events[0].event_name == E.JOB_EVENT_TYPE_CREATED
    # The publishing node's lifecycle is complete and in order.
    mine = [
        e.event_name
        for e in events
        if e.event_name in HONEST_LIFECYCLE and publisher in (e.source_node_id, e.target_node_id)
    ]
    assert mine == HONEST_LIFECYCLE, f"job {job_id}: lifecycle of {publisher}: {mine}"


async def run_scenario(tmp_path, victim: str) -> None:
    requester_port, node_port, verifier_port = free_port(), free_port(), free_port()
    stack = Devstack(
        nodes=3,
        data_dir=tmp_path / "stack",
        compute_flags=["--noop-delay", str(RUN_SECONDS)],
        requester_flags=requester_flags(requester_port, node_port),
        verifier_flags=["--port", str(verifier_port)],
    )
    async with stack:
        assert stack.requester_port == requester_port
        assert stack.requester_node_address == f"127.0.0.1:{node_port}"
        assert stack.requester is not None and stack.verifier is not None
        requester_id = stack.requester.node_id
        client = Client(stack.requester_address, stack.channel_credentials())
        try:
            job_ids = [await client.submit(i) for i in range(JOBS)]

            # Wait until jobs run (a bid accepted, no results yet), then kill the victim mid-run.
            async def busy_compute() -> str | None:
                for job_id in job_ids:
                    events = await client.events(job_id)
                    for e in events:
                        if e.event_name == E.JOB_EVENT_TYPE_BID_ACCEPTED and not any(
                            p.event_name == E.JOB_EVENT_TYPE_RESULTS_PROPOSED
                            and p.source_node_id == e.target_node_id
                            for p in events
                        ):
                            return e.target_node_id
                return None

            await eventually(busy_compute, timeout=30, what="jobs running")
            if victim == "requester":
                node = stack.requester
            elif victim == "verifier":
                node = stack.verifier
            else:
                busy = await busy_compute()
                node = next(n for n in stack.computes if n.node_id == busy)
            requester = stack.requester
            offsets = {n.name: log_size(n) for n in stack.all_nodes}

            async def while_down() -> None:
                if victim == "requester":
                    # A compute node finished a run and gave up telling the requester: the restarted
                    # requester must recover that report (it repeats BidAccepted; the node reports again).
                    async def gave_up() -> bool:
                        return any(
                            logged_since(n, offsets[n.name], "could not tell the requester")
                            for n in stack.computes
                        )

                    await eventually(gave_up, timeout=30, what="a compute node to give up a report")
                elif victim == "verifier":
                    # Results wait for verification while the verifier is down: the requester retries.
                    async def retrying() -> bool:
                        return logged_since(requester, offsets[requester.name], "verifier unreachable")

                    await eventually(retrying, timeout=30, what="the requester to retry Verify")

            await kill_and_restart(node, while_down)

            async def all_ended() -> dict[str, list[pb.JobEvent]] | None:
                found = {}
                for job_id in job_ids:
                    events = await client.events(job_id)
                    if ended(events, requester_id) is None:
                        return None
                    found[job_id] = events
                return found

            finished = await eventually(all_ended, timeout=DEADLINE, what="every job to end")
            for job_id, events in finished.items():
                errors = [e.status for e in events if e.event_name == E.JOB_EVENT_TYPE_ERROR]
                assert ended(events, requester_id) == "Completed", f"job {job_id} ended in Error: {errors}"
                check_events(job_id, events)
            # The restarted node is back in the network.
            assert node.process is not None and node.process.returncode is None
        finally:
            with contextlib.suppress(Exception):
                await client.channel.close()


@pytest.mark.parametrize("victim", ["requester", "compute", "verifier"])
async def test_jobs_survive_a_kill_9(tmp_path, victim):
    await run_scenario(tmp_path, victim)
