"""Signed submissions against a real requester: the key, the ClientID and the signature
are checked before a job is accepted (UNAUTHENTICATED otherwise), and the ClientID owns the job."""

import grpc
import pytest

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.errors import UnauthenticatedError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from tests.integration.network import Network, noop_job


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    yield net
    await net.stop()


async def raw_submit(network: Network, request: rpb.SubmitJobRequest) -> grpc.aio.AioRpcError:
    """Sends the request with a plain grpc client; returns the error it must end with."""
    async with grpc.aio.insecure_channel(network.requester.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await rgrpc.RequesterServiceStub(channel).SubmitJob(request, timeout=10)
    return raised.value


async def no_jobs(network: Network) -> bool:
    listed = await channels.call(network.stub.ListJobs, rpb.ListJobsRequest())
    return list(listed.jobs) == []


async def test_a_signed_submission_is_accepted_and_owned_by_the_keys_client_id(network):
    await network.start(nodes=1)
    key = network.client("alice")
    job = await network.submit(noop_job(), client=key)
    assert job.client_id == key.client_id
    info = await network.get_job(job.id)
    assert info.job.client_id == key.client_id
    assert info.job_events[0].client_id == key.client_id
    mine = await channels.call(network.stub.ListJobs, rpb.ListJobsRequest(client_id=key.client_id))
    assert [j.id for j in mine.jobs] == [job.id]
    await network.wait_for_end(job.id)


async def test_a_tampered_payload_is_unauthenticated(network):
    await network.start(nodes=1)
    request = network.client().signed_submit_request(noop_job())
    payload = pb.JobCreatePayload.FromString(request.signed_payload)
    payload.job.deal.concurrency = 2  # changed after signing
    request.signed_payload = payload.SerializeToString()
    error = await raw_submit(network, request)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "signature does not match" in error.details()
    assert await no_jobs(network)


async def test_a_signature_by_another_key_is_unauthenticated(network):
    await network.start(nodes=1)
    request = network.client("alice").signed_submit_request(noop_job())
    request.client_public_key = network.client("mallory").public_key_bytes
    error = await raw_submit(network, request)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await no_jobs(network)


async def test_a_client_id_that_is_not_the_keys_is_unauthenticated(network):
    await network.start(nodes=1)
    mallory, alice = network.client("mallory"), network.client("alice")
    # mallory signs a payload claiming to be alice: the signature is good, the ClientID is not hers
    data = pb.JobCreatePayload(client_id=alice.client_id, job=noop_job()).SerializeToString()
    request = rpb.SubmitJobRequest(
        signed_payload=data, signature=mallory.sign(data), client_public_key=mallory.public_key_bytes
    )
    error = await raw_submit(network, request)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "is not the SHA-256 of the client public key" in error.details()
    with pytest.raises(UnauthenticatedError):
        await channels.call(network.stub.SubmitJob, request)  # the typed client's error
    assert await no_jobs(network)


async def test_an_unsigned_submission_is_refused_by_default(network):
    await network.start(nodes=1)
    request = rpb.SubmitJobRequest(payload=pb.JobCreatePayload(client_id="anyone", job=noop_job()))
    error = await raw_submit(network, request)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details().startswith("submissions must be signed")
    assert await no_jobs(network)


async def test_an_unsigned_submission_is_accepted_in_the_development_mode(network):
    await network.start(nodes=1, allow_unsigned=True)
    request = rpb.SubmitJobRequest(payload=pb.JobCreatePayload(client_id="anyone", job=noop_job()))
    job = (await channels.call(network.stub.SubmitJob, request)).job
    assert job.client_id == "anyone"
    # signed submissions are still checked in that mode
    signed = network.client().signed_submit_request(noop_job())
    assert (await channels.call(network.stub.SubmitJob, signed)).job.client_id == network.client().client_id
    signed.signature = bytes(64)
    error = await raw_submit(network, signed)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    await network.wait_for_end(job.id)


def test_key_sizes_are_what_the_proto_says():
    key = ClientKey.generate()
    assert len(key.public_key_bytes) == 32 and len(key.sign(b"x")) == 64
