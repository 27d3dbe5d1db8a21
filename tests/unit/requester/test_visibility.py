"""Job visibility in the requester's domain (services/requester/domain/visibility.py): under `owner` a
caller finds only its own jobs (by ID, by prefix, in listings), anonymous callers are refused; under
`public` anyone reads anything; cancelling is the owner's alone."""

import pytest

from bacalhau_grpc.common.errors import NotFoundError, PermissionDeniedError, UnauthenticatedError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.lifecycle import Requester
from bacalhau_grpc.requester.store.sqlite import RequesterStore
from tests.unit.requester.fakes import FakeCompute, FakeVerifier


async def started(tmp_path, visibility: str) -> Requester:
    store = RequesterStore(tmp_path / f"{visibility}.db")
    await store.open()
    requester = Requester(
        node_id="requester-test",
        store=store,
        compute=FakeCompute(),
        verifier=FakeVerifier(),
        job_visibility=visibility,
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
async def owner_only(tmp_path):
    requester = await started(tmp_path, "owner")
    yield requester
    await stopped(requester)


async def test_a_prefix_matches_only_the_callers_jobs_and_others_are_not_found(owner_only):
    r = owner_only
    alice = await r.submit(payload("alice"))
    # bob's jobs until one starts like alice's: for bob the prefix is ambiguous, for alice it is hers
    bobs = []
    while not any(b.id[0] == alice.id[0] for b in bobs):
        bobs.append(await r.submit(payload("bob")))
    same = next(b for b in bobs if b.id[0] == alice.id[0])
    assert (await r.get_job(alice.id[0], caller="alice")).job.id == alice.id
    if sum(b.id[0] == alice.id[0] for b in bobs) == 1:
        assert (await r.get_job(alice.id[0], caller="bob")).job.id == same.id
    for caller, other in (("bob", alice.id), ("alice", same.id)):
        for asked in (other, other[:13]):
            with pytest.raises(NotFoundError, match=f"job {asked} not found"):
                await r.get_job(asked, caller=caller)
            with pytest.raises(NotFoundError):
                await r.list_job_events(asked, caller=caller)
            with pytest.raises(NotFoundError):
                await r.watch_job_events(asked, caller=caller)
            with pytest.raises(NotFoundError):
                await r.get_job_results(asked, caller=caller)
            with pytest.raises(NotFoundError):
                await r.job_record(asked, caller=caller)
            with pytest.raises(NotFoundError):  # cancel does not reveal it either
                await r.cancel_job(asked, client_id=caller)
    jobs, _ = await r.list_jobs(caller="alice")
    assert [j.id for j in jobs] == [alice.id]
    jobs, _ = await r.list_jobs(caller="bob", sort_by="id")
    assert [j.id for j in jobs] == sorted(b.id for b in bobs)
    assert await r.list_jobs(caller="bob", client_id="alice") == ([], "")
    for read in (
        r.get_job(alice.id),
        r.list_jobs(),
        r.list_job_events(alice.id),
        r.watch_job_events(alice.id),
        r.get_job_results(alice.id),
        r.job_record(alice.id),
    ):
        with pytest.raises(UnauthenticatedError, match="job visibility owner"):
            await read


async def test_public_jobs_are_read_by_anyone_and_cancelled_by_their_owner_only(tmp_path):
    r = await started(tmp_path, "public")
    try:
        job = await r.submit(payload("alice"))
        assert (await r.get_job(job.id[:8])).job.id == job.id
        assert (await r.get_job(job.id, caller="bob")).job.id == job.id
        assert [j.id for j in (await r.list_jobs(caller="bob"))[0]] == [job.id]
        assert [j.id for j in (await r.list_jobs(client_id="alice"))[0]] == [job.id]
        with pytest.raises(UnauthenticatedError, match="cancelling a job needs your identity"):
            await r.cancel_job(job.id)
        with pytest.raises(PermissionDeniedError, match="submitted by another client"):
            await r.cancel_job(job.id, client_id="bob")
        await r.cancel_job(job.id, client_id="alice")
    finally:
        await stopped(r)


def test_an_unknown_visibility_is_refused():
    with pytest.raises(ValueError, match="public, owner"):
        Requester(
            node_id="r", store=None, compute=FakeCompute(), verifier=FakeVerifier(), job_visibility="friends"
        )
