"""Fair share in the requester's domain (domain/fair_share.py): per-client counts of jobs in progress and of
followers, refused at once with ResourceExhaustedError (and a retry hint) at the limit, freed when a job or
a follower ends, rebuilt from the store at start."""

import asyncio

import pytest

from bacalhau_grpc.common import grpc_errors
from bacalhau_grpc.common.errors import InvalidArgumentError, ResourceExhaustedError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.fair_share import ANONYMOUS_BUCKET, RETRY_AFTER, ClientCounts
from bacalhau_grpc.requester.domain.lifecycle import Requester
from bacalhau_grpc.requester.settings import RequesterSettings
from bacalhau_grpc.requester.store.sqlite import RequesterStore
from tests.unit.requester.fakes import FakeCompute, FakeVerifier, eventually


async def started(path, **limits) -> Requester:
    store = RequesterStore(path)
    await store.open()
    requester = Requester(
        node_id="requester-test", store=store, compute=FakeCompute(), verifier=FakeVerifier(), **limits
    )
    await requester.start()
    return requester


async def stopped(requester: Requester) -> None:
    await requester.stop(1.0)
    await requester.store.close()


def payload(client: str) -> pb.JobCreatePayload:
    p = pb.JobCreatePayload(client_id=client)
    p.job.spec.engine = pb.Engine.ENGINE_NOOP
    p.job.deal.concurrency = 1
    return p


@pytest.fixture
async def requester(tmp_path):
    # No compute node: every job waits for bids (until its negotiation timeout, far away).
    r = await started(
        tmp_path / "r.db", max_active_jobs=4, max_active_jobs_per_client=2, max_followers_per_client=1
    )
    yield r
    await stopped(r)


def test_client_counts_are_per_client_and_anonymous_callers_share_one_bucket():
    counts = ClientCounts(2, what="things", setting="max_things", until="one ends")
    counts.add("a")
    counts.add(None)
    counts.add("")
    assert (counts.count("a"), counts.count(None), counts.count(ANONYMOUS_BUCKET)) == (1, 2, 2)
    counts.check("a")
    with pytest.raises(
        ResourceExhaustedError, match=r"client anonymous has 2 things.*max_things=2"
    ) as raised:
        counts.check(None)
    assert raised.value.retry_after == RETRY_AFTER
    counts.remove("a")
    assert counts.count("a") == 0 and len(counts) == 1  # no entry left for a client holding none
    with counts.held("a"):
        assert counts.count("a") == 1
    assert counts.count("a") == 0
    assert ClientCounts(None, what="x", setting="x", until="x").check("a") is None  # None: no limit


async def test_a_client_at_its_limit_is_refused_at_once_and_others_still_get_in(requester):
    r = requester
    flooder = [await r.submit(payload("flooder")) for _ in range(2)]
    assert r.client_active_jobs("flooder") == 2
    with pytest.raises(ResourceExhaustedError, match="client flooder has 2 jobs in progress") as raised:
        await r.submit(payload("flooder"))
    assert raised.value.retry_after == RETRY_AFTER
    await r.submit(payload("other"))
    await r.submit(payload("other"))
    assert r.active_jobs == 4  # the requester is full: "other" waits for room, the flooder is refused
    waiting = asyncio.ensure_future(r.submit(payload("third")))
    with pytest.raises(ResourceExhaustedError):
        await asyncio.wait_for(r.submit(payload("flooder")), 5)
    assert not waiting.done()
    # A job ending frees a place for its client and one in the requester.
    await r.cancel_job(flooder[0].id, client_id="flooder")
    await eventually(lambda: r.client_active_jobs("flooder") == 1, what="the cancelled job ended")
    job = await asyncio.wait_for(waiting, 5)
    assert job.client_id == "third"
    await r.cancel_job(flooder[1].id, client_id="flooder")
    await eventually(lambda: r.client_active_jobs("flooder") == 0, what="the cancelled job ended")
    assert (await asyncio.wait_for(r.submit(payload("flooder")), 5)).client_id == "flooder"


async def test_concurrent_submissions_of_one_client_do_not_overshoot(requester):
    results = await asyncio.gather(
        *(requester.submit(payload("c")) for _ in range(4)), return_exceptions=True
    )
    assert sum(isinstance(x, pb.Job) for x in results) == 2
    assert sum(isinstance(x, ResourceExhaustedError) for x in results) == 2
    assert requester.client_active_jobs("c") == 2


async def test_counts_are_rebuilt_from_the_store_at_start(tmp_path):
    r = await started(tmp_path / "r.db", max_active_jobs_per_client=2)
    for client in ("a", "a", "b"):
        await r.submit(payload(client))
    await stopped(r)
    r = await started(tmp_path / "r.db", max_active_jobs_per_client=2)
    try:
        assert (r.client_active_jobs("a"), r.client_active_jobs("b")) == (2, 1)
        with pytest.raises(ResourceExhaustedError):
            await r.submit(payload("a"))
        await r.submit(payload("b"))
    finally:
        await stopped(r)


async def test_followers_per_client(requester):
    r = requester
    job = await r.submit(payload("a"))
    first = await r.watch_job_events(job.id, caller="a")
    assert (await anext(first))[0] == 1
    assert r.client_followers("a") == 1
    second = await r.watch_job_events(job.id, caller="a")
    with pytest.raises(ResourceExhaustedError, match="client a has 1 streams following jobs"):
        await anext(second)
    anonymous = await r.watch_job_events(job.id)  # another bucket
    assert (await anext(anonymous))[0] == 1
    assert r.client_followers(None) == 1
    await first.aclose()
    await anonymous.aclose()
    assert (r.client_followers("a"), r.client_followers(None)) == (0, 0)
    again = await r.watch_job_events(job.id, caller="a")
    assert (await anext(again))[0] == 1
    await again.aclose()


def test_the_retry_hint_travels_as_retry_info():
    error = ResourceExhaustedError("client a has 2 jobs in progress", retry_after=1.5)
    status = grpc_errors.to_status(error)
    back = grpc_errors.error_from_status(status.code, status.details, status.trailing_metadata)
    assert type(back) is ResourceExhaustedError and str(back) == str(error)
    assert back.retry_after == 1.5
    plain = grpc_errors.to_status(ResourceExhaustedError("full"))
    assert (
        grpc_errors.error_from_status(plain.code, plain.details, plain.trailing_metadata).retry_after is None
    )


def test_settings_defaults_and_bounds():
    s = RequesterSettings(verifier_address="v:1")
    assert (s.max_active_jobs_per_client, s.max_followers_per_client, s.max_concurrent_rpcs) == (64, 32, 1000)
    assert RequesterSettings.from_env({"BACALHAU_MAX_FOLLOWERS_PER_CLIENT": "3"}, verifier_address="v:1")
    assert s.client_job_limit == 64
    # At or above max_active_jobs it is off: one client may fill the requester, then waits for room.
    assert RequesterSettings(verifier_address="v:1", max_active_jobs=64).client_job_limit is None
    assert RequesterSettings(verifier_address="v:1", max_active_jobs=1).client_job_limit is None
    for name in ("max_active_jobs_per_client", "max_followers_per_client", "max_concurrent_rpcs"):
        with pytest.raises(InvalidArgumentError, match="not a whole number above 0"):
            RequesterSettings(verifier_address="v:1", **{name: 0})
