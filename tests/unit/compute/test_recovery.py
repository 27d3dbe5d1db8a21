"""A requester that restarted repeats BidAccepted and ResultAccepted to recover reports it lost: the node
starts nothing again and reports the outcome it already has (the requester takes it as the same report)."""

import asyncio

import pytest

from bacalhau_grpc.compute.domain.executions import ExecutionState
from bacalhau_grpc.compute.domain.node import RESTARTED_DURING_EXECUTION
from tests.unit.compute.support import make_job
from tests.unit.compute.test_node import Harness

S = ExecutionState


@pytest.fixture
async def harness(tmp_path):
    h = Harness(tmp_path)
    yield h
    if h.node is not None:
        await h.stop()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def count(harness, name: str, execution_id: str) -> int:
    return sum(1 for call, _ in harness.requester.of(execution_id) if call == name)


async def test_a_repeated_bid_accepted_while_running_changes_nothing(harness):
    node = await harness.start(delay=30)
    bid = await node.ask_for_bid(make_job(), 0)
    node.bid_accepted(bid.execution_id)
    await harness.wait_state(bid.execution_id, S.RUNNING)
    node.bid_accepted(bid.execution_id)
    await settle()
    assert harness.requester.of(bid.execution_id) == []
    assert node.debug_info()["tasks"]["work"] == 1


async def test_a_repeated_bid_accepted_after_the_run_reports_the_results_again(harness):
    node = await harness.start(stdout="out")
    bid = await node.ask_for_bid(make_job(), 0)
    node.bid_accepted(bid.execution_id)
    first = await harness.requester.wait_for("run_complete", bid.execution_id)
    node.bid_accepted(bid.execution_id)
    await settle()
    assert count(harness, "run_complete", bid.execution_id) == 2
    assert harness.requester.of(bid.execution_id)[-1] == ("run_complete", first)
    assert harness.store.get(bid.execution_id).state == S.WAITING_VERIFICATION


async def test_a_repeated_bid_accepted_after_a_failure_reports_the_failure_again(harness):
    node = await harness.start(delay=30)
    bid = await node.ask_for_bid(make_job(), 0)
    node.bid_accepted(bid.execution_id)
    await harness.wait_state(bid.execution_id, S.RUNNING)
    await harness.stop()
    node = await harness.start()
    node.recover()
    await harness.requester.wait_for("compute_failure", bid.execution_id)
    node.bid_accepted(bid.execution_id)
    await settle()
    assert harness.requester.of(bid.execution_id) == [("compute_failure", RESTARTED_DURING_EXECUTION)] * 2


async def test_a_repeated_result_accepted_after_the_publication_reports_it_again(harness):
    node = await harness.start()
    bid = await node.ask_for_bid(make_job(), 0)
    node.bid_accepted(bid.execution_id)
    await harness.requester.wait_for("run_complete", bid.execution_id)
    node.result_accepted(bid.execution_id)
    published = await harness.requester.wait_for("publish_complete", bid.execution_id)
    node.result_accepted(bid.execution_id)
    await settle()
    assert count(harness, "publish_complete", bid.execution_id) == 2
    assert harness.requester.of(bid.execution_id)[-1] == ("publish_complete", published)
    # Published once: the execution's history went through Publishing once.
    history = [t.to_state for t in harness.store.get(bid.execution_id).history]
    assert history.count(S.PUBLISHING) == 1 and history[-1] == S.COMPLETED
