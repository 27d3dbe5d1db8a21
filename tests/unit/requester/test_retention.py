"""Retention on the requester (domain/retention.py): a real Requester on a real SQLite file and content
store, the collector driven pass by pass with an explicit clock (nothing waits for time to pass)."""

import io
import sqlite3
import tarfile
import time

import pytest

from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.errors import NotFoundError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.retention import JobRetention, describe_duration
from bacalhau_grpc.requester.settings import RequesterSettings
from tests.unit.requester.fakes import Harness, eventually
from tests.unit.requester.test_lifecycle import node, payload

RETENTION = 100.0
JOB_TABLES = ("jobs", "job_tags", "events", "local_events", "shard_rows", "shard_fsm", "submissions")


def context_archive(text: str) -> bytes:
    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("main.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def rows_of(db_path, job_id: str) -> dict[str, int]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        counts = {}
        for table in JOB_TABLES:
            column = "id" if table == "jobs" else "job_id"
            counts[table] = db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (job_id,)
            ).fetchone()[0]
        return counts
    finally:
        db.close()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def submit_and_wait_for_acceptance(h: Harness, job_payload: pb.JobCreatePayload) -> tuple[pb.Job, str]:
    """Submit the job; its execution once its bid is accepted (the fake node bids at once)."""
    before = len(h.compute.executions("bid_accepted"))
    job = await h.requester.submit(job_payload)
    accepted = await eventually(lambda: h.compute.executions("bid_accepted")[before:], what="BidAccepted")
    return job, accepted[0]


async def run_job(h: Harness, job_payload: pb.JobCreatePayload) -> pb.Job:
    """Submit the job and take it to Completed (one node, n1)."""
    r = h.requester
    job, execution = await submit_and_wait_for_acceptance(h, job_payload)
    common = {"job_id": job.id, "shard_index": 0, "node_id": "n1", "execution_id": execution}
    await r.on_run_complete(**common, verification_proposal=b"", run_output=pb.RunCommandResult(stdout="hi"))
    await eventually(lambda: execution in h.compute.executions("result_accepted"), what="ResultAccepted")
    await r.on_publish_complete(**common, published_result=pb.StorageSpec(name="noop"))
    await eventually(lambda: r.active_jobs == 0 or job.id not in r._active, what="the job to end")
    return job


@pytest.fixture
async def setup(tmp_path):
    content = ContentStore(tmp_path / "content")
    h = Harness(tmp_path, content=content)
    await h.start()
    clock = Clock()
    retention = JobRetention(
        h.requester, h.store, job_retention=RETENTION, node_retention=RETENTION, content=content, clock=clock
    )
    yield h, retention, clock, content
    await h.stop()


async def test_finished_jobs_expire_after_the_retention_and_nothing_else_does(setup):
    h, retention, clock, content = setup
    r = h.requester
    await r.register_node(node("n1"))
    shared = context_archive("print('shared')\n")
    with_context = payload(tags=["kept"])
    with_context.context = context_archive("print('mine')\n")
    done = await run_job(h, with_context)
    sharing = payload()
    sharing.context = shared
    finished_sharing = await run_job(h, sharing)
    running_payload = payload()
    running_payload.context = shared
    running, _ = await submit_and_wait_for_acceptance(h, running_payload)  # never completed
    own_cid = done.spec.contexts[0].cid
    shared_cid = running.spec.contexts[0].cid
    assert content.has(own_cid) and content.has(shared_cid)

    clock.now += RETENTION / 2  # finished within the retention: kept
    report = await retention.collect()
    assert report.jobs == [] and report.content == []
    assert (await r.get_job(done.id)).job.id == done.id

    clock.now += RETENTION  # now past it
    report = await retention.collect()
    assert sorted(report.jobs) == sorted([done.id, finished_sharing.id])
    assert report.content == [own_cid]  # the shared context is still named by the running job
    assert not content.has(own_cid) and content.has(shared_cid)
    await h.store.flush()
    assert set(rows_of(h.path, done.id).values()) == {0}
    assert rows_of(h.path, running.id)["jobs"] == 1

    for read in (r.get_job, r.list_job_events):
        with pytest.raises(NotFoundError) as caught:
            await read(done.id)
        assert str(caught.value) == (
            f"job {done.id} expired: finished jobs are kept for 1m40s (job_retention)"
        )
    with pytest.raises(NotFoundError) as caught:
        await r.get_job("no-such-job")
    assert str(caught.value) == "job no-such-job not found"

    info = await r.get_job(running.id)  # the running job is untouched
    assert info.job.id == running.id and r.active_jobs == 1
    jobs, _ = await r.list_jobs()
    assert [j.id for j in jobs] == [running.id]

    # The expiry notes go after another retention period: then the plain message.
    clock.now += RETENTION + 1
    await retention.collect()
    with pytest.raises(NotFoundError) as caught:
        await r.get_job(done.id)
    assert str(caught.value) == f"job {done.id} not found"


async def test_retention_zero_keeps_forever(setup):
    h, retention, clock, _ = setup
    r = h.requester
    await r.register_node(node("n1"))
    job = await run_job(h, payload())
    retention.job_retention = 0
    clock.now += 10 * 365 * 86_400
    assert (await retention.collect()).jobs == []
    assert (await r.get_job(job.id)).job.id == job.id


async def test_a_restarted_requester_reads_expired_jobs_as_expired(setup):
    h, retention, clock, _ = setup
    r = h.requester
    await r.register_node(node("n1"))
    job = await run_job(h, payload())
    clock.now += RETENTION + 1
    assert (await retention.collect()).jobs == [job.id]
    r = await h.restart()
    JobRetention(r, h.store, job_retention=RETENTION)
    with pytest.raises(NotFoundError, match="expired: finished jobs are kept for 1m40s"):
        await r.get_job(job.id)


async def test_nodes_lost_for_longer_than_the_retention_leave(tmp_path):
    h = Harness(tmp_path, node_timeout=0.2, heartbeat_interval=0.1)
    r = await h.start()
    try:
        clock = Clock()
        retention = JobRetention(r, h.store, job_retention=RETENTION, node_retention=RETENTION, clock=clock)
        await r.register_node(node("n1"))
        await eventually(lambda: r.live_node_count() == 0, what="n1 lost")
        await eventually(lambda: "n1" not in r._node_timers, what="its loss handled")
        last_seen = r.nodes.get("n1").last_seen

        clock.now = last_seen + 0.2 + RETENTION / 2  # lost, within the retention
        assert (await retention.collect()).nodes == []
        assert [v.entry.node_id for v in (await r.list_nodes())[0]] == ["n1"]

        clock.now = last_seen + 0.2 + RETENTION + 1
        assert (await retention.collect()).nodes == ["n1"]
        assert (await r.list_nodes())[0] == []
        assert h.store.load_nodes() == []
        await r.register_node(node("n1"))  # it may come back
        assert r.live_node_count() == 1
    finally:
        await h.stop()


def test_durations_are_written_as_people_write_them():
    assert describe_duration(7 * 86_400) == "7d"
    assert describe_duration(86_400 + 2 * 3_600) == "1d2h"
    assert describe_duration(2) == "2s"
    assert describe_duration(0.5) == "0.5s"


def test_the_settings_have_documented_defaults_and_are_checked(tmp_path):
    settings = RequesterSettings(data_dir=tmp_path, verifier_address="127.0.0.1:1")
    assert settings.job_retention == 7 * 86_400 and settings.node_retention == 86_400
    assert settings.retention_interval == 60
    assert RequesterSettings(data_dir=tmp_path, verifier_address="x:1", job_retention=0).job_retention == 0
    with pytest.raises(Exception, match="job_retention"):
        RequesterSettings(data_dir=tmp_path, verifier_address="x:1", job_retention=-1)
    with pytest.raises(Exception, match="retention_interval"):
        RequesterSettings(data_dir=tmp_path, verifier_address="x:1", retention_interval=0)
    loaded = RequesterSettings.from_env(
        {"BACALHAU_JOB_RETENTION": "2"}, data_dir=tmp_path, verifier_address="x:1"
    )
    assert loaded.job_retention == 2.0
