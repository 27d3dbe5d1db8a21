"""Idempotent submission (domain/submissions.py): a client-chosen submission ID names one job of that client.

The requester domain with a real SQLite store (reopened for the restart cases) and stand-in compute nodes;
concurrent submissions are held at a real suspension point of `submit` (the listing of a sharded job's
input) so the twins truly overlap."""

import asyncio

import pytest

from bacalhau_grpc.common import failpoints, grpc_errors
from bacalhau_grpc.common.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from bacalhau_grpc.common.model import pb, sharding
from bacalhau_grpc.requester.domain.lifecycle import Requester
from bacalhau_grpc.requester.domain.ports import SubmissionRecord
from bacalhau_grpc.requester.domain.submissions import Submissions, submission_digest
from bacalhau_grpc.requester.domain.validation import SUBMISSION_ID_FIELD, submission_problems
from bacalhau_grpc.requester.store.sqlite import RequesterStore
from tests.unit.requester.fakes import Harness
from tests.unit.requester.test_lifecycle import payload

# A valid CID (the empty folder's): the sharded job's input, listed by the test's `listing`.
CID = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
IPFS = pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS


def with_id(p: pb.JobCreatePayload, submission_id: str) -> pb.JobCreatePayload:
    p.submission_id = submission_id
    return p


def sharded(submission_id: str, client: str = "client-1") -> pb.JobCreatePayload:
    """A job whose input is listed at submission (an await inside `submit`, before the job is made)."""
    p = with_id(payload(client=client), submission_id)
    p.job.spec.inputs.append(pb.StorageSpec(storage_source=IPFS, cid=CID, path="/inputs"))
    p.job.spec.sharding.glob_pattern = "/inputs/*.txt"
    p.job.spec.sharding.batch_size = 1
    return p


class HeldListing:
    """The requester's input listing, held until released; counts its calls, fails the first `fail`."""

    def __init__(self, fail: int = 0) -> None:
        self.calls = 0
        self.fail = fail
        self.release = asyncio.Event()

    async def __call__(self, volume: pb.StorageSpec) -> sharding.Listing:
        self.calls += 1
        await self.release.wait()
        if self.calls <= self.fail:
            raise NotFoundError(f"content {volume.cid} is not here")
        return [("", True), ("a.txt", False), ("b.txt", False)]


async def job_count(r: Requester, client_id: str = "") -> int:
    jobs, _ = await r.list_jobs(client_id=client_id, page_size=1000)
    return len(jobs)


async def test_the_same_id_and_payload_returns_the_first_job_and_makes_no_other(harness):
    r = harness.requester
    first = await r.submit(with_id(payload(tags=["x"]), "retry-1"))
    again = await r.submit(with_id(payload(tags=["x"]), "retry-1"))
    assert again.id == first.id
    assert again.created_at == first.created_at and again.spec == first.spec
    assert again.state == first.state  # its current state, filled as a new job's is
    assert await job_count(r) == 1 and r.submitted == 1 and r.active_jobs == 1
    info = await r.get_job(first.id)
    assert [e.event_name for e in info.job_events] == [pb.JobEventType.JOB_EVENT_TYPE_CREATED]


async def test_the_same_id_with_another_payload_is_refused_naming_the_id_and_the_job(harness):
    r = harness.requester
    first = await r.submit(with_id(payload(tags=["x"]), "retry-2"))
    with pytest.raises(AlreadyExistsError) as refused:
        await r.submit(with_id(payload(tags=["y"]), "retry-2"))
    assert "'retry-2'" in str(refused.value) and first.id in str(refused.value)
    assert grpc_errors.code_for(refused.value).name == "ALREADY_EXISTS"
    with pytest.raises(AlreadyExistsError):
        await r.submit(with_id(payload(tags=["x"], concurrency=2), "retry-2"))  # another deal
    assert await job_count(r) == 1


async def test_fields_the_requester_owns_do_not_make_another_payload(harness):
    """The job's ID, creation time and state are the requester's: a client that filled them differently
    still sent the same submission."""
    r = harness.requester
    a = with_id(payload(), "owned-fields")
    b = with_id(payload(), "owned-fields")
    b.job.id = "made-up"
    b.job.created_at.FromSeconds(12345)
    b.job.requester_node_id = "someone"
    assert submission_digest(a) == submission_digest(b)
    first = await r.submit(a)
    assert (await r.submit(b)).id == first.id
    c = with_id(payload(), "owned-fields")
    c.context = b"not the same context"
    assert submission_digest(c) != submission_digest(a)


async def test_without_an_id_every_submission_makes_a_job(harness):
    r = harness.requester
    ids = {(await r.submit(payload())).id for _ in range(3)}
    assert len(ids) == 3 and await job_count(r) == 3


async def test_different_clients_with_the_same_id_get_a_job_each(harness):
    r = harness.requester
    alice = await r.submit(with_id(payload(client="alice"), "same-id"))
    bob = await r.submit(with_id(payload(client="bob"), "same-id"))
    assert alice.id != bob.id
    assert (alice.client_id, bob.client_id) == ("alice", "bob")
    assert (await r.submit(with_id(payload(client="bob"), "same-id"))).id == bob.id
    assert await job_count(r) == 2


async def test_concurrent_identical_submissions_make_one_job(tmp_path):
    listing = HeldListing()
    h = Harness(tmp_path, listing=listing)
    r = await h.start()
    try:
        twins = [asyncio.create_task(r.submit(sharded("twins"))) for _ in range(4)]
        other = asyncio.create_task(r.submit(sharded("twins", client="other-client")))
        # Every submission is under way: the first of each key is listing its input, the others wait.
        while listing.calls < 2:
            await asyncio.sleep(0)
        assert not any(t.done() for t in [*twins, other])
        listing.release.set()
        jobs = await asyncio.gather(*twins)
        assert len({job.id for job in jobs}) == 1
        assert jobs[0].execution_plan.total_shards == 2
        assert listing.calls == 2  # one listing per key: the twins never started their own
        assert (await other).id != jobs[0].id
        assert await job_count(r, "client-1") == 1 and await job_count(r) == 2
    finally:
        await h.stop()


async def test_concurrent_twins_with_another_payload_are_refused(tmp_path):
    listing = HeldListing()
    h = Harness(tmp_path, listing=listing)
    r = await h.start()
    try:
        first = asyncio.create_task(r.submit(sharded("twins")))
        changed = sharded("twins")
        changed.job.spec.annotations.append("changed")
        second = asyncio.create_task(r.submit(changed))
        while listing.calls < 1:
            await asyncio.sleep(0)
        listing.release.set()
        job = await first
        with pytest.raises(AlreadyExistsError, match=job.id):
            await second
        assert listing.calls == 1 and await job_count(r) == 1
    finally:
        await h.stop()


async def test_a_twin_goes_on_by_itself_when_the_first_submission_fails(tmp_path):
    listing = HeldListing(fail=1)  # the first listing fails: the first submission is refused
    h = Harness(tmp_path, listing=listing)
    r = await h.start()
    try:
        first = asyncio.create_task(r.submit(sharded("flaky")))
        second = asyncio.create_task(r.submit(sharded("flaky")))
        while listing.calls < 1:
            await asyncio.sleep(0)
        listing.release.set()
        with pytest.raises(InvalidArgumentError, match="cannot shard input"):
            await first
        job = await second
        assert listing.calls == 2 and job.execution_plan.total_shards == 2
        assert (await r.submit(sharded("flaky"))).id == job.id
        assert await job_count(r) == 1
    finally:
        await h.stop()


async def test_after_a_restart_the_id_still_names_its_job(tmp_path):
    h = Harness(tmp_path)
    r = await h.start()
    try:
        first = await r.submit(with_id(payload(tags=["keep"]), "durable-1"))
        r = await h.restart()  # the store is closed and reopened: nothing of it is in memory
        assert r._submissions.uncommitted == 0
        again = await r.submit(with_id(payload(tags=["keep"]), "durable-1"))
        assert again.id == first.id and again.created_at == first.created_at
        with pytest.raises(AlreadyExistsError, match=first.id):
            await r.submit(with_id(payload(tags=["other"]), "durable-1"))
        assert await job_count(r) == 1 and r.submitted == 0
        assert h.store.find_submission("client-1", "durable-1") == SubmissionRecord(
            job_id=first.id, digest=submission_digest(with_id(payload(tags=["keep"]), "durable-1"))
        )
    finally:
        await h.stop()


async def test_a_client_at_its_limit_still_gets_the_job_its_retry_names(tmp_path):
    h = Harness(tmp_path, max_active_jobs_per_client=1)
    r = await h.start()
    try:
        first = await r.submit(with_id(payload(), "limited-1"))  # no compute node: it stays active
        assert r.client_active_jobs("client-1") == 1
        assert (await r.submit(with_id(payload(), "limited-1"))).id == first.id
        with pytest.raises(ResourceExhaustedError):
            await r.submit(with_id(payload(), "limited-2"))  # a new job: over the limit
        with pytest.raises(AlreadyExistsError):  # a changed payload is refused as such, not as over the limit
            await r.submit(with_id(payload(tags=["x"]), "limited-1"))
        assert await job_count(r) == 1 and r.client_active_jobs("client-1") == 1
    finally:
        await h.stop()


@pytest.mark.parametrize(
    "bad", ["with space", "a/b", "x" * 129, "caf\u00e9", "tab\there", "new\nline", "semi;colon"]
)
async def test_a_bad_submission_id_is_refused_naming_the_field(harness, bad):
    r = harness.requester
    with pytest.raises(InvalidArgumentError) as refused:
        await r.submit(with_id(payload(), bad))
    assert refused.value.field == SUBMISSION_ID_FIELD == "JobCreatePayload.SubmissionID"
    assert "1 to 128 characters of letters, digits, '.', '_' and '-'" in str(refused.value)
    assert await job_count(r) == 0


@pytest.mark.parametrize("good", ["x" * 128, "a", "A.b_c-9", "0f8fad5b-d9cb-469f-a165-70867728950e"])
def test_good_submission_ids_pass(good):
    assert submission_problems(with_id(payload(), good)) == []


def test_a_bad_id_is_listed_with_the_jobs_other_problems():
    bad = with_id(payload(concurrency=0), "no good")
    assert [p.field for p in submission_problems(bad)] == [SUBMISSION_ID_FIELD, "Deal.Concurrency"]


async def test_a_record_is_found_in_memory_until_committed_then_in_the_store(tmp_path):
    store = RequesterStore(tmp_path / "r.db")
    await store.open()
    try:
        submissions = Submissions(store)
        job = pb.Job(id="job-1", client_id="c1")
        store.add_job(job)
        record = SubmissionRecord(job_id="job-1", digest="d" * 64)
        submissions.record(("c1", "s1"), record)
        assert store.find_submission("c1", "s1") is None  # queued, not committed
        assert submissions.find(("c1", "s1")) == record and submissions.uncommitted == 1
        await store.flush()
        assert submissions.uncommitted == 0
        assert submissions.find(("c1", "s1")) == record == store.find_submission("c1", "s1")
        assert submissions.find(("c2", "s1")) is None
    finally:
        await store.close()


def test_the_failpoint_is_off_unless_named_in_the_environment():
    assert failpoints.ENV == "BACALHAU_FAILPOINTS"
    assert "submit-after-commit" not in failpoints.ARMED  # the test run sets none
    failpoints.hit("submit-after-commit")  # returns: this process goes on
