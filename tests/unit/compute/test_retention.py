"""Retention on a compute node (domain/retention.py): a real node on a real SQLite file and content
store, the collector driven pass by pass with an explicit clock (nothing waits for time to pass)."""

import sqlite3
import time

import pytest

from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.errors import FailedPreconditionError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.executions import ExecutionState
from bacalhau_grpc.compute.domain.retention import ExecutionRetention
from bacalhau_grpc.compute.settings import ComputeSettings
from tests.unit.compute.support import make_job
from tests.unit.compute.test_node import Harness

S = ExecutionState
RETENTION = 100.0
BID_EXPIRY = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def setup(tmp_path):
    h = Harness(tmp_path)
    node = await h.start(stdout="hello\n")
    node.work_root = tmp_path / "executions"
    content = ContentStore(tmp_path / "content")
    clock = Clock()
    retention = ExecutionRetention(
        node, h.store, execution_retention=RETENTION, bid_expiry=BID_EXPIRY, content=content, clock=clock
    )
    yield h, node, retention, clock, content
    await h.stop()


async def complete(h: Harness, node, job: pb.Job) -> str:
    bid = await node.ask_for_bid(job, 0)
    node.bid_accepted(bid.execution_id)
    await h.requester.wait_for("run_complete", bid.execution_id)
    node.result_accepted(bid.execution_id)
    await h.requester.wait_for("publish_complete", bid.execution_id)
    await h.wait_state(bid.execution_id, S.COMPLETED)
    return bid.execution_id


def rows(db_path, execution_id: str) -> tuple[int, int]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return (
            db.execute("SELECT COUNT(*) FROM executions WHERE id = ?", (execution_id,)).fetchone()[0],
            db.execute(
                "SELECT COUNT(*) FROM execution_history WHERE execution_id = ?", (execution_id,)
            ).fetchone()[0],
        )
    finally:
        db.close()


async def test_a_bid_never_accepted_expires_and_cannot_be_accepted_later(setup):
    h, node, retention, clock, _ = setup
    stale = await node.ask_for_bid(make_job(), 0)
    clock.now += BID_EXPIRY / 2
    assert (await retention.collect()).expired_bids == []
    assert h.store.get(stale.execution_id).state == S.CREATED

    clock.now += BID_EXPIRY
    assert (await retention.collect()).expired_bids == [stale.execution_id]
    execution = h.store.get(stale.execution_id)
    assert execution.state == S.CANCELLED
    assert execution.status == "bid expired: neither accepted nor rejected within 30s (bid_expiry)"
    with pytest.raises(FailedPreconditionError, match=r"its bid expired .*bid_expiry"):
        node.bid_accepted(stale.execution_id)
    node.bid_rejected(stale.execution_id)  # a late rejection changes nothing
    assert node.tracker.running == pb.ResourceUsageData() and node.tracker.queue_length() == 0
    # The shard may be bid on again: a new execution.
    again = await node.ask_for_bid(make_job(), 0)
    assert again.accepted and again.execution_id != stale.execution_id


async def test_ended_executions_leave_after_the_retention_with_their_folders(setup):
    h, node, retention, clock, content = setup
    done = await complete(h, node, make_job())
    running_bid = await node.ask_for_bid(make_job(), 0)
    node.bid_accepted(running_bid.execution_id)  # noop runs at once; it then waits for verification
    await h.wait_state(running_bid.execution_id, S.WAITING_VERIFICATION)
    leftover = node.work_root / done
    (leftover / "results").mkdir(parents=True)  # a folder a crash left behind
    source = h.path.parent / "published"
    source.mkdir()
    (source / "stdout").write_text("result\n")
    published = content.add_folder(source)  # content no kept execution names

    clock.now += RETENTION / 2
    report = await retention.collect()
    assert report.executions == [] and report.content == []
    assert h.store.get(done).state == S.COMPLETED

    clock.now += RETENTION
    report = await retention.collect()
    assert report.executions == [done]
    assert report.content == [published] and not content.has(published)
    assert not leftover.exists()
    assert rows(h.path, done) == (0, 0)
    # The execution waiting for verification is active: kept, whatever its age.
    assert h.store.get(running_bid.execution_id).state == S.WAITING_VERIFICATION
    assert rows(h.path, running_bid.execution_id)[0] == 1
    assert h.store.counts_by_state()[S.COMPLETED] == 0


async def test_zero_keeps_everything(setup):
    h, node, retention, clock, _ = setup
    done = await complete(h, node, make_job())
    bid = await node.ask_for_bid(make_job(), 0)
    retention.execution_retention = 0
    retention.bid_expiry = 0
    clock.now += 10 * 365 * 86_400
    report = await retention.collect()
    assert report.executions == [] and report.expired_bids == []
    assert h.store.get(done).state == S.COMPLETED and h.store.get(bid.execution_id).state == S.CREATED


def test_the_settings_have_documented_defaults_and_are_checked(tmp_path):
    settings = ComputeSettings(data_dir=tmp_path, requester_address="127.0.0.1:1")
    assert settings.execution_retention == 7 * 86_400 and settings.bid_expiry == 120
    assert settings.retention_interval == 60
    with pytest.raises(Exception, match="execution_retention"):
        ComputeSettings(data_dir=tmp_path, requester_address="x:1", execution_retention=-1)
    with pytest.raises(Exception, match="retention_interval"):
        ComputeSettings(data_dir=tmp_path, requester_address="x:1", retention_interval=0)
