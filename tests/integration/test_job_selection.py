"""Capacity and job selection across real requester, compute and verifier servers: each refusal reaches
the job's events with its reason; a probe that cannot be reached refuses and the node keeps serving;
limits hold at start-up and at run time."""

import socket

import pytest
from aiohttp import web

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute import app as compute_app
from bacalhau_grpc.compute.settings import ComputeSettings
from tests.integration.network import E, Network, names, noop_job, of_type


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    yield net
    await net.stop()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def serve_probe(port: int, status: int = 200) -> web.AppRunner:
    """An HTTP probe on 127.0.0.1:`port` answering every POST with `status`."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_a_probe_refusal_is_in_the_job_s_events_and_another_node_runs_it(network):
    await network.start(compute=[{"job_selection_probe_exec": "grep -q '\"job_id\"' && exit 7"}])
    job = await network.submit(noop_job())
    refusal = await network.wait_for_event(job.id, E.JOB_EVENT_TYPE_BID_CANCELLED)
    assert refusal.source_node_id == network.computes[0].node_id
    assert refusal.status == (
        "declined to bid: command `grep -q '\"job_id\"' && exit 7` returned non-zero exit code 7"
    )
    helper = await network.add_compute()
    events = await network.wait_for_end(job.id)
    assert names(events)[-1] == "RESULTS_PUBLISHED"
    assert of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)[0].source_node_id == helper.node_id


async def test_an_unreachable_probe_url_is_a_refusal_and_the_node_keeps_serving(network):
    port = free_port()
    url = f"http://127.0.0.1:{port}/should-i-bid"
    await network.start(compute=[{"job_selection_probe_http": url}])
    node = network.computes[0]
    first = await network.submit(noop_job())
    refusal = await network.wait_for_event(first.id, E.JOB_EVENT_TYPE_BID_CANCELLED)
    assert refusal.source_node_id == node.node_id
    assert refusal.status.startswith(f"declined to bid: url `{url}` could not be reached: ")
    # The node is still serving: once the probe answers 200, it takes the next job.
    probe = await serve_probe(port)
    try:
        second = await network.submit(noop_job())
        events = await network.wait_for_end(second.id)
    finally:
        await probe.cleanup()
    assert names(events)[-1] == "RESULTS_PUBLISHED"
    assert of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)[0].source_node_id == node.node_id
    assert node.node.bids_refused == 1 and node.node.bids_accepted == 1


async def test_a_probe_answering_another_status_is_a_refusal_with_it(network):
    port = free_port()
    probe = await serve_probe(port, status=503)
    try:
        url = f"http://127.0.0.1:{port}/"
        await network.start(compute=[{"job_selection_probe_http": url}])
        job = await network.submit(noop_job())
        refusal = await network.wait_for_event(job.id, E.JOB_EVENT_TYPE_BID_CANCELLED)
    finally:
        await probe.cleanup()
    assert refusal.status == f"declined to bid: url `{url}` returned 503 status code"


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"job_selection_reject_stateless": True}, "stateless jobs not accepted"),
        (
            {"limit_total_cpu": "2", "limit_job_cpu": "1"},
            "job requirements exceed max allowed per job: cpu 2 > 1",
        ),
    ],
)
async def test_node_policies_refuse_with_their_reason(network, settings, reason):
    await network.start(compute=[settings])
    job = noop_job()
    job.spec.resources.cpu = "2"
    job = await network.submit(job)
    refusal = await network.wait_for_event(job.id, E.JOB_EVENT_TYPE_BID_CANCELLED)
    assert refusal.status == f"declined to bid: {reason}"


async def test_locality_local_refuses_a_job_whose_inputs_are_elsewhere(network):
    await network.start(compute=[{"job_selection_data_locality": "local"}])
    job = noop_job()
    job.spec.inputs.add(
        storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD,
        url="https://example.com/data.csv",
        path="/inputs/data.csv",
    )
    job = await network.submit(job)
    refusal = await network.wait_for_event(job.id, E.JOB_EVENT_TYPE_BID_CANCELLED)
    assert (refusal.source_node_id, refusal.status) == (
        network.computes[0].node_id,
        "declined to bid: not all inputs are local",
    )
    anywhere = await network.add_compute(job_selection_data_locality="anywhere")
    events = await network.wait_for_end(job.id)
    assert of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)[0].source_node_id == anywhere.node_id


async def test_four_one_cpu_jobs_on_a_two_cpu_node_run_at_most_two_at_a_time(network):
    delay = 0.5
    await network.start(compute=[{"limit_total_cpu": "2", "noop_delay": delay}])
    jobs = []
    for _ in range(4):
        job = noop_job()
        job.spec.resources.cpu = "1"
        jobs.append(await network.submit(job))
    accepted, proposed = [], []
    for job in jobs:
        events = await network.wait_for_end(job.id)
        assert names(events)[-1] == "RESULTS_PUBLISHED"
        accepted += [_seconds(e) for e in of_type(events, E.JOB_EVENT_TYPE_BID_ACCEPTED)]
        proposed += [_seconds(e) for e in of_type(events, E.JOB_EVENT_TYPE_RESULTS_PROPOSED)]
    # Every run takes `delay`; two at a time, the third result comes two runs after the first start
    # (four at once would have all four results after one run).
    proposed.sort()
    assert proposed[2] - min(accepted) >= 2 * delay, (accepted, proposed)
    assert network.computes[0].node.tracker.running == pb.ResourceUsageData()


async def test_a_node_busy_when_asked_is_asked_again_as_soon_as_it_has_room(network):
    """A one-CPU node over-commits to two one-CPU jobs (one runs, one waits): it refuses the third and
    fourth as busy, heartbeats early once a run ends, and the requester asks it again. Heartbeats are
    otherwise 30 s apart, so only the early one can get the jobs through within the wait."""
    await network.start(
        compute=[{"limit_total_cpu": "1", "noop_delay": 2.0}],
        heartbeat_interval=30.0,
        node_timeout=60.0,
        negotiation_timeout=60.0,
    )
    node = network.computes[0]
    job = noop_job()
    job.spec.resources.cpu = "1"
    jobs = [await network.submit(job), await network.submit(job)]
    await network.wait_until(lambda: node.node.tracker.queue_length() == 1, what="one run and one queued")
    # The node's claims are full: it refuses the next two as busy.
    jobs += [await network.submit(job), await network.submit(job)]
    busy_refusals = 0
    for job in jobs:
        events = await network.wait_for_end(job.id, timeout=30.0)
        assert names(events)[-1] == "RESULTS_PUBLISHED", names(events)
        refusals = of_type(events, E.JOB_EVENT_TYPE_BID_CANCELLED)
        assert all(
            e.status == "declined to bid: not enough capacity available (busy: asked again once it has room)"
            for e in refusals
        ), [e.status for e in refusals]
        busy_refusals += len(refusals)
        assert of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)[0].source_node_id == node.node_id
    assert busy_refusals >= 2 and node.node.bids_refused == busy_refusals


async def test_a_node_that_refuses_for_good_is_not_asked_again_on_its_heartbeats(network):
    await network.start(
        compute=[{"limit_job_cpu": "1"}], heartbeat_interval=0.2, node_timeout=5.0, negotiation_timeout=60.0
    )
    job = noop_job()
    job.spec.resources.cpu = "2"
    job = await network.submit(job)
    refusal = await network.wait_for_event(job.id, E.JOB_EVENT_TYPE_BID_CANCELLED)
    assert refusal.status == "declined to bid: job requirements exceed max allowed per job: cpu 2 > 1"
    node = network.computes[0]
    heartbeats = node.client.heartbeats
    await network.wait_until(lambda: node.client.heartbeats >= heartbeats + 3, what="three more heartbeats")
    assert node.node.bids_refused == 1


def _seconds(event: pb.JobEvent) -> float:
    return event.event_time.ToNanoseconds() / 1e9


async def test_limits_that_cannot_work_stop_the_node_at_start_up_naming_the_setting(tmp_path):
    for overrides, field in [
        ({"limit_job_cpu": "50m"}, "limit_job_cpu"),
        ({"limit_total_memory": "1Gb", "limit_job_memory": "2Gb"}, "limit_job_memory"),
    ]:
        settings = ComputeSettings(data_dir=tmp_path / field, requester_address="127.0.0.1:1", **overrides)
        with pytest.raises(InvalidArgumentError) as error:
            await compute_app.start(settings)
        assert error.value.field == field
