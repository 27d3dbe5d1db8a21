"""The requester domain service with a real SQLite store and stand-in ports (compute nodes, verifier)."""

import asyncio
import contextlib
import time

import pytest

from bacalhau_grpc.common.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.lifecycle import Requester
from bacalhau_grpc.requester.domain.liveness import REOFFER_GAP
from bacalhau_grpc.requester.domain.shard_fsm import ExecState, Phase
from tests.unit.requester.fakes import UNREACHABLE, FakeCompute, Harness, eventually

E = pb.JobEventType
S = pb.JobStateType
L = pb.JobLocalEventType


def payload(
    concurrency=1, min_bids=0, confidence=0, timeout=0.0, client="client-1", tags=()
) -> pb.JobCreatePayload:
    p = pb.JobCreatePayload(client_id=client)
    p.job.spec.engine = pb.Engine.ENGINE_NOOP
    p.job.spec.timeout = timeout
    p.job.spec.annotations.extend(tags)
    p.job.deal.concurrency = concurrency
    p.job.deal.min_bids = min_bids
    p.job.deal.confidence = confidence
    return p


def node(name: str) -> pb.NodeInfo:
    return pb.NodeInfo(node_id=name, address=f"addr-{name}", engines=[pb.Engine.ENGINE_NOOP])


def event_names(job_or_events) -> list[str]:
    events = job_or_events.job_events if isinstance(job_or_events, pb.JobWithInfo) else job_or_events
    return [E.Name(e.event_name).removeprefix("JOB_EVENT_TYPE_") for e in events]


def execution_of(compute: FakeCompute, address: str, method: str = "bid_accepted") -> str:
    return next(args for name, addr, args in compute.calls if name == method and addr == address)


async def run_to_completion(r: Requester, compute: FakeCompute, job_id: str, node_name: str = "n1") -> None:
    execution = await eventually(
        lambda: next(
            (a for n, addr, a in compute.calls if n == "bid_accepted" and addr == f"addr-{node_name}"), None
        ),
        what="BidAccepted call",
    )
    await r.on_run_complete(
        job_id=job_id,
        shard_index=0,
        node_id=node_name,
        execution_id=execution,
        verification_proposal=b"",
        run_output=pb.RunCommandResult(stdout="hello\n", exit_code=0),
    )
    await eventually(
        lambda: ("result_accepted", f"addr-{node_name}", execution) in compute.calls, what="ResultAccepted"
    )
    await r.on_publish_complete(
        job_id=job_id,
        shard_index=0,
        node_id=node_name,
        execution_id=execution,
        published_result=pb.StorageSpec(name="noop", metadata={"publisher": "Noop"}),
    )


async def test_happy_path_has_the_six_events_of_v03(harness):
    r, compute = harness.requester, harness.compute
    await r.register_node(node("n1"))
    job = await r.submit(payload())
    assert job.id and job.requester_node_id == "requester-test" and job.client_id == "client-1"
    assert job.spec.timeout == 600.0 and job.execution_plan.total_shards == 1
    await run_to_completion(r, compute, job.id)
    info = await r.get_job(job.id)
    assert event_names(info) == [
        "CREATED",
        "BID",
        "BID_ACCEPTED",
        "RESULTS_PROPOSED",
        "RESULTS_ACCEPTED",
        "RESULTS_PUBLISHED",
    ]
    created = info.job_events[0]
    assert created.source_node_id == "requester-test" and created.client_id == "client-1"
    assert created.spec.engine == pb.Engine.ENGINE_NOOP and created.deal.concurrency == 1
    assert created.job_execution_plan.total_shards == 1
    assert all(e.api_version == "V1beta1" and e.job_id == job.id for e in info.job_events)
    assert all(e.event_time.nanos % 1000 == 0 for e in info.job_events)
    row = info.job_state.nodes["n1"].shards[0]
    assert row.state == S.JOB_STATE_TYPE_COMPLETED
    assert row.run_output.stdout == "hello\n"
    assert row.verification_result.complete and row.verification_result.result
    assert [e.event_name for e in info.job_local_events] == [
        L.JOB_LOCAL_EVENT_TYPE_BID_ACCEPTED,
        L.JOB_LOCAL_EVENT_TYPE_VERIFIED,
    ]
    assert r.shard(job.id).phase == Phase.COMPLETED
    (result,) = await r.get_job_results(job.id)
    assert result.node_id == "n1" and result.shard_index == 0 and result.data.name == "noop"
    assert r.armed_timers == 0 and r.active_jobs == 0


async def test_a_refused_bid_carries_its_reason_into_the_events(harness):
    r, compute = harness.requester, harness.compute
    compute.answers["addr-n2"] = ("decline", "not enough capacity available")
    compute.answers["addr-n3"] = UNREACHABLE
    for name in ("n1", "n2", "n3"):
        await r.register_node(node(name))
    job = await r.submit(payload(min_bids=3))  # MinBids 3: all three nodes are asked
    await eventually(lambda: len(_events(r, job.id)) >= 4, what="created, a bid and two refusals")
    info = await r.get_job(job.id)
    statuses = {
        e.source_node_id: e.status for e in info.job_events if e.event_name == E.JOB_EVENT_TYPE_BID_CANCELLED
    }
    assert statuses == {
        "n2": "declined to bid: not enough capacity available",
        "n3": "could not ask for a bid: connection refused",
    }
    assert info.job_state.nodes["n2"].shards[0].state == S.JOB_STATE_TYPE_CANCELLED


async def test_only_the_nodes_needed_are_asked_and_a_refusal_is_replaced(harness):
    r, compute = harness.requester, harness.compute
    compute.answers["addr-n1"] = ("decline", "executor Docker not installed")
    await r.register_node(node("n1"))
    job = await r.submit(payload())
    await eventually(lambda: len(_events(r, job.id)) >= 2, what="the refusal")
    assert r.shard(job.id).asked == ["n1"]
    await r.register_node(node("n2"))  # the shard still wants a bid: the new node is asked
    await r.register_node(node("n3"))
    await eventually(
        lambda: any(e.event_name == E.JOB_EVENT_TYPE_BID_ACCEPTED for e in _events(r, job.id)), what="a bid"
    )
    assert r.shard(job.id).asked == ["n1", "n2"]  # n3 registered after the slot was filled: not asked


def _events(r: Requester, job_id: str) -> list[pb.JobEvent]:
    record = r._lookup(job_id)
    return list(record.events) if record else []


async def test_get_job_by_id_prefix_and_errors(harness):
    r = harness.requester
    jobs = [await r.submit(payload()) for _ in range(3)]
    first = jobs[0]
    assert (await r.get_job(first.id)).job.id == first.id
    assert (await r.get_job(first.id[:12])).job.id == first.id
    with pytest.raises(NotFoundError, match="job nothing-like-it not found"):
        await r.get_job("nothing-like-it")
    with pytest.raises(InvalidArgumentError) as caught:
        await r.get_job("")
    assert caught.value.field == "job_id"
    # Force an ambiguous prefix: two IDs sharing their first characters.
    harness.store.add_job(_job_with_id("abc-1"))
    harness.store.add_job(_job_with_id("abc-2"))
    with pytest.raises(InvalidArgumentError) as caught:
        await r.get_job("abc")
    assert caught.value.field == "job_id"
    assert "abc-1, abc-2" in str(caught.value)


def _job_with_id(job_id: str) -> pb.Job:
    job = pb.Job(id=job_id)
    job.created_at.FromMicroseconds(1)
    return job


async def test_callbacks_are_checked(harness):
    r, compute = harness.requester, harness.compute
    await r.register_node(node("n1"))
    job = await r.submit(payload())
    execution = await eventually(lambda: compute.executions("bid_accepted"), what="BidAccepted")
    with pytest.raises(NotFoundError):
        await r.on_run_complete(job_id="no-such-job", shard_index=0, node_id="n1", execution_id=execution[0])
    with pytest.raises(PermissionDeniedError, match="holds no execution of shard"):
        await r.on_run_complete(job_id=job.id, shard_index=0, node_id="stranger", execution_id="e-x")
    with pytest.raises(PermissionDeniedError, match="does not exist"):
        await r.on_compute_failure(
            job_id=job.id, shard_index=5, node_id="n1", execution_id=execution[0], error="x"
        )
    with pytest.raises(FailedPreconditionError, match="were not accepted"):
        await r.on_publish_complete(job_id=job.id, shard_index=0, node_id="n1", execution_id=execution[0])
    info = await r.get_job(job.id)
    invalid = [e for e in info.job_events if e.event_name == E.JOB_EVENT_TYPE_INVALID_REQUEST]
    # Only the holder's invalid report is recorded; the stranger and the missing shard leave nothing.
    assert [e.target_node_id for e in invalid] == ["n1"]
    assert "stranger" not in info.job_state.nodes
    assert r.shard(job.id).phase == Phase.WAITING_FOR_RESULTS


async def test_compute_failure_fails_the_shard(harness):
    r, compute = harness.requester, harness.compute
    await r.register_node(node("n1"))
    job = await r.submit(payload())
    (execution,) = await eventually(lambda: compute.executions("bid_accepted"), what="BidAccepted")
    await r.on_compute_failure(
        job_id=job.id, shard_index=0, node_id="n1", execution_id=execution, error="no docker"
    )
    info = await r.get_job(job.id)
    assert event_names(info)[-2:] == ["COMPUTE_ERROR", "ERROR"]
    assert info.job_state.nodes["n1"].shards[0].status == "no docker"
    assert (
        "no node left to replace node n1 (failed: no docker)"
        in info.job_state.nodes["requester-test"].shards[0].status
    )
    assert r.shard(job.id).phase == Phase.ERROR


async def test_a_failing_verifier_fails_the_shard(harness):
    r, compute = harness.requester, harness.compute
    harness.verifier.error = UNREACHABLE
    await r.register_node(node("n1"))
    # An unreachable verifier is retried with back-off until the job's timeout is about to run out.
    job = await r.submit(payload(timeout=1.0))
    (execution,) = await eventually(lambda: compute.executions("bid_accepted"), what="BidAccepted")
    await r.on_run_complete(job_id=job.id, shard_index=0, node_id="n1", execution_id=execution)
    await eventually(lambda: r.shard(job.id).is_terminal, what="shard end")
    assert r.shard(job.id).status == "failed to verify job: connection refused"
    assert len(harness.verifier.requests) >= 3
    await eventually(lambda: compute.executions("cancel_execution") == [execution], what="CancelExecution")


async def test_deterministic_style_rejection_reaches_the_events(harness):
    r, compute = harness.requester, harness.compute
    harness.verifier.reject = {"n2": "the result differs from the majority"}
    for name in ("n1", "n2", "n3"):
        await r.register_node(node(name))
    job = await r.submit(payload(concurrency=3, min_bids=3, confidence=2))
    accepted = await eventually(lambda: len(compute.executions("bid_accepted")) == 3 and compute.calls)
    by_node = {addr.removeprefix("addr-"): a for n, addr, a in accepted if n == "bid_accepted"}
    for name, execution in by_node.items():
        await r.on_run_complete(job_id=job.id, shard_index=0, node_id=name, execution_id=execution)
    await eventually(lambda: r.shard(job.id).phase == Phase.WAITING_TO_PUBLISH, what="verdicts")
    info = await r.get_job(job.id)
    rejected = [e for e in info.job_events if e.event_name == E.JOB_EVENT_TYPE_RESULTS_REJECTED]
    assert [(e.target_node_id, e.status) for e in rejected] == [
        ("n2", "the result differs from the majority")
    ]
    await eventually(lambda: compute.executions("result_rejected") == [by_node["n2"]], what="ResultRejected")
    for name in ("n1", "n3"):
        await r.on_publish_complete(job_id=job.id, shard_index=0, node_id=name, execution_id=by_node[name])
    assert r.shard(job.id).phase == Phase.COMPLETED
    assert sorted(res.node_id for res in await r.get_job_results(job.id)) == ["n1", "n3"]


async def test_list_jobs_pages_filters_and_sorts(harness):
    r = harness.requester
    ids = []
    for i in range(25):
        job = await r.submit(
            payload(client="c-even" if i % 2 == 0 else "c-odd", tags=["canary"] if i % 5 == 0 else [])
        )
        ids.append(job.id)
    seen, token = [], ""
    while True:
        page, token = await r.list_jobs(page_size=10, page_token=token)
        seen += [j.id for j in page]
        assert len(page) <= 10
        if not token:
            break
    assert seen == ids  # creation order, every job once
    by_id, _ = await r.list_jobs(sort_by="id", page_size=1000)
    assert [j.id for j in by_id] == sorted(ids)
    newest, _ = await r.list_jobs(reverse=True, page_size=3)
    assert [j.id for j in newest] == ids[::-1][:3]
    odd, _ = await r.list_jobs(client_id="c-odd")
    assert [j.id for j in odd] == ids[1::2]
    canaries, _ = await r.list_jobs(include_tags=["canary"])
    assert [j.id for j in canaries] == ids[::5]
    rest, _ = await r.list_jobs(exclude_tags=["canary"])
    assert len(rest) == 20
    prefixed, _ = await r.list_jobs(id_prefix=ids[3][:10])
    assert ids[3] in [j.id for j in prefixed]
    default_page, token = await r.list_jobs()
    assert len(default_page) == 25 and token == ""
    assert all(len(j.events) == 0 for j in default_page)
    _, token = await r.list_jobs(page_size=5)
    with pytest.raises(InvalidArgumentError) as caught:
        await r.list_jobs(page_size=5, page_token=token, client_id="c-odd")
    assert caught.value.field == "page_token"
    with pytest.raises(InvalidArgumentError) as caught:
        await r.list_jobs(page_token="garbage!")
    assert caught.value.field == "page_token"
    with pytest.raises(InvalidArgumentError):
        await r.list_jobs(page_size=-1)


async def test_page_size_is_capped(harness):
    r = harness.requester
    for _ in range(3):
        await r.submit(payload())
    page, token = await r.list_jobs(page_size=100_000)
    assert len(page) == 3 and token == ""


async def test_list_job_events_pages(harness):
    r, compute = harness.requester, harness.compute
    await r.register_node(node("n1"))
    job = await r.submit(payload())
    await run_to_completion(r, compute, job.id)
    events, token = await r.list_job_events(job.id, page_size=4)
    rest, last = await r.list_job_events(job.id, page_size=4, page_token=token)
    assert event_names(events + rest) == event_names(await r.get_job(job.id))
    assert last == ""
    other = await r.submit(payload())
    with pytest.raises(InvalidArgumentError):
        await r.list_job_events(other.id, page_token=token)


async def test_watch_replays_then_follows_until_the_job_ends(harness):
    r, compute = harness.requester, harness.compute
    await r.register_node(node("n1"))
    job = await r.submit(payload())
    await eventually(lambda: compute.executions("bid_accepted"), what="BidAccepted")
    received: list[tuple[int, pb.JobEvent]] = []

    async def watch():
        async for item in await r.watch_job_events(job.id):
            received.append(item)

    watcher = asyncio.create_task(watch())
    await eventually(lambda: len(received) == 3, what="replay")
    assert not watcher.done()
    await run_to_completion(r, compute, job.id)
    await asyncio.wait_for(watcher, 5)
    assert [seq for seq, _ in received] == [1, 2, 3, 4, 5, 6]
    assert event_names([e for _, e in received])[-1] == "RESULTS_PUBLISHED"
    # Replay from a sequence number, on a finished job: returns at once.
    tail = [seq async for seq, _ in await r.watch_job_events(job.id, after_sequence=4)]
    assert tail == [5, 6]


async def test_negotiation_times_out_exactly(tmp_path):
    h = Harness(tmp_path, negotiation_timeout=0.05)
    r = await h.start()
    try:
        job = await r.submit(payload())
        assert r.armed_timers == 1
        await eventually(lambda: r.shard(job.id).is_terminal, what="negotiation timeout")
        info = await r.get_job(job.id)
        assert event_names(info) == ["CREATED", "ERROR"]
        assert info.job_events[-1].status == "negotiation timed out: 0 of 1 bids accepted"
        elapsed = (
            info.job_events[-1].event_time.ToMicroseconds() - info.job_events[0].event_time.ToMicroseconds()
        )
        assert 50_000 <= elapsed < 1_000_000
    finally:
        await h.stop()


async def test_a_node_registering_later_is_offered_pending_shards(harness):
    r, compute = harness.requester, harness.compute
    job = await r.submit(payload())
    assert compute.calls == []
    await r.register_node(node("late"))
    await eventually(lambda: r.shard(job.id).phase == Phase.WAITING_FOR_RESULTS, what="late bid accepted")
    assert compute.executions("ask_for_bid") == [job.id]


async def test_heartbeats(tmp_path):
    now = [1_000.0]
    h = Harness(tmp_path, clock=lambda: now[0], node_timeout=10.0)
    r = await h.start()
    try:
        with pytest.raises(NotFoundError, match="register again"):
            await r.heartbeat("ghost")
        await r.register_node(node("n1"))
        now[0] += 30  # n1 falls silent: it is not offered jobs
        job = await r.submit(payload())
        assert r.shard(job.id).asked == []
        await r.heartbeat("n1")  # back: offered the pending shard
        await eventually(
            lambda: r.shard(job.id).phase == Phase.WAITING_FOR_RESULTS, what="bid after heartbeat"
        )
        with pytest.raises(InvalidArgumentError):
            await r.register_node(pb.NodeInfo(node_id="x"))
    finally:
        await h.stop()


async def test_a_busy_node_is_asked_again_on_its_next_heartbeat_and_a_refusing_one_is_not(harness):
    r, compute = harness.requester, harness.compute
    compute.answers["addr-n1"] = ("busy", "not enough capacity available")
    compute.answers["addr-n2"] = ("decline", "executor Docker not installed")
    await r.register_node(node("n1"))
    await r.register_node(node("n2"))
    job = await r.submit(payload())
    await eventually(lambda: len(_events(r, job.id)) >= 3, what="created and two refusals")
    assert r.shard(job.id).busy == ["n1"] and r.shard(job.id).declined == ["n2"]
    await r.heartbeat("n2")  # refused for good: not asked again
    compute.answers["addr-n1"] = "bid"  # n1 has room now; its heartbeat says so
    await r.heartbeat("n1")
    await eventually(lambda: r.shard(job.id).phase == Phase.WAITING_FOR_RESULTS, what="n1's second answer")
    assert [address for name, address, _ in compute.calls if name == "ask_for_bid"].count("addr-n2") == 1
    assert compute.executions("ask_for_bid") == [job.id] * 3


async def test_a_busy_node_heartbeating_in_a_tight_loop_is_offered_its_shards_once_per_gap(harness):
    """A node that always answers busy and floods heartbeats costs one pass over the bidding shards per
    REOFFER_GAP, not one per heartbeat; the offer put off is still made at the end of the gap."""
    r, compute = harness.requester, harness.compute
    compute.answers["addr-n1"] = ("busy", "not enough capacity available")
    await r.register_node(node("n1"))
    job = await r.submit(payload())
    await eventually(lambda: r.shard(job.id).busy == ["n1"], what="the first busy refusal")
    await r.heartbeat("n1")  # offered again at once: asked a second time
    await eventually(lambda: r.shard(job.id).busy == ["n1"], what="the second busy refusal")
    began = time.monotonic()
    for _ in range(100):  # each heartbeat comes once the node has refused again (when it was asked)
        await r.heartbeat("n1")
        await eventually(lambda: r.shard(job.id).busy == ["n1"], what="a busy refusal")
    gaps = (time.monotonic() - began) / REOFFER_GAP
    asks = len(compute.executions("ask_for_bid"))
    assert asks <= 3 + gaps < 100, (asks, gaps)  # one ask per heartbeat would be 102
    await eventually(
        lambda: len(compute.executions("ask_for_bid")) > asks, what="the offer put off to the gap"
    )


async def test_a_restarting_node_is_told_its_bid_was_accepted_once_it_answers_again(harness):
    """While a live node cannot be reached, BidAccepted is retried (it may be restarting), not given up."""
    r, compute = harness.requester, harness.compute
    await r.register_node(node("n1"))
    compute.fail["bid_accepted"] = UNREACHABLE
    job = await r.submit(payload())
    await eventually(lambda: len(compute.executions("bid_accepted")) >= 3, what="BidAccepted retried")
    assert r.shard(job.id).execution("n1").state == ExecState.ACCEPTED  # not failed meanwhile
    del compute.fail["bid_accepted"]
    calls = len(compute.executions("bid_accepted"))
    await eventually(
        lambda: len(compute.executions("bid_accepted")) == calls + 1, what="the call that got through"
    )
    assert r.shard(job.id).execution("n1").state == ExecState.ACCEPTED
    assert not any(e.event_name == pb.JobEventType.JOB_EVENT_TYPE_ERROR for e in _events(r, job.id))


async def test_cancel_by_the_owner_cancels_every_execution(harness):
    r, compute = harness.requester, harness.compute
    await r.register_node(node("n1"))
    job = await r.submit(payload())
    (execution,) = await eventually(lambda: compute.executions("bid_accepted"), what="BidAccepted")
    cancelled = await r.cancel_job(job.id, client_id="client-1", reason="changed my mind")
    status = "cancelled by the client: changed my mind"
    assert cancelled.state.nodes["n1"].shards[0].state == S.JOB_STATE_TYPE_CANCELLED
    assert cancelled.state.nodes["n1"].shards[0].status == status
    await eventually(lambda: ("cancel_execution", "addr-n1", execution) in compute.calls, what="Cancel")
    info = await r.get_job(job.id)
    assert event_names(info)[-1] == "BID_CANCELLED"
    assert r.shard(job.id).phase == Phase.CANCELLED and r.active_jobs == 0 and r.armed_timers == 0
    # Idempotent: a second cancel succeeds and records nothing new.
    await r.cancel_job(job.id[:8], client_id="client-1")
    assert len((await r.get_job(job.id)).job_events) == len(info.job_events)


async def test_a_cancel_is_retried_while_the_node_cannot_be_reached_and_is_still_alive(harness):
    r, compute = harness.requester, harness.compute
    await r.register_node(node("n1"))
    job = await r.submit(payload())
    (execution,) = await eventually(lambda: compute.executions("bid_accepted"), what="BidAccepted")
    compute.fail["cancel_execution"] = UNREACHABLE
    await r.cancel_job(job.id, client_id="client-1")
    await eventually(lambda: len(compute.executions("cancel_execution")) >= 3, what="Cancel retried")
    del compute.fail["cancel_execution"]
    calls = len(compute.executions("cancel_execution"))
    await eventually(
        lambda: len(compute.executions("cancel_execution")) == calls + 1, what="the cancel that got through"
    )
    assert set(compute.executions("cancel_execution")) == {execution}


async def test_cancel_is_checked(harness):
    r, compute = harness.requester, harness.compute
    await r.register_node(node("n1"))
    job = await r.submit(payload())
    for anonymous in ("", None):  # the caller's verified ClientID is required
        with pytest.raises(UnauthenticatedError, match="cancelling a job needs your identity"):
            await r.cancel_job(job.id, client_id=anonymous)
    with pytest.raises(PermissionDeniedError, match="another client"):
        await r.cancel_job(job.id, client_id="intruder")
    with pytest.raises(NotFoundError):
        await r.cancel_job("missing", client_id="client-1")
    await run_to_completion(r, compute, job.id)
    await eventually(lambda: r.active_jobs == 0, what="job completed")
    with pytest.raises(FailedPreconditionError, match=r"already ended \(Completed\)"):
        await r.cancel_job(job.id, client_id="client-1")


async def test_cancel_while_bidding_ends_the_job_cancelled(harness):
    r = harness.requester
    job = await r.submit(payload())  # no node: the shard waits for bids
    cancelled = await r.cancel_job(job.id, client_id="client-1")
    assert cancelled.state.nodes["requester-test"].shards[0].state == S.JOB_STATE_TYPE_CANCELLED
    assert r.shard(job.id).phase == Phase.CANCELLED and r.armed_timers == 0


async def test_a_failed_node_is_replaced_by_another_and_never_asked_again(harness):
    r, compute = harness.requester, harness.compute
    for name in ("n1", "n2", "n3"):
        await r.register_node(node(name))
    job = await r.submit(payload())
    (first,) = await eventually(lambda: compute.executions("bid_accepted"), what="BidAccepted")
    failed = next(n for n, e in r.shard(job.id).executions.items() if e.execution_id == first)
    deadline = r.shard(job.id).execution_deadline
    await r.on_compute_failure(job_id=job.id, shard_index=0, node_id=failed, execution_id=first, error="oom")
    await eventually(lambda: len(compute.executions("bid_accepted")) == 2, what="replacement accepted")
    shard = r.shard(job.id)
    assert shard.phase == Phase.WAITING_FOR_RESULTS and shard.execution_deadline == deadline
    replacement = next(n for n, e in shard.executions.items() if e.state == "Accepted")
    assert replacement != failed and shard.replaced == [failed]
    asked = [addr for name, addr, _ in compute.calls if name == "ask_for_bid"]
    assert asked.count(f"addr-{failed}") == 1
    names_ = event_names(await r.get_job(job.id))
    assert names_[names_.index("COMPUTE_ERROR") :][:3] == ["COMPUTE_ERROR", "BID", "BID_ACCEPTED"]
    await run_to_completion(r, compute, job.id, node_name=replacement)
    await eventually(lambda: r.shard(job.id).phase == Phase.COMPLETED, what="completed on the replacement")


async def test_a_silent_node_holding_an_execution_is_replaced(tmp_path):
    h = Harness(tmp_path, node_timeout=0.3)
    r = await h.start()
    try:
        await r.register_node(node("n1"))
        job = await r.submit(payload())
        await eventually(lambda: r.shard(job.id).phase == Phase.WAITING_FOR_RESULTS, what="n1 accepted")
        await r.register_node(node("n2"))

        async def keep_n2_alive():
            while True:
                await r.heartbeat("n2")
                await asyncio.sleep(0.05)

        beating = asyncio.create_task(keep_n2_alive())
        try:
            await eventually(
                lambda: (
                    r.shard(job.id).execution("n2") is not None
                    and r.shard(job.id).phase == Phase.WAITING_FOR_RESULTS
                ),
                what="n2 replaces the silent n1",
            )
        finally:
            beating.cancel()
        info = await r.get_job(job.id)
        error = next(e for e in info.job_events if e.event_name == E.JOB_EVENT_TYPE_COMPUTE_ERROR)
        assert error.source_node_id == "n1" and "stopped sending heartbeats" in error.status
        assert info.job_state.nodes["n1"].shards[0].state == S.JOB_STATE_TYPE_ERROR
    finally:
        await h.stop()


async def test_a_restart_keeps_jobs_and_rearms_deadlines(harness):
    r, compute = harness.requester, harness.compute
    await r.register_node(node("n1"))
    done = await r.submit(payload(tags=["keep"]))
    await run_to_completion(r, compute, done.id)
    running = await r.submit(payload(timeout=300))
    (execution,) = await eventually(
        lambda: [
            a for n, _, a in compute.calls if n == "bid_accepted" and a != execution_of(compute, "addr-n1")
        ],
        what="second BidAccepted",
    )
    before = r.shard(running.id)
    deadline = before.execution_deadline
    done_events = event_names(await r.get_job(done.id))

    r = await harness.restart()
    assert r.active_jobs == 1 and r.armed_timers == 1
    again = r.shard(running.id)
    assert again.phase == Phase.WAITING_FOR_RESULTS and again.execution_deadline == deadline
    assert event_names(await r.get_job(done.id)) == done_events
    listed, _ = await r.list_jobs()
    assert [j.id for j in listed] == [done.id, running.id]
    assert (await r.get_job(done.id[:8])).job.id == done.id
    # The reloaded machine carries on: the node (known from the store) reports its results.
    await r.on_run_complete(job_id=running.id, shard_index=0, node_id="n1", execution_id=execution)
    await eventually(
        lambda: r.shard(running.id).phase == Phase.WAITING_TO_PUBLISH, what="verified after restart"
    )
    await r.on_publish_complete(job_id=running.id, shard_index=0, node_id="n1", execution_id=execution)
    assert r.shard(running.id).phase == Phase.COMPLETED
    assert r.armed_timers == 0


async def test_a_verification_interrupted_by_a_restart_is_redone(harness):
    r, compute = harness.requester, harness.compute
    gate = asyncio.Event()
    original = harness.verifier.verify_shards

    async def slow_verify(*args):
        await gate.wait()
        return await original(*args)

    harness.verifier.verify_shards = slow_verify
    await r.register_node(node("n1"))
    job = await r.submit(payload())
    (execution,) = await eventually(lambda: compute.executions("bid_accepted"), what="BidAccepted")
    await r.on_run_complete(job_id=job.id, shard_index=0, node_id="n1", execution_id=execution)
    assert r.shard(job.id).phase == Phase.VERIFYING_RESULTS
    with contextlib.suppress(Exception):
        await r.stop(0.01)  # the verification in flight is cut off
    await harness.store.close()
    harness.requester = None
    harness.verifier.verify_shards = original
    r = await harness.start()
    await eventually(lambda: r.shard(job.id).phase == Phase.WAITING_TO_PUBLISH, what="verification redone")


async def test_closing_watches_ends_open_streams_with_unavailable(harness):
    r = harness.requester
    job = await r.submit(payload())
    stream = await r.watch_job_events(job.id)
    assert (await anext(stream))[0] == 1
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    assert not waiting.done()
    r.close_watches()
    with pytest.raises(UnavailableError, match="after_sequence=1"):
        await asyncio.wait_for(waiting, 5)
