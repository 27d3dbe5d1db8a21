"""The compute node's domain service, with a real SQLite store and a recording requester."""

import asyncio
import time

import pytest

from bacalhau_grpc.common.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.capacity import Limits
from bacalhau_grpc.compute.domain.executions import ExecutionState
from bacalhau_grpc.compute.domain.node import RESTARTED_DURING_EXECUTION, ComputeNode
from bacalhau_grpc.compute.domain.proposals import Proposer
from bacalhau_grpc.compute.executors.noop import NoopExecutor
from bacalhau_grpc.compute.publishers.base import NoopPublisher
from bacalhau_grpc.compute.store.executions import SQLiteExecutionStore
from tests.unit.compute.support import RecordingRequester, make_job

S = ExecutionState
GiB = 1024**3
LIMITS = Limits(
    total=pb.ResourceUsageData(cpu=2.0, memory=4 * GiB, disk=10 * GiB),
    per_job=pb.ResourceUsageData(cpu=1.0, memory=2 * GiB, disk=10 * GiB),
)


class Harness:
    def __init__(self, tmp_path):
        self.path = tmp_path / "compute.db"
        self.requester = RecordingRequester()
        self.node: ComputeNode | None = None
        self.store: SQLiteExecutionStore | None = None

    async def start(self, *, limits=LIMITS, **knobs):
        self.store = SQLiteExecutionStore(self.path)
        await self.store.open()
        self.executor = NoopExecutor(**knobs)
        self.node = ComputeNode(
            node_id="node-000000000001",
            store=self.store,
            executors=[self.executor],
            publishers=[NoopPublisher()],
            verifiers=[pb.Verifier.VERIFIER_NOOP, pb.Verifier.VERIFIER_DETERMINISTIC],
            limits=limits,
            proposer=Proposer("node-000000000001"),
            callbacks=self.requester,
            address="127.0.0.1:1",
            version="v0.1.0",
        )
        self.node.load()
        return self.node

    async def stop(self):
        await self.node.stop()
        await self.store.close()

    async def wait_state(self, execution_id, state, timeout=5.0):
        deadline = time.monotonic() + timeout
        while self.store.get(execution_id).state != state:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.store.get(execution_id).describe()}, expected {state.label}")
            await asyncio.sleep(0.002)


@pytest.fixture
async def harness(tmp_path):
    h = Harness(tmp_path)
    yield h
    if h.node is not None:
        await h.stop()


async def test_the_happy_path(harness):
    node = await harness.start(stdout="hello\n", stderr="careful\n", exit_code=0)
    bid = await node.ask_for_bid(make_job(verifier=pb.Verifier.VERIFIER_DETERMINISTIC), 0)
    assert bid.accepted and bid.execution_id.startswith("e-") and bid.reason == ""
    assert harness.store.get(bid.execution_id).state == S.CREATED

    node.bid_accepted(bid.execution_id)
    output, proposal = await harness.requester.wait_for("run_complete", bid.execution_id)
    assert output.stdout == "hello\n" and output.stderr == "careful\n" and output.exit_code == 0
    assert len(proposal) == 64 and bytes.fromhex(proposal.decode())
    assert harness.store.get(bid.execution_id).state == S.WAITING_VERIFICATION

    node.result_accepted(bid.execution_id)
    published = await harness.requester.wait_for("publish_complete", bid.execution_id)
    assert published == pb.StorageSpec(name="noop", metadata={"publisher": "Noop"})
    execution = harness.store.get(bid.execution_id)
    assert execution.state == S.COMPLETED and execution.published_result == published
    assert [t.to_state for t in execution.history] == [
        S.CREATED,
        S.BID_ACCEPTED,
        S.RUNNING,
        S.WAITING_VERIFICATION,
        S.RESULT_ACCEPTED,
        S.PUBLISHING,
        S.COMPLETED,
    ]
    assert harness.node.tracker.running == pb.ResourceUsageData()


async def test_a_non_zero_exit_code_is_a_result(harness):
    node = await harness.start(stdout="", stderr="bad input\n", exit_code=3)
    bid = await node.ask_for_bid(make_job(), 0)
    node.bid_accepted(bid.execution_id)
    output, proposal = await harness.requester.wait_for("run_complete", bid.execution_id)
    assert output.exit_code == 3 and output.stderr == "bad input\n" and proposal == b""
    assert all(name != "compute_failure" for name, _ in harness.requester.of(bid.execution_id))


async def test_a_refusal_keeps_no_execution(harness):
    node = await harness.start()
    bid = await node.ask_for_bid(make_job(engine=pb.Engine.ENGINE_DOCKER), 0)
    assert (bid.accepted, bid.execution_id, bid.reason) == (False, "", "executor Docker not installed")
    assert sum(harness.store.counts_by_state().values()) == 0
    assert node.debug_info()["bids"] == {"accepted": 0, "refused": 1}


async def test_asking_twice_for_the_same_shard_gets_the_same_execution(harness):
    node = await harness.start()
    job = make_job()
    first = await node.ask_for_bid(job, 0)
    assert await node.ask_for_bid(job, 0) == first
    node.bid_rejected(first.execution_id, "enough bids")
    second = await node.ask_for_bid(job, 0)
    assert second.accepted and second.execution_id != first.execution_id


async def test_bad_requests(harness):
    node = await harness.start()
    with pytest.raises(InvalidArgumentError) as error:
        await node.ask_for_bid(pb.Job(), 0)
    assert error.value.field == "job.id"
    with pytest.raises(InvalidArgumentError) as error:
        await node.ask_for_bid(make_job(), 1)  # the job has one shard
    assert error.value.field == "shard_index"
    with pytest.raises(InvalidArgumentError) as error:
        node.bid_accepted("")
    assert error.value.field == "execution_id"
    for call in (node.bid_accepted, node.bid_rejected, node.result_accepted, node.result_rejected):
        with pytest.raises(NotFoundError):
            call("e-unknown")
    with pytest.raises(NotFoundError):
        node.cancel_execution("e-unknown")


async def test_bid_accepted_twice_is_harmless_and_results_before_the_run_are_refused(harness):
    node = await harness.start(delay=30)
    bid = await node.ask_for_bid(make_job(), 0)
    with pytest.raises(FailedPreconditionError, match="no results yet"):
        node.result_accepted(bid.execution_id)
    node.bid_accepted(bid.execution_id)
    node.bid_accepted(bid.execution_id)
    await harness.wait_state(bid.execution_id, S.RUNNING)
    assert harness.executor.runs == 1
    with pytest.raises(FailedPreconditionError, match="is Running: it has no results yet"):
        node.result_accepted(bid.execution_id)
    with pytest.raises(FailedPreconditionError, match="can no longer be rejected"):
        node.bid_rejected(bid.execution_id)


async def test_bid_rejected_cancels_and_a_later_accept_is_refused(harness):
    node = await harness.start()
    bid = await node.ask_for_bid(make_job(), 0)
    node.bid_rejected(bid.execution_id, "not selected")
    node.bid_rejected(bid.execution_id, "not selected")
    execution = harness.store.get(bid.execution_id)
    assert execution.state == S.CANCELLED and execution.status == "bid rejected: not selected"
    with pytest.raises(FailedPreconditionError, match="can no longer be accepted"):
        node.bid_accepted(bid.execution_id)


async def test_result_rejected_fails_the_execution_and_publishes_nothing(harness):
    node = await harness.start()
    bid = await node.ask_for_bid(make_job(), 0)
    node.bid_accepted(bid.execution_id)
    await harness.requester.wait_for("run_complete", bid.execution_id)
    node.result_rejected(bid.execution_id, "tie")
    node.result_rejected(bid.execution_id, "tie")
    execution = harness.store.get(bid.execution_id)
    assert execution.state == S.FAILED and execution.status == "results rejected: tie"
    with pytest.raises(FailedPreconditionError):
        node.result_accepted(bid.execution_id)
    assert [name for name, _ in harness.requester.of(bid.execution_id)] == ["run_complete"]


async def test_result_accepted_twice_publishes_once(harness):
    node = await harness.start()
    bid = await node.ask_for_bid(make_job(), 0)
    node.bid_accepted(bid.execution_id)
    await harness.requester.wait_for("run_complete", bid.execution_id)
    node.result_accepted(bid.execution_id)
    node.result_accepted(bid.execution_id)
    await harness.requester.wait_for("publish_complete", bid.execution_id)
    node.result_accepted(bid.execution_id)
    names = [name for name, _ in harness.requester.of(bid.execution_id)]
    assert names == ["run_complete", "publish_complete"]


async def test_a_run_beyond_the_job_timeout_is_a_compute_failure(harness):
    node = await harness.start(delay=30)
    bid = await node.ask_for_bid(make_job(timeout=0.5), 0)
    node.bid_accepted(bid.execution_id)
    error = await harness.requester.wait_for("compute_failure", bid.execution_id)
    assert error == "execution timed out after 0.5s"
    execution = harness.store.get(bid.execution_id)
    assert execution.state == S.FAILED and execution.status == error
    assert node.tracker.running == pb.ResourceUsageData()


async def test_cancel_stops_the_run_and_reports_it(harness):
    node = await harness.start(delay=30)
    bid = await node.ask_for_bid(make_job(), 0)
    node.bid_accepted(bid.execution_id)
    await harness.wait_state(bid.execution_id, S.RUNNING)
    node.cancel_execution(bid.execution_id, "shard timed out")
    assert harness.store.get(bid.execution_id).state == S.CANCELLED
    await harness.requester.wait_for("cancel_complete", bid.execution_id)
    assert harness.store.get(bid.execution_id).status == "cancelled: shard timed out"
    assert node.tracker.running == pb.ResourceUsageData()
    assert [name for name, _ in harness.requester.of(bid.execution_id)] == ["cancel_complete"]
    node.cancel_execution(bid.execution_id)  # an ended execution: nothing happens
    assert len(harness.requester.of(bid.execution_id)) == 1


async def test_accepted_executions_beyond_capacity_wait_their_turn(harness):
    limits = Limits(
        total=pb.ResourceUsageData(cpu=1.0, memory=GiB), per_job=pb.ResourceUsageData(cpu=1.0, memory=GiB)
    )
    node = await harness.start(limits=limits, delay=0.3)
    first = await node.ask_for_bid(make_job(cpu="1"), 0)
    second = await node.ask_for_bid(make_job(cpu="1"), 0)  # over-commit: the bid is fine
    node.bid_accepted(first.execution_id)
    node.bid_accepted(second.execution_id)
    await harness.wait_state(first.execution_id, S.RUNNING)
    assert harness.store.get(second.execution_id).state == S.BID_ACCEPTED  # queued
    assert node.tracker.queue_length() == 1
    third = await node.ask_for_bid(make_job(cpu="1"), 0)
    assert (third.accepted, third.reason, third.busy) == (False, "not enough capacity available", True)
    assert not node.room_freed.is_set()
    await harness.requester.wait_for("run_complete", first.execution_id)
    assert node.room_freed.is_set()  # the heartbeat loop tells the requester at once
    await harness.requester.wait_for("run_complete", second.execution_id)
    runs = {eid: harness.store.get(eid).history for eid in (first.execution_id, second.execution_id)}
    first_done = next(t.at for t in runs[first.execution_id] if t.to_state == S.WAITING_VERIFICATION)
    second_started = next(t.at for t in runs[second.execution_id] if t.to_state == S.RUNNING)
    assert second_started >= first_done


async def test_a_restarted_node_fails_interrupted_runs_and_keeps_the_rest(harness):
    node = await harness.start(delay=30)
    waiting = await node.ask_for_bid(make_job(), 0)
    running = await node.ask_for_bid(make_job(), 0)
    node.bid_accepted(running.execution_id)
    await harness.wait_state(running.execution_id, S.RUNNING)
    await harness.stop()

    node = await harness.start()
    assert harness.store.get(running.execution_id).state == S.RUNNING
    node.recover()
    error = await harness.requester.wait_for("compute_failure", running.execution_id)
    assert error == RESTARTED_DURING_EXECUTION
    assert harness.store.get(running.execution_id).state == S.FAILED
    # The bid that was not accepted yet is still there and can go on.
    assert (
        await node.ask_for_bid(harness.store.get(waiting.execution_id).job, 0)
    ).execution_id == waiting.execution_id
    node.bid_accepted(waiting.execution_id)
    await harness.requester.wait_for("run_complete", waiting.execution_id)


async def test_a_restarted_node_finishes_an_interrupted_publication(harness):
    node = await harness.start()
    bid = await node.ask_for_bid(make_job(), 0)
    node.bid_accepted(bid.execution_id)
    await harness.requester.wait_for("run_complete", bid.execution_id)
    harness.store.update(bid.execution_id, S.RESULT_ACCEPTED, expected=S.WAITING_VERIFICATION)
    harness.store.update(bid.execution_id, S.PUBLISHING, expected=S.RESULT_ACCEPTED)
    await harness.stop()
    node = await harness.start()
    node.recover()
    await harness.requester.wait_for("publish_complete", bid.execution_id)
    assert harness.store.get(bid.execution_id).state == S.COMPLETED


async def test_node_info_and_debug_info(harness):
    node = await harness.start()
    info = node.node_info()
    assert info.node_id == "node-000000000001" and info.address == "127.0.0.1:1"
    assert list(info.engines) == [pb.Engine.ENGINE_NOOP]
    assert list(info.verifiers) == [pb.Verifier.VERIFIER_NOOP, pb.Verifier.VERIFIER_DETERMINISTIC]
    assert list(info.publishers) == [pb.Publisher.PUBLISHER_NOOP]
    assert info.total_capacity == LIMITS.total and info.max_job_capacity == LIMITS.per_job
    await node.ask_for_bid(make_job(), 0)
    assert node.active_executions() == 1
    assert node.debug_info()["executions"]["Created"] == 1
    assert node.available_capacity() == LIMITS.total


async def test_recover_leaves_the_executions_of_this_process_alone(harness):
    node = await harness.start(delay=30)
    bid = await node.ask_for_bid(make_job(), 0)
    node.bid_accepted(bid.execution_id)
    await harness.wait_state(bid.execution_id, S.RUNNING)
    node.recover()  # registration may complete after the first runs started
    assert harness.store.get(bid.execution_id).state == S.RUNNING
    assert harness.requester.of(bid.execution_id) == []
