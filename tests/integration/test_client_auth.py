"""Client authentication against a real requester (without TLS): calls carry the
client's key, a timestamp and a signature as metadata; the verified ClientID, never a request field,
decides who may cancel a job and, with `--job-visibility owner`, who may read it."""

import asyncio
import random
import re
import time

import grpc
import pytest

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.caller import Caller, current_caller
from bacalhau_grpc.common.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.server import ServiceBinding, start_server
from bacalhau_grpc.common.signing import (
    CLIENT_KEY_METADATA,
    SIGNATURE_METADATA,
    TIMESTAMP_METADATA,
    ClientKey,
)
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from bacalhau_grpc.requester.settings import RequesterSettings
from bacalhau_grpc.sdk import Client
from tests.integration.network import Network, final_row_states, noop_job

SERVICE = "bacalhau.requester.v1.RequesterService"
E = pb.JobEventType
S = pb.JobStateType


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    yield net
    await net.stop()


def signed(key: ClientKey, name: str, request, **kwargs):
    return key.call_metadata(f"/{SERVICE}/{name}", request, **kwargs)


async def call(network: Network, name: str, request, metadata=None):
    """A unary call with a plain grpc client; returns the response."""
    async with grpc.aio.insecure_channel(network.requester.address) as channel:
        return await getattr(rgrpc.RequesterServiceStub(channel), name)(
            request, metadata=metadata, timeout=10
        )


async def refused(network: Network, name: str, request, metadata=None) -> grpc.aio.AioRpcError:
    """The error a unary or streaming call with a plain grpc client ends with."""
    async with grpc.aio.insecure_channel(network.requester.address) as channel:
        method = getattr(rgrpc.RequesterServiceStub(channel), name)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            result = method(request, metadata=metadata, timeout=10)
            if hasattr(result, "__aiter__"):
                async for _ in result:
                    pass
            else:
                await result
    return raised.value


def sdk(network: Network, key: ClientKey) -> Client:
    return Client(network.requester.address, key=key)


async def running_job(network: Network, owner: str = "alice") -> pb.JobWithInfo:
    """A job of `owner` running on a node for a minute, once its bid was accepted (nothing changes then)."""
    job = await network.submit(noop_job(timeout=120), client=owner)
    await network.wait_for_event(job.id, E.JOB_EVENT_TYPE_BID_ACCEPTED)
    return await network.get_job(job.id)


# ----------------------------------------------------------------------------------------------- cancel


async def test_another_client_cannot_cancel_and_the_job_and_its_events_stay_as_they_were(network):
    await network.start(compute=[{"noop_delay": 60.0}])
    before = await running_job(network)
    alice, mallory = network.client("alice"), network.client("mallory")
    # mallory signs her call: she is known, and she is not the owner, whatever client_id she writes in
    for request in (
        rpb.CancelJobRequest(job_id=before.job.id),
        rpb.CancelJobRequest(job_id=before.job.id, client_id=alice.client_id),
        rpb.CancelJobRequest(job_id=before.job.id[:8], client_id=alice.client_id, reason="forged"),
    ):
        error = await refused(network, "CancelJob", request, signed(mallory, "CancelJob", request))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "submitted by another client: only that client can cancel it" in error.details()
    with pytest.raises(PermissionDeniedError):
        await network.cancel(before.job.id, client="mallory")
    after = await network.get_job(before.job.id)
    assert list(after.job_events) == list(before.job_events)
    assert after.job_state == before.job_state
    # The owner's signed call cancels it (the client_id field plays no part).
    request = rpb.CancelJobRequest(job_id=before.job.id, client_id="not-me", reason="done")
    response = await call(network, "CancelJob", request, signed(alice, "CancelJob", request))
    assert set(final_row_states_of(response.job).values()) == {S.JOB_STATE_TYPE_CANCELLED}


def final_row_states_of(job: pb.Job) -> dict[str, int]:
    return {node: row.state for node, state in job.state.nodes.items() for row in state.shards.values()}


async def test_an_unsigned_cancel_is_unauthenticated_even_naming_the_owner(network):
    await network.start(compute=[{"noop_delay": 60.0}])
    before = await running_job(network)
    request = rpb.CancelJobRequest(job_id=before.job.id, client_id=network.client("alice").client_id)
    error = await refused(network, "CancelJob", request)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details().startswith(
        "cancelling a job needs your identity: sign the call with your client key"
    )
    after = await network.get_job(before.job.id)
    assert list(after.job_events) == list(before.job_events)
    await network.cancel(before.job.id, client="alice")


async def test_the_cli_cancels_as_the_owner_of_its_key(network, monkeypatch, capsys):
    # `cancel` by the CLI signs its call with the key in $BACALHAU_DIR (no client_id is sent)
    import argparse

    from bacalhau_grpc.cli import query

    await network.start(compute=[{"noop_delay": 60.0}])
    before = await running_job(network)
    parser = argparse.ArgumentParser()
    query.add_parsers(parser.add_subparsers())
    host, port = network.requester.address.rsplit(":", 1)
    args = parser.parse_args(["cancel", before.job.id[:8], "--api-host", host, "--api-port", port])
    monkeypatch.setenv("BACALHAU_DIR", str(network.client("mallory").path.parent))
    with pytest.raises(PermissionDeniedError, match="another client"):
        await query.cmd_cancel(args)
    monkeypatch.setenv("BACALHAU_DIR", str(network.client("alice").path.parent))
    assert await query.cmd_cancel(args) == 0
    assert capsys.readouterr().out == f"Job {before.job.id} cancelled\n"
    info = await network.get_job(before.job.id)
    assert set(final_row_states(info).values()) == {S.JOB_STATE_TYPE_CANCELLED}


# ------------------------------------------------------------------------------------ signature checks


async def test_a_replayed_signature_is_refused_the_second_time(network):
    await network.start(compute=[{"noop_delay": 60.0}])
    before = await running_job(network)
    alice = network.client("alice")
    get = rpb.GetJobRequest(job_id=before.job.id)
    metadata = signed(alice, "GetJob", get)
    assert (await call(network, "GetJob", get, metadata)).job.job.id == before.job.id
    error = await refused(network, "GetJob", get, metadata)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details().startswith("replayed signature")
    # The same for a cancel: the captured call cannot be sent again.
    cancel = rpb.CancelJobRequest(job_id=before.job.id)
    metadata = signed(alice, "CancelJob", cancel)
    await call(network, "CancelJob", cancel, metadata)
    error = await refused(network, "CancelJob", cancel, metadata)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "replayed signature" in error.details()
    # A fresh signature over the same request is a new call.
    await call(network, "GetJob", get, signed(alice, "GetJob", get))


@pytest.mark.parametrize(("offset", "said"), [(-400, "s behind the server's clock"), (400, "s ahead of")])
async def test_a_timestamp_beyond_five_minutes_is_unauthenticated_naming_the_skew(network, offset, said):
    await network.start(nodes=1)
    alice = network.client("alice")
    job = await network.submit(noop_job(), client=alice)
    for name, request in (
        ("CancelJob", rpb.CancelJobRequest(job_id=job.id)),
        ("GetJob", rpb.GetJobRequest(job_id=job.id)),  # a read with a bad signature is refused too
        ("WatchJobEvents", rpb.WatchJobEventsRequest(job_id=job.id)),
    ):
        error = await refused(network, name, request, signed(alice, name, request, now=time.time() + offset))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert said in error.details() and "at most 300 s either way" in error.details()
        assert re.search(r"timestamp is (399\.\d|400\.\d) s ", error.details()), error.details()


async def test_a_signature_over_another_method_or_other_request_bytes_is_refused(network):
    await network.start(compute=[{"noop_delay": 60.0}])
    before = await running_job(network)
    other = await network.submit(noop_job(timeout=120), client="alice")
    alice, mallory = network.client("alice"), network.client("mallory")
    cancel = rpb.CancelJobRequest(job_id=before.job.id)
    alices = signed(alice, "CancelJob", cancel)
    attempts = [
        # signed for GetJob, sent to CancelJob
        (cancel, signed(alice, "GetJob", rpb.GetJobRequest(job_id=before.job.id))),
        # signed for cancelling the other job
        (cancel, signed(alice, "CancelJob", rpb.CancelJobRequest(job_id=other.id))),
        # signed with another reason
        (cancel, signed(alice, "CancelJob", rpb.CancelJobRequest(job_id=before.job.id, reason="x"))),
        # alice's signature presented with mallory's key
        (cancel, [(k, mallory.public_key_bytes if k == CLIENT_KEY_METADATA else v) for k, v in alices]),
    ]
    for request, metadata in attempts:
        error = await refused(network, "CancelJob", request, metadata)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "signature does not match its method (/bacalhau.requester.v1.RequesterService/CancelJob)" in (
            error.details()
        )
    incomplete = [(k, v) for k, v in signed(alice, "CancelJob", cancel) if k != SIGNATURE_METADATA]
    error = await refused(network, "CancelJob", cancel, incomplete)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "incomplete: bacalhau-signature-bin missing" in error.details()
    garbled = [(k, "soon" if k == TIMESTAMP_METADATA else v) for k, v in signed(alice, "CancelJob", cancel)]
    error = await refused(network, "CancelJob", cancel, garbled)
    assert "unix milliseconds as decimal digits, got 'soon'" in error.details()
    after = await network.get_job(before.job.id)
    assert list(after.job_events) == list(before.job_events)


async def test_compute_nodes_are_not_asked_for_client_signatures(network):
    await network.start(nodes=1)
    node = network.computes[0]
    # a heartbeat with nonsense in the client metadata is still a heartbeat: the node protocol is a
    # service of its own, where client signatures are not looked at
    request = rpb.HeartbeatRequest(node_id=node.node_id)
    await channels.call(network.node_stub.Heartbeat, request, metadata=[(SIGNATURE_METADATA, b"nonsense")])
    job = await network.submit(noop_job(), client="alice")
    events = await network.wait_for_end(job.id)
    assert events[-1].event_name == E.JOB_EVENT_TYPE_RESULTS_PUBLISHED


async def test_a_signed_call_may_submit_an_unsigned_payload_owned_by_the_caller(network):
    await network.start(nodes=1)
    alice = network.client("alice")
    request = rpb.SubmitJobRequest(payload=pb.JobCreatePayload(client_id="someone-else", job=noop_job()))
    error = await refused(network, "SubmitJob", request)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "submissions must be signed" in error.details()
    job = (await call(network, "SubmitJob", request, signed(alice, "SubmitJob", request))).job
    assert job.client_id == alice.client_id
    await network.cancel(job.id, client="alice")


# ----------------------------------------------------------------------------------------- visibility


async def test_public_visibility_lets_anyone_read_anonymously(network):
    await network.start(compute=[{"noop_stdout": "hello\n"}])
    assert network.requester.settings.job_visibility == "public"
    job = await network.submit(noop_job(), client="alice")
    await network.wait_for_end(job.id)  # an anonymous WatchJobEvents
    assert (await call(network, "GetJob", rpb.GetJobRequest(job_id=job.id[:8]))).job.job.id == job.id
    listed = await call(network, "ListJobs", rpb.ListJobsRequest())
    assert [j.id for j in listed.jobs] == [job.id]
    events = await call(network, "ListJobEvents", rpb.ListJobEventsRequest(job_id=job.id))
    assert len(events.events) == 6
    results = await call(network, "GetJobResults", rpb.GetJobResultsRequest(job_id=job.id))
    assert len(results.results) == 1
    async with grpc.aio.insecure_channel(network.requester.address) as channel:
        logs = rgrpc.RequesterServiceStub(channel).StreamJobLogs(rpb.StreamJobLogsRequest(job_id=job.id))
        assert b"".join([piece.data async for piece in logs if not piece.stderr]) == b"hello\n"
    # another signed-in client reads it as well
    async with sdk(network, network.client("bob")) as bob:
        assert (await bob.get(job.id)).job.id == job.id
        assert [j.id async for j in bob.list(all_clients=True)] == [job.id]


async def test_owner_visibility_shows_a_job_to_its_owner_only(network, tmp_path):
    await network.start(compute=[{"noop_stdout": "hello\n"}], job_visibility="owner")
    alice_key, bob_key = network.client("alice"), network.client("bob")
    published = noop_job()
    published.spec.publisher = pb.Publisher.PUBLISHER_LOCAL  # downloadable results
    job = await network.submit(published, client=alice_key)  # the payload's signature decides the owner
    bobs = await network.submit(noop_job(), client=bob_key)
    async with sdk(network, alice_key) as alice, sdk(network, bob_key) as bob:
        events = [e async for e in alice.events(job.id, follow=True)]
        assert events[-1].event_name.name == "RESULTS_PUBLISHED"
        assert len([e async for e in alice.events(job.id)]) == len(events)
        assert (await alice.get(job.id[:8])).job.id == job.id
        assert [j.id async for j in alice.list(all_clients=True)] == [job.id]
        assert len(await alice.results(job.id)) == 1
        assert b"".join([p.data async for p in alice.logs(job.id)]) == b"hello\n"
        folder = await alice.download(job.id, tmp_path / "out")
        assert (folder / "combined_results" / "stdout").read_text() == "hello\n"

        # bob: not found, as if the job did not exist; his listings hold only his own jobs
        for prefix in (job.id, job.id[:8]):
            with pytest.raises(NotFoundError, match=f"job {prefix} not found"):
                await bob.get(prefix)
        with pytest.raises(NotFoundError):
            [e async for e in bob.events(job.id)]
        with pytest.raises(NotFoundError):
            [e async for e in bob.events(job.id, follow=True)]
        with pytest.raises(NotFoundError):
            await bob.results(job.id)
        with pytest.raises(NotFoundError):
            [p async for p in bob.logs(job.id)]
        with pytest.raises(NotFoundError):
            await bob.cancel(job.id)
        with pytest.raises(NotFoundError):
            await bob.download(job.id, tmp_path / "bob")
        assert [j.id async for j in bob.list(all_clients=True)] == [bobs.id]
        assert [j.id async for j in bob.list(client_id=alice_key.client_id)] == []
        assert (await bob.get(bobs.id)).job.id == bobs.id

    # anonymous: refused, saying why; the version and submissions need no identity
    for name, request in (
        ("GetJob", rpb.GetJobRequest(job_id=job.id)),
        ("ListJobs", rpb.ListJobsRequest()),
        ("ListJobEvents", rpb.ListJobEventsRequest(job_id=job.id)),
        ("WatchJobEvents", rpb.WatchJobEventsRequest(job_id=job.id)),
        ("GetJobResults", rpb.GetJobResultsRequest(job_id=job.id)),
        ("StreamJobLogs", rpb.StreamJobLogsRequest(job_id=job.id)),
    ):
        error = await refused(network, name, request)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, name
        assert "job visibility owner" in error.details() and "needs your identity" in error.details()
    assert (await call(network, "GetVersion", rpb.GetVersionRequest())).version.git_version


def test_job_visibility_is_a_requester_setting(tmp_path):
    settings = RequesterSettings.from_env({}, data_dir=tmp_path, verifier_address="127.0.0.1:1")
    assert settings.job_visibility == "public"
    env = {"BACALHAU_JOB_VISIBILITY": "owner", "BACALHAU_VERIFIER_ADDRESS": "127.0.0.1:1"}
    assert RequesterSettings.from_env(env, data_dir=tmp_path).job_visibility == "owner"
    with pytest.raises(InvalidArgumentError, match="'everyone' is not one of public, owner") as raised:
        RequesterSettings.from_env({**env, "BACALHAU_JOB_VISIBILITY": "everyone"}, data_dir=tmp_path)
    assert "--job-visibility" in str(raised.value)


def test_serve_takes_job_visibility_as_a_flag():
    import argparse

    from bacalhau_grpc.cli import serve

    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--node-type", "requester", "--job-visibility", "owner"])
    assert args.job_visibility == "owner"


async def test_an_anonymous_caller_is_unauthenticated_not_not_found_under_owner(network):
    await network.start(nodes=1, job_visibility="owner")
    error = await refused(network, "GetJob", rpb.GetJobRequest(job_id="no-such-job"))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    async with sdk(network, network.client("bob")) as bob:
        with pytest.raises(NotFoundError, match="job no-such-job not found"):
            await bob.get("no-such-job")


# ------------------------------------------------------------------------------------------ the hook


async def test_the_servers_hook_gives_each_concurrent_call_its_own_caller():
    class Servicer(rgrpc.RequesterServiceServicer):
        async def GetJob(self, request, context):
            before = current_caller()
            await asyncio.sleep(random.random() / 100)  # other calls run meanwhile
            assert current_caller() == before == Caller(request.job_id or None)
            return rpb.GetJobResponse()

    def hook(method, request, context):
        assert method == f"/{SERVICE}/GetJob"
        return Caller(dict(context.invocation_metadata()).get("who"))

    binding = ServiceBinding(
        rgrpc.add_RequesterServiceServicer_to_server, Servicer(), SERVICE, authenticate=hook
    )
    running = await start_server(component="test", node_id="node-test", services=[binding])
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = rgrpc.RequesterServiceStub(channel)
            who = [f"client-{i}" if i % 3 else "" for i in range(200)]
            await asyncio.gather(
                *(
                    stub.GetJob(rpb.GetJobRequest(job_id=w), metadata=[("who", w)] if w else None, timeout=10)
                    for w in who
                )
            )
    finally:
        await running.stop(0)
