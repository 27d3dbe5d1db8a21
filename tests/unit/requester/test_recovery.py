"""Crash recovery of the requester: state is committed before its effects are seen elsewhere, and a
restarted requester repeats the calls its reloaded shards still wait on (an outbox derived from their
state), with no event recorded twice."""

import asyncio
import collections
import time

from bacalhau_grpc.common.errors import NotFoundError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain import shard_fsm as f
from bacalhau_grpc.requester.domain.shard_fsm import ExecState, Phase, ShardFSM, Verdict
from bacalhau_grpc.requester.store.sqlite import RequesterStore
from tests.unit.requester.fakes import UNREACHABLE, FakeCompute, Harness, eventually

E = pb.JobEventType
T0 = 1_700_000_000.0


def machine(concurrency=1, min_bids=0) -> ShardFSM:
    return ShardFSM.create(
        job_id="job-1",
        shard_index=0,
        requester_node_id="requester-1",
        client_id="client-1",
        deal=pb.Deal(concurrency=concurrency, min_bids=min_bids),
        timeout=60.0,
        negotiation_timeout=120.0,
        now=T0,
    )


def reloaded(m: ShardFSM) -> ShardFSM:
    return ShardFSM.from_dict(m.to_dict())


def payload(timeout=0.0) -> pb.JobCreatePayload:
    p = pb.JobCreatePayload(client_id="client-1")
    p.job.spec.engine = pb.Engine.ENGINE_NOOP
    p.job.spec.timeout = timeout
    p.job.deal.concurrency = 1
    return p


def node(name: str) -> pb.NodeInfo:
    return pb.NodeInfo(node_id=name, address=f"addr-{name}", engines=[pb.Engine.ENGINE_NOOP])


def stored_events(harness, job_id: str) -> list[int]:
    """The job's events as committed in the database (what a crash would keep)."""
    stored = harness.store.load_job(job_id)
    return [] if stored is None else [e.event_name for e in stored.events]


# -- the machine: what resume repeats ---------------------------------------------------------------


def test_resume_asks_again_for_the_bids_not_answered():
    m = machine(concurrency=1, min_bids=3)
    m.offer(["a", "b", "c"])
    m.on_bid("a", "e-a", T0, f.random.Random(1))  # a bid (kept until three bids came)
    m.on_bid_declined("b", "busy", T0)
    assert reloaded(m).resume().actions == [f.AskForBid("c")]


def test_resume_repeats_bid_decisions_while_the_shard_runs():
    m = machine(concurrency=1, min_bids=2)
    m.offer(["a", "b"])
    m.on_bid("a", "e-a", T0, f.random.Random(1))
    m.on_bid("b", "e-b", T0, f.random.Random(1))
    (accepted,) = m.accepted
    (rejected,) = m._in(ExecState.REJECTED)
    actions = reloaded(m).resume().actions
    assert f.NotifyBidAccepted(accepted.node_id, accepted.execution_id) in actions
    assert f.NotifyBidRejected(rejected.node_id, rejected.execution_id, rejected.reason) in actions
    assert not [a for a in actions if isinstance(a, f.AskForBid | f.Verify)]


def test_resume_repeats_result_decisions_while_results_are_published():
    m = machine(concurrency=2, min_bids=2)
    m.offer(["a", "b"])
    m.on_bid("a", "e-a", T0, f.random.Random(1))
    m.on_bid("b", "e-b", T0, f.random.Random(1))
    m.on_run_complete("a", "e-a", b"x", None, T0)
    m.on_run_complete("b", "e-b", b"y", None, T0)
    m.on_verified([Verdict("e-a", "a", True), Verdict("e-b", "b", False, "wrong")], T0)
    assert m.phase == Phase.WAITING_TO_PUBLISH
    assert reloaded(m).resume().actions == [
        f.NotifyResultAccepted("a", "e-a"),
        f.NotifyResultRejected("b", "e-b", "wrong"),
    ]
    m.on_published("a", "e-a", None, T0)
    assert m.phase == Phase.COMPLETED and reloaded(m).resume().actions == []


# -- the lifecycle ---------------------------------------------------------------------------------


class CheckingCompute(FakeCompute):
    """Records, at each BidAccepted and ResultAccepted, the events the database holds by then."""

    def __init__(self) -> None:
        super().__init__()
        self.harness = None
        self.seen: dict[str, list[int]] = {}

    async def update_executions(self, address, updates):
        for update in updates:
            if isinstance(update, f.NotifyBidAccepted):
                self.seen["bid_accepted"] = stored_events(self.harness, self.job_id)
            elif isinstance(update, f.NotifyResultAccepted):
                self.seen["result_accepted"] = stored_events(self.harness, self.job_id)
        return await super().update_executions(address, updates)


async def test_state_is_committed_before_calls_and_before_answers(tmp_path):
    h = Harness(tmp_path)
    h.compute = CheckingCompute()
    h.compute.harness = h
    r = await h.start()
    try:
        await r.register_node(node("n1"))
        job = await r.submit(payload())
        h.compute.job_id = job.id
        assert stored_events(h, job.id)[:1] == [E.JOB_EVENT_TYPE_CREATED]  # a submitted job is kept
        execution = await eventually(lambda: h.compute.executions("bid_accepted"), what="BidAccepted")
        assert E.JOB_EVENT_TYPE_BID_ACCEPTED in h.compute.seen["bid_accepted"]
        await r.on_run_complete(job_id=job.id, shard_index=0, node_id="n1", execution_id=execution[0])
        assert E.JOB_EVENT_TYPE_RESULTS_PROPOSED in stored_events(h, job.id)  # answered once committed
        await eventually(lambda: h.compute.executions("result_accepted"), what="ResultAccepted")
        assert E.JOB_EVENT_TYPE_RESULTS_ACCEPTED in h.compute.seen["result_accepted"]
    finally:
        await h.stop()


class SlowStore(RequesterStore):
    """The real store, each commit 20 ms slower (a busy disk): what is recorded waits to be committed."""

    def _commit(self, batch) -> None:
        time.sleep(0.02)  # in the store's writer thread
        super()._commit(batch)


async def test_watchers_and_event_pages_see_an_event_only_once_it_is_committed(tmp_path):
    """A crash cannot take back (or make twice) an event a client saw: each event a watcher gets, and each
    event ListJobEvents pages, is in the database by then."""
    h = Harness(tmp_path, store_class=SlowStore)
    r = await h.start()
    try:
        await r.register_node(node("n1"))
        job = await r.submit(payload())
        seen: list[tuple[int, list[int]]] = []

        async def watch() -> None:
            async for sequence, event in await r.watch_job_events(job.id):
                stored = stored_events(h, job.id)
                seen.append((sequence, stored))
                assert len(stored) >= sequence and stored[sequence - 1] == event.event_name

        watcher = asyncio.create_task(watch())
        (execution,) = await eventually(lambda: h.compute.executions("bid_accepted"), what="BidAccepted")
        await r.on_run_complete(job_id=job.id, shard_index=0, node_id="n1", execution_id=execution)
        await eventually(lambda: h.compute.executions("result_accepted"), what="ResultAccepted")
        published = pb.StorageSpec(name="noop")
        await r.on_publish_complete(
            job_id=job.id, shard_index=0, node_id="n1", execution_id=execution, published_result=published
        )
        await asyncio.wait_for(watcher, 10)  # it ends with the job
        assert [sequence for sequence, _ in seen] == list(range(1, 7))
        events, _ = await r.list_job_events(job.id)
        assert [e.event_name for e in events] == stored_events(h, job.id)
    finally:
        await h.stop()


async def test_a_restart_repeats_the_calls_the_shards_wait_on_and_records_each_event_once(harness):
    r = harness.requester
    compute = harness.compute
    await r.register_node(node("n1"))
    job = await r.submit(payload())
    (execution,) = await eventually(lambda: compute.executions("bid_accepted"), what="BidAccepted")

    # The requester crashed before the node's report arrived: the restart repeats BidAccepted (the node
    # reports again what it has), and a report that arrives twice is recorded once.
    r = await harness.restart()
    await eventually(lambda: len(compute.executions("bid_accepted")) == 2, what="BidAccepted again")
    assert compute.executions("bid_accepted") == [execution, execution]
    for _ in range(2):
        await r.on_run_complete(job_id=job.id, shard_index=0, node_id="n1", execution_id=execution)
    await eventually(lambda: compute.executions("result_accepted"), what="ResultAccepted")

    # Again after the results were accepted: ResultAccepted is repeated, the publication recorded once.
    r = await harness.restart()
    await eventually(lambda: len(compute.executions("result_accepted")) == 2, what="ResultAccepted again")
    published = pb.StorageSpec(name="noop")
    for _ in range(2):
        await r.on_publish_complete(
            job_id=job.id, shard_index=0, node_id="n1", execution_id=execution, published_result=published
        )
    assert r.shard(job.id).phase == Phase.COMPLETED
    info = await r.get_job(job.id)
    counts = collections.Counter(e.event_name for e in info.job_events)
    for name in (
        E.JOB_EVENT_TYPE_CREATED,
        E.JOB_EVENT_TYPE_BID,
        E.JOB_EVENT_TYPE_BID_ACCEPTED,
        E.JOB_EVENT_TYPE_RESULTS_PROPOSED,
        E.JOB_EVENT_TYPE_RESULTS_ACCEPTED,
        E.JOB_EVENT_TYPE_RESULTS_PUBLISHED,
    ):
        assert counts[name] == 1, E.Name(name)
    assert sum(counts.values()) == 6


async def test_verify_is_retried_until_the_verifier_is_back(harness):
    r, compute, verifier = harness.requester, harness.compute, harness.verifier
    verifier.error = UNREACHABLE
    await r.register_node(node("n1"))
    job = await r.submit(payload(timeout=60.0))
    (execution,) = await eventually(lambda: compute.executions("bid_accepted"), what="BidAccepted")
    await r.on_run_complete(job_id=job.id, shard_index=0, node_id="n1", execution_id=execution)
    await eventually(lambda: len(verifier.requests) >= 2, what="Verify retried")
    assert r.shard(job.id).phase == Phase.VERIFYING_RESULTS
    verifier.error = None
    await eventually(lambda: r.shard(job.id).phase == Phase.WAITING_TO_PUBLISH, what="verified")


async def test_a_stop_leaves_a_verification_waiting_on_the_verifier_for_the_next_start(harness):
    r, compute, verifier = harness.requester, harness.compute, harness.verifier
    verifier.error = UNREACHABLE
    await r.register_node(node("n1"))
    job = await r.submit(payload(timeout=60.0))
    (execution,) = await eventually(lambda: compute.executions("bid_accepted"), what="BidAccepted")
    await r.on_run_complete(job_id=job.id, shard_index=0, node_id="n1", execution_id=execution)
    await eventually(lambda: verifier.requests, what="Verify")
    r = await harness.restart()  # not a failure of the shard: it is verified after the restart
    verifier.error = None
    await eventually(lambda: r.shard(job.id).phase == Phase.WAITING_TO_PUBLISH, what="verified")
    assert E.JOB_EVENT_TYPE_ERROR not in [e.event_name for e in (await r.get_job(job.id)).job_events]


def test_resume_node_repeats_what_a_restarted_node_must_do():
    m = machine(concurrency=1)
    m.offer(["a"])
    m.on_bid("a", "e-a", T0, f.random.Random(1))
    assert m.resume_node("a").actions == [f.NotifyBidAccepted("a", "e-a")]
    assert m.resume_node("b").actions == []
    m.on_run_complete("a", "e-a", b"", None, T0)
    assert m.resume_node("a").actions == []  # its results are in: nothing to repeat
    m.on_verified([Verdict("e-a", "a", True)], T0)
    assert m.resume_node("a").actions == [f.NotifyResultAccepted("a", "e-a")]


class ForgetfulCompute(FakeCompute):
    """A compute stand-in whose node n1 lost its executions once `forgot` is set."""

    forgot = False

    async def update_executions(self, address, updates):
        results = await super().update_executions(address, updates)
        if not (self.forgot and address == "addr-n1"):
            return results
        return [
            NotFoundError(f"execution {u.execution_id} not found")
            if isinstance(u, f.NotifyBidAccepted)
            else r
            for u, r in zip(updates, results, strict=True)
        ]


async def test_a_node_that_registers_again_is_told_again_and_replaced_if_it_lost_the_execution(tmp_path):
    h = Harness(tmp_path)
    h.compute = compute = ForgetfulCompute()
    r = await h.start()
    try:
        await r.register_node(node("n1"))
        job = await r.submit(payload())
        (execution,) = await eventually(lambda: compute.executions("bid_accepted"), what="BidAccepted")
        await r.register_node(node("n2"))
        # n1 restarted having lost the execution (its last writes): the repeated BidAccepted fails with
        # NOT_FOUND, so the execution is lost and n2 replaces it.
        compute.forgot = True
        await r.register_node(node("n1"))
        await eventually(
            lambda: ("bid_accepted", "addr-n2") in [(n, a) for n, a, _ in compute.calls],
            what="n2 replaces n1",
        )
        shard = r.shard(job.id)
        assert shard.execution("n1").state == ExecState.FAILED
        assert shard.execution("n2").state == ExecState.ACCEPTED
        assert shard.phase == Phase.WAITING_FOR_RESULTS
        assert compute.executions("bid_accepted")[:2] == [execution, execution]
    finally:
        await h.stop()
