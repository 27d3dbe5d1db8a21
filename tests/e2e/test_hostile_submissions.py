"""Hostile submissions against a devstack of real processes: a 570,000-input submission and a
context archive with two million entries are refused at once, naming what is over which limit, without
the requester's memory growing by more than a bounded amount, while another client's small job runs to
the end and no compute node is taken for lost; a client flooding jobs no node bids on is held to its
share, and another client's job is still accepted and runs.

The requests are signed and sent with the gRPC stubs directly (the CLI would refuse them before
sending); the devstack speaks TLS, as deployed.
"""

import asyncio
import re
import tarfile
import zlib
from pathlib import Path

import grpc
import pytest

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.errors import InvalidArgumentError, ResourceExhaustedError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from tests.e2e.cli_support import NODE_ROW, RunningDevstack

E = pb.JobEventType
MiB = 1024 * 1024
# How much the requester's peak resident memory may grow while it refuses one hostile submission: the
# request itself is ~10 MiB; reading it whole into Python objects (or unpacking every entry) costs
# hundreds of megabytes.
MEMORY_BOUND = 150 * MiB
# Each client's share of jobs in progress (the requester's --max-active-jobs-per-client).
SHARE = 4


@pytest.fixture(scope="module")
def devstack(tmp_path_factory):
    stack = RunningDevstack(
        tmp_path_factory.mktemp("hostile"),
        args=("--nodes", "2", f"--requester-flag=--max-active-jobs-per-client={SHARE}"),
    )
    yield stack
    stack.stop_all()


def requester_pid(stack: RunningDevstack) -> int:
    return next(int(row[3]) for row in NODE_ROW.findall(stack.output.text()) if row[0] == "requester")


def peak_memory(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) * 1024


class Api:
    """The requester's client API with one client's key: signed submissions, job reads."""

    def __init__(self, stack: RunningDevstack) -> None:
        credentials = grpc.ssl_channel_credentials(Path(stack.ca_cert).read_bytes())
        self.channel = channels.open_channel(stack.address, credentials=credentials)
        self.stub = rgrpc.RequesterServiceStub(self.channel)
        self.key = ClientKey.generate()

    async def submit(self, job: pb.Job, context: bytes = b"") -> pb.Job:
        request = self.key.signed_submit_request(job, context)
        response = await channels.call(self.stub.SubmitJob, request, timeout=60.0)
        return response.job

    async def events(self, job_id: str) -> list[pb.JobEvent]:
        response = await channels.call(self.stub.GetJob, rpb.GetJobRequest(job_id=job_id), timeout=10.0)
        return list(response.job.job_events)

    async def wait_for_end(self, job_id: str, timeout: float = 60.0) -> list[pb.JobEvent]:
        """The job's events once it published its results or failed (polled, with a deadline)."""
        ending = {E.JOB_EVENT_TYPE_RESULTS_PUBLISHED, E.JOB_EVENT_TYPE_ERROR}
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            events = await self.events(job_id)
            if any(e.event_name in ending for e in events):
                return events
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"job {job_id} did not end within {timeout}s: {events}")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        await self.channel.close()


def noop_job() -> pb.Job:
    job = pb.Job(api_version="V1beta1")
    job.spec.engine = pb.Engine.ENGINE_NOOP
    job.spec.verifier = pb.Verifier.VERIFIER_NOOP
    job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
    job.deal.concurrency = 1
    return job


def names(events: list[pb.JobEvent]) -> list[str]:
    return [E.Name(e.event_name).removeprefix("JOB_EVENT_TYPE_") for e in events]


def archive_bomb(entries: int) -> bytes:
    """A tar.gz of `entries` empty files (the same 512-byte header, repeated), written straight through
    zlib: about 1 KiB of gzip per MiB of tar."""
    block = tarfile.TarInfo("f").tobuf(tarfile.USTAR_FORMAT) * 2048  # 1 MiB: 2,048 entries
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    out = [packer.compress(block) for _ in range(entries // 2048)]
    out.append(packer.compress(b"\0" * 1024))  # the end-of-archive marker
    out.append(packer.flush())
    return b"".join(out)


async def test_a_570k_input_submission_is_refused_at_once_while_a_small_job_runs(devstack):
    flooder, someone = Api(devstack), Api(devstack)
    pid = requester_pid(devstack)
    try:
        huge = noop_job()
        huge.spec.sharding.glob_pattern = "*.txt"
        huge.spec.inputs.extend(
            pb.StorageSpec(
                storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD, url=f"http://h/{i}"
            )
            for i in range(570_000)
        )
        assert huge.ByteSize() < channels.MAX_MESSAGE_BYTES  # it reaches the requester's checks
        before = peak_memory(pid)
        small = asyncio.create_task(someone.submit(noop_job()))
        with pytest.raises(InvalidArgumentError) as refused:
            await flooder.submit(huge)
        assert [(p.field, p.reason) for p in refused.value.problems] == [
            (
                "Spec.inputs",
                "570000 inputs (with contexts and import modules), more than the 10000 a job may have",
            )
        ]
        growth = peak_memory(pid) - before
        assert growth < MEMORY_BOUND, f"the requester's peak memory grew by {growth / MiB:.0f} MiB"
        events = await someone.wait_for_end((await small).id)
        assert names(events)[-1] == "RESULTS_PUBLISHED", names(events)
    finally:
        await flooder.close()
        await someone.close()
    assert "stopped sending heartbeats" not in devstack.output.text()


async def test_an_archive_bomb_is_refused_by_its_entry_count_within_bounded_memory(devstack):
    attacker = Api(devstack)
    pid = requester_pid(devstack)
    try:
        bomb = archive_bomb(2_000_000)
        assert len(bomb) < 10 * MiB
        job = noop_job()
        before = peak_memory(pid)
        with pytest.raises(
            InvalidArgumentError, match="the archive holds more than the 10000 entries allowed"
        ):
            await attacker.submit(job, context=bomb)
        growth = peak_memory(pid) - before
        assert growth < MEMORY_BOUND, f"the requester's peak memory grew by {growth / MiB:.0f} MiB"
        # The requester goes on serving: the same client's next job runs.
        events = await attacker.wait_for_end((await attacker.submit(noop_job())).id)
        assert names(events)[-1] == "RESULTS_PUBLISHED", names(events)
    finally:
        await attacker.close()


async def test_a_client_flooding_jobs_no_node_bids_on_is_held_to_its_share(devstack):
    flooder, someone = Api(devstack), Api(devstack)
    try:
        unwanted = noop_job()
        unwanted.spec.resources.cpu = "1000"  # more than any node takes: every node refuses, for good
        for _ in range(SHARE):
            await flooder.submit(unwanted)
        with pytest.raises(ResourceExhaustedError, match=rf"\(max_active_jobs_per_client={SHARE}\)"):
            await flooder.submit(unwanted)
        events = await someone.wait_for_end((await someone.submit(noop_job())).id)
        assert names(events)[-1] == "RESULTS_PUBLISHED", names(events)
    finally:
        await flooder.close()
        await someone.close()
