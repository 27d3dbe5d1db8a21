"""The requester works in batches: reports arriving together are taken in one step and one commit, calls due
together leave as one batch per node, and shards due together time out in one step off one loop timer."""

import asyncio

from bacalhau_grpc.common.errors import FailedPreconditionError, PermissionDeniedError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.reports import PublishComplete, RunComplete
from bacalhau_grpc.requester.domain.shard_fsm import Phase
from tests.unit.requester.fakes import Harness, eventually
from tests.unit.requester.test_lifecycle import node, payload

E = pb.JobEventType


async def test_reports_arriving_together_are_taken_in_order_and_committed_together(harness):
    r, compute, store = harness.requester, harness.compute, harness.store
    await r.register_node(node("n1"))
    jobs = [await r.submit(payload()) for _ in range(3)]
    executions = await eventually(
        lambda: len(compute.executions("bid_accepted")) == 3 and compute.executions("bid_accepted"),
        what="three bids accepted",
    )
    by_job = {r.shard(job.id).execution("n1").execution_id: job.id for job in jobs}
    first, second, third = (by_job[e] for e in executions)
    committed: list[list[tuple[str, int]]] = []
    commit = store._commit

    def recording(batch):
        committed.append(
            [(job_id, pb.JobEvent.FromString(blob).event_name) for job_id, _, blob in batch.events]
        )
        commit(batch)

    store._commit = recording
    results = await r.reports(
        [
            RunComplete(
                job_id=first,
                shard_index=0,
                node_id="n1",
                execution_id=r.shard(first).execution("n1").execution_id,
            ),
            RunComplete(job_id=second, shard_index=0, node_id="stranger", execution_id="e-x"),
            PublishComplete(
                job_id=third,
                shard_index=0,
                node_id="n1",
                execution_id=r.shard(third).execution("n1").execution_id,
            ),
            RunComplete(
                job_id=third,
                shard_index=0,
                node_id="n1",
                execution_id=r.shard(third).execution("n1").execution_id,
            ),
        ]
    )
    assert results[0] is None and results[3] is None
    assert isinstance(results[1], PermissionDeniedError) and "stranger" in str(results[1])
    assert isinstance(results[2], FailedPreconditionError) and "were not accepted" in str(results[2])
    # Taken in order: the refused publication is recorded before the third job's results.
    names = [e.event_name for e in r._lookup(third).events]
    assert names.index(E.JOB_EVENT_TYPE_INVALID_REQUEST) < names.index(E.JOB_EVENT_TYPE_RESULTS_PROPOSED)
    # One commit holds every event of the batch, and it was made before the answer.
    (batch,) = [b for b in committed if (first, E.JOB_EVENT_TYPE_RESULTS_PROPOSED) in b]
    assert {(third, E.JOB_EVENT_TYPE_INVALID_REQUEST), (third, E.JOB_EVENT_TYPE_RESULTS_PROPOSED)} <= set(
        batch
    )
    assert r.shard(second).phase == Phase.WAITING_FOR_RESULTS  # the stranger's report changed nothing


async def test_calls_due_together_leave_as_one_batch_per_node(harness):
    r, compute = harness.requester, harness.compute
    await r.register_node(node("n1"))
    await r.register_node(node("n2"))
    jobs = await asyncio.gather(*(r.submit(payload()) for _ in range(20)))
    await eventually(lambda: len(compute.executions("bid_accepted")) == 20, what="20 bids accepted")
    asks = [(address, size) for method, address, size in compute.batches if method == "ask_for_bids"]
    # Twenty jobs submitted at once: their asks went out in one call to each node asked.
    assert sum(size for _, size in asks) == 20
    assert len(asks) == len({address for address, _ in asks}) <= 2, asks
    accepts = [size for method, _, size in compute.batches if method == "update_executions"]
    assert sum(accepts) == 20 and len(accepts) <= 4, accepts
    assert all(r.shard(job.id).phase == Phase.WAITING_FOR_RESULTS for job in jobs)


async def test_shards_due_together_time_out_in_one_step_off_one_timer(tmp_path):
    h = Harness(tmp_path, negotiation_timeout=0.2)
    r = await h.start()
    try:
        jobs = await asyncio.gather(*(r.submit(payload()) for _ in range(5)))  # no node: nobody bids
        assert r.armed_timers == 5
        loop_timers = [t for t in asyncio.get_running_loop()._scheduled if not t.cancelled()]
        assert len([t for t in loop_timers if "_on_deadlines" in repr(t)]) == 1
        await eventually(lambda: r.armed_timers == 0, what="every shard timed out")
        for job in jobs:
            shard = r.shard(job.id)
            assert shard.phase == Phase.ERROR and shard.status.startswith("negotiation timed out")
    finally:
        await h.stop()
