"""The Python SDK (`bacalhau_grpc.sdk`) against a real network (requester, verifier and compute nodes as
gRPC servers on 127.0.0.1:0): every method of `Client`, and `SyncClient` from plain threads."""

import asyncio
import datetime

import pytest

from bacalhau_grpc.common.errors import (
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.sdk import Client, SyncClient, api_address
from bacalhau_grpc.sdk import sdk_types as m
from tests.integration.network import Network


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    await net.start(compute=[{"noop_stdout": "hello from the sdk\n", "noop_stderr": "a warning\n"}])
    yield net
    await net.stop()


@pytest.fixture
async def client(network, tmp_path):
    async with Client(network.requester.address, key=ClientKey.load_or_create(tmp_path / "me")) as sdk_client:
        yield sdk_client


def noop(
    *, publisher: m.Publisher = m.Publisher.LOCAL, delay: float = 0.0, tags: tuple[str, ...] = ()
) -> m.Job:
    job = m.Job(
        spec=m.Spec(
            engine=m.Engine.NOOP, verifier=m.Verifier.NOOP, publisher=publisher, annotations=list(tags)
        ),
        deal=m.Deal(concurrency=1),
    )
    if delay:
        job.spec.timeout = 60
    return job


async def ended(client: Client, job_id: str) -> list[m.JobEvent]:
    return [event async for event in client.events(job_id, follow=True)]


async def test_submit_follow_get_results_and_download(client, tmp_path):
    job = await client.submit(noop())
    assert isinstance(job, m.Job) and len(job.id) == 36
    assert job.client_id == client.client_id
    assert isinstance(job.created_at, datetime.datetime)
    events = await ended(client, job.id)
    assert [e.event_name for e in events] == [
        m.JobEventType.CREATED,
        m.JobEventType.BID,
        m.JobEventType.BID_ACCEPTED,
        m.JobEventType.RESULTS_PROPOSED,
        m.JobEventType.RESULTS_ACCEPTED,
        m.JobEventType.RESULTS_PUBLISHED,
    ]
    assert events[3].run_output.stdout == "hello from the sdk\n"
    info = await client.get(job.id[:8])  # a unique prefix is enough
    assert info.job.id == job.id
    rows = [shard for node in info.job_state.nodes.values() for shard in node.shards.values()]
    assert [row.state for row in rows] == [m.JobStateType.COMPLETED]
    results = await client.results(job.id)
    assert len(results) == 1 and results[0].data.cid.startswith("bafy")
    folder = await client.download(job.id, tmp_path / "out")
    assert (folder / "combined_results" / "stdout").read_text() == "hello from the sdk\n"
    assert (folder / "combined_results" / "stderr").read_text() == "a warning\n"
    assert [p.name for p in (folder / "raw").iterdir()] == [results[0].data.cid]


async def test_events_without_follow_and_after_a_sequence_number(client):
    job = await client.submit(noop())
    await ended(client, job.id)
    listed = [e async for e in client.events(job.id)]
    assert len(listed) == 6
    tail = [e async for e in client.events(job.id, after=4)]
    assert tail == listed[4:]
    followed_tail = [e async for e in client.events(job.id, follow=True, after=4)]
    assert [e.event_name for e in followed_tail] == [e.event_name for e in listed[4:]]


async def test_list_pages_filters_and_sorts(client, network, tmp_path):
    mine = [await client.submit(noop(publisher=m.Publisher.NOOP, tags=("sdk-test",))) for _ in range(5)]
    async with Client(network.requester.address, key=ClientKey.load_or_create(tmp_path / "other")) as other:
        theirs = await other.submit(noop(publisher=m.Publisher.NOOP))
    ids = [job.id for job in mine]
    newest_first = [job.id async for job in client.list(page_size=2)]
    assert newest_first == ids[::-1]  # 3 pages of at most 2
    assert [job.id async for job in client.list(limit=3, page_size=2)] == ids[::-1][:3]
    assert [job.id async for job in client.list(sort_by="id", reverse=False)] == sorted(ids)
    assert [job.id async for job in client.list(id_prefix=ids[2][:8])] == [ids[2]]
    everyone = {job.id async for job in client.list(all_clients=True)}
    assert everyone == {*ids, theirs.id}
    assert [job.id async for job in client.list(include_tags=["sdk-test"], all_clients=True)] == ids[::-1]
    assert [job.id async for job in client.list(exclude_tags=["sdk-test"], all_clients=True)] == [theirs.id]
    assert [job.id async for job in client.list(limit=0)] == []
    with pytest.raises(InvalidArgumentError, match="sort_by"):
        [job async for job in client.list(sort_by="size")]
    first = await client.list_page(page_size=2)
    second = await client.list_page(page_size=2, page_token=first.next_page_token)
    last = await client.list_page(page_size=2, page_token=second.next_page_token)
    assert [j.id for page in (first, second, last) for j in page.jobs] == ids[::-1]
    assert first.next_page_token and second.next_page_token and not last.next_page_token
    with pytest.raises(InvalidArgumentError, match="page token"):
        await client.list_page(page_token="not-a-token")


async def test_cancel_stops_a_running_job_and_only_its_owner_may(client, network, tmp_path):
    node = network.computes[0].node
    node.executors[m.Engine.NOOP.value].delay = 30.0  # runs until cancelled
    job = await client.submit(noop(delay=30.0))
    await network.wait_until(lambda: node.active_executions() == 1, what="the run to start")
    async with Client(network.requester.address, key=ClientKey.load_or_create(tmp_path / "other")) as other:
        with pytest.raises(PermissionDeniedError):
            await other.cancel(job.id)
    cancelled = await client.cancel(job.id, reason="changed my mind")
    assert cancelled.id == job.id
    events = await ended(client, job.id)
    assert any("changed my mind" in e.status for e in events)
    await network.wait_until(lambda: node.active_executions() == 0, what="the run to stop")


async def test_version_and_clear_errors(client, network):
    version = await client.version()
    assert version.git_version and version.major is not None
    with pytest.raises(NotFoundError, match="job no-such-job not found"):
        await client.get("no-such-job")
    async with Client("127.0.0.1:1", timeout=2, retry_timeout=0) as nowhere:
        with pytest.raises(UnavailableError, match=r"cannot reach the requester at 127\.0\.0\.1:1"):
            await nowhere.version()


async def test_sync_client_from_a_thread(network, tmp_path):
    key = ClientKey.load_or_create(tmp_path / "sync")

    def use_it() -> tuple[str, list[m.JobEventType], list[str], str]:
        with SyncClient(network.requester.address, key=key) as sync:
            job = sync.submit(noop(publisher=m.Publisher.NOOP))
            followed = [e.event_name for e in sync.events(job.id, follow=True)]
            listed = [j.id for j in sync.list()]
            return job.id, followed, listed, sync.get(job.id).job.id

    job_id, followed, listed, got = await asyncio.to_thread(use_it)
    assert followed[-1] == m.JobEventType.RESULTS_PUBLISHED
    assert listed == [job_id] and got == job_id


def test_the_address_comes_from_arguments_then_environment_then_defaults():
    assert api_address(None, None, {}) == "127.0.0.1:1234"
    env = {"BACALHAU_API_HOST": "10.0.0.1", "BACALHAU_API_PORT": "999"}
    assert api_address(None, None, env) == "10.0.0.1:999"
    assert api_address("h", 5, env) == "h:5"
    with pytest.raises(InvalidArgumentError, match="BACALHAU_API_PORT must be a port number, got 'x'"):
        api_address(None, None, {"BACALHAU_API_PORT": "x"})
    with pytest.raises(InvalidArgumentError, match="the API port must be between 1 and 65535, got 70000"):
        api_address(None, 70000, {})


async def test_logs_while_the_job_runs_and_after_it_ended(client, network):
    node = network.computes[0].node
    node.executors[m.Engine.NOOP.value].delay = 2.0  # the run lasts 2 s after writing its output
    job = await client.submit(noop())
    pieces, running_at_first_piece = [], None
    async for piece in client.logs(job.id, follow=True):
        if not pieces:
            running_at_first_piece = node.active_executions() == 1
        pieces.append(piece)
    assert running_at_first_piece is True
    assert b"".join(p.data for p in pieces if not p.stderr) == b"hello from the sdk\n"
    assert b"".join(p.data for p in pieces if p.stderr) == b"a warning\n"
    assert {(p.node_id, p.shard_index) for p in pieces} == {(node.node_id, 0)}
    assert (await client.get(job.id)).job.id == job.id
    later = [p async for p in client.logs(job.id)]
    assert b"".join(p.data for p in later if not p.stderr) == b"hello from the sdk\n"
    with pytest.raises(NotFoundError):
        [p async for p in client.logs("no-such-job")]
