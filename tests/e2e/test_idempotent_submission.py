"""Idempotent submission with real processes: the requester dies right after committing a job and before
the client hears of it (the test-only failpoint "submit-after-commit", set in the requester's environment
only), the client sees the call fail, the requester comes back without the failpoint, and the same signed
request sent again gets that job back: one job, never two. The same submission ID with another payload is
refused (ALREADY_EXISTS), through the Python client and through the real grpcurl.

Everything runs over TLS with the devstack's certificates; the requester is restarted on the address it had
(`Devstack.restart`), with its data dir."""

import asyncio
import json

import pytest
from google.protobuf import json_format

from bacalhau_grpc.common import channels, failpoints
from bacalhau_grpc.common.errors import AlreadyExistsError, UnavailableError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.devstack import Devstack
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from tests.e2e.test_grpcurl_services import REQUESTER, finished, grpcurl_path

SUBMISSION_ID = "e2e-retry-0001"
EXIT_TIMEOUT = 30.0  # for the requester to die once the failpoint is hit
CALL_TIMEOUT = 20.0


def noop_job(tag: str) -> pb.Job:
    job = pb.Job(api_version="V1beta1")
    job.spec.engine = pb.Engine.ENGINE_NOOP
    job.spec.annotations.append(tag)
    job.deal.concurrency = 1
    return job


async def list_jobs(stub: rgrpc.RequesterServiceStub, client_id: str) -> list[pb.Job]:
    request = rpb.ListJobsRequest(client_id=client_id, page_size=100)
    return list((await channels.call(stub.ListJobs, request, timeout=CALL_TIMEOUT)).jobs)


async def grpcurl_submit(stack: Devstack, request: rpb.SubmitJobRequest) -> tuple[int, str, str]:
    """`grpcurl -cacert CA -d BODY ADDRESS .../SubmitJob` with the signed request as its JSON body (what
    `bacalhau-grpc sign-job` prints): (exit code, stdout, stderr)."""
    body = json_format.MessageToJson(request)
    process = await asyncio.create_subprocess_exec(
        grpcurl_path(),
        *("-cacert", str(stack.ca_cert), "-max-time", "20", "-d", body),
        stack.requester_address,
        f"{REQUESTER}/SubmitJob",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return await finished(process)


async def test_a_retry_after_the_requester_died_past_the_commit_gets_the_one_job(tmp_path):
    key = ClientKey.generate()
    request = key.signed_submit_request(noop_job("first"), submission_id=SUBMISSION_ID)
    stack = Devstack(
        nodes=1,
        data_dir=tmp_path / "stack",
        requester_env={failpoints.ENV: "submit-after-commit"},
    )
    async with stack:
        requester = stack.requester
        assert requester is not None and requester.process is not None
        assert stack.computes[0].env == {}  # the failpoint is the requester's alone
        channel = channels.open_channel(stack.requester_address, credentials=stack.channel_credentials())
        try:
            stub = rgrpc.RequesterServiceStub(channel)

            # The requester commits the job, then dies before it answers: the call fails.
            with pytest.raises(UnavailableError):
                await channels.call(stub.SubmitJob, request, timeout=CALL_TIMEOUT)
            code = await asyncio.wait_for(requester.process.wait(), EXIT_TIMEOUT)
            assert code == failpoints.EXIT_CODE
            assert "failpoint submit-after-commit" in requester.current_log()

            # Back without the failpoint, on the same address, with the same data dir; a new channel (the
            # old one may be backing off from the failed connection).
            requester.env.pop(failpoints.ENV)
            await stack.restart(requester)
            await channel.close()
            channel = channels.open_channel(stack.requester_address, credentials=stack.channel_credentials())
            stub = rgrpc.RequesterServiceStub(channel)

            # The job the dead requester committed is there, once.
            (stored,) = await list_jobs(stub, key.client_id)
            assert list(stored.spec.annotations) == ["first"]

            # The same signed request again: that job, not a new one.
            answer = await channels.call(stub.SubmitJob, request, timeout=CALL_TIMEOUT)
            assert answer.job.id == stored.id
            assert answer.job.client_id == key.client_id
            assert answer.job.created_at == stored.created_at
            assert [job.id for job in await list_jobs(stub, key.client_id)] == [stored.id]

            # The same submission ID with another payload: refused, naming the ID and the job.
            other = key.signed_submit_request(noop_job("second"), submission_id=SUBMISSION_ID)
            with pytest.raises(AlreadyExistsError) as refused:
                await channels.call(stub.SubmitJob, other, timeout=CALL_TIMEOUT)
            assert SUBMISSION_ID in str(refused.value) and stored.id in str(refused.value)

            # The same through grpcurl: the retry gets the job, the other payload ALREADY_EXISTS.
            rc, out, err = await grpcurl_submit(stack, request)
            assert rc == 0, err
            assert json.loads(out)["job"]["ID"] == stored.id
            rc, out, err = await grpcurl_submit(stack, other)
            assert rc != 0 and out == ""
            assert "Code: AlreadyExists" in err and stored.id in err, err

            # A new submission ID makes a new job.
            fresh = key.signed_submit_request(noop_job("second"), submission_id="e2e-retry-0002")
            made = (await channels.call(stub.SubmitJob, fresh, timeout=CALL_TIMEOUT)).job
            assert made.id != stored.id
            assert {job.id for job in await list_jobs(stub, key.client_id)} == {stored.id, made.id}
        finally:
            await channel.close()
