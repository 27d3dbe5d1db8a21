"""Load and faults: jobs submitted as fast as the network takes them while the requester, one compute node
and the verifier are each killed with SIGKILL and started again (same command line, address, node ID and
data dir) at random points of the run, on a devstack of separate processes on loopback, with TLS.

Half the jobs are noop jobs at concurrency 1 (noop verifier), half at concurrency 2 with the deterministic
verifier (so the verifier's death matters too). Each kill falls when a random share (15-85 %) of the jobs
has ended; the node stays down 0.5-2 s. Then, once every acknowledged job has ended (or the deadline is
past), it prints:

- jobs acknowledged, completed, ended in error (with the reasons), and lost: acknowledged but never
  ended, or unknown to the requester (goal 0);
- duplicated publications: a node publishing one shard twice (goal 0);
- events duplicated (an event one node records once per shard, twice) or missing (a completed job
  without its Created event, or whose publisher's lifecycle is not Bid, BidAccepted, ResultsProposed,
  ResultsAccepted, ResultsPublished in that order) (goal 0);
- for each kill: the completion rate in the 5 s before it, the lowest 1-s rate after it, and the time
  from the kill until the rate is back to 80 % of the rate before.

Submissions that fail because the requester is down are retried with the job's submission ID, so a retry
whose first attempt's answer was lost gets that job back; a job the requester lists that no submission was
answered with is counted as "unacknowledged" (made twice: goal 0). A job that ended in Error counts as a
fault's doing (goal 0: a restarted service is not a failed one).

`--soak-minutes M` runs the soak instead: steady load at 70 % of the peak measured in a first 20 s, for
M minutes, printing per minute the p50/p99 of submit-to-end latency and each service's RSS.

Run with `make chaos` (10,000 jobs) or `python -m bench.chaos --jobs 500`; the exit status is 1 when any
job was lost, ended in error or was made twice, a publication was duplicated, or an event was duplicated
or missing.
"""

import argparse
import asyncio
import collections
import dataclasses
import os
import random
import signal
import statistics
import sys
import tempfile
import time

import grpc

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.devstack import Devstack, Node
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from bench.bench_network import bench_job
from bench.measure import p99, rss

E = pb.JobEventType
POLL_SECONDS = 0.25
RETRY_SECONDS = 0.2
CALL_TIMEOUT = 10.0
# Events one node records at most once per shard (keyed by type, source, target, shard).
ONCE = {
    E.JOB_EVENT_TYPE_CREATED,
    E.JOB_EVENT_TYPE_BID,
    E.JOB_EVENT_TYPE_BID_ACCEPTED,
    E.JOB_EVENT_TYPE_BID_REJECTED,
    E.JOB_EVENT_TYPE_RESULTS_PROPOSED,
    E.JOB_EVENT_TYPE_RESULTS_ACCEPTED,
    E.JOB_EVENT_TYPE_RESULTS_REJECTED,
    E.JOB_EVENT_TYPE_RESULTS_PUBLISHED,
}
LIFECYCLE = [
    E.JOB_EVENT_TYPE_BID,
    E.JOB_EVENT_TYPE_BID_ACCEPTED,
    E.JOB_EVENT_TYPE_RESULTS_PROPOSED,
    E.JOB_EVENT_TYPE_RESULTS_ACCEPTED,
    E.JOB_EVENT_TYPE_RESULTS_PUBLISHED,
]
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def job(index: int) -> pb.Job:
    if index % 2:
        return bench_job(2, pb.Verifier.VERIFIER_DETERMINISTIC)
    return bench_job(1, pb.Verifier.VERIFIER_NOOP)


@dataclasses.dataclass
class Kill:
    node: str
    at: float
    up: float = 0.0


@dataclasses.dataclass
class Report:
    acknowledged: int = 0
    completed: int = 0
    errors: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    lost: list[str] = dataclasses.field(default_factory=list)
    duplicated_publications: int = 0
    events_duplicated: int = 0
    events_missing: int = 0
    unacknowledged: int = 0
    kills: list[Kill] = dataclasses.field(default_factory=list)
    ends: list[float] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(
            self.lost
            or self.errors
            or self.duplicated_publications
            or self.events_duplicated
            or self.events_missing
            or self.unacknowledged
        )


def ended(events: list[pb.JobEvent], concurrency: int) -> str | None:
    """ "Completed", "Error: <why>" or None (still going), from the job's events."""
    errors = [e for e in events if e.event_name == E.JOB_EVENT_TYPE_ERROR]
    if errors:
        return f"Error: {errors[0].status}"
    published = {e.source_node_id for e in events if e.event_name == E.JOB_EVENT_TYPE_RESULTS_PUBLISHED}
    if len(published) >= concurrency:
        return "Completed"
    return None


def check_events(events: list[pb.JobEvent], report: Report) -> None:
    counts = collections.Counter(
        (e.event_name, e.source_node_id, e.target_node_id, e.shard_index)
        for e in events
        if e.event_name in ONCE
    )
    report.events_duplicated += sum(n - 1 for n in counts.values() if n > 1)
    publications = collections.Counter(
        (e.source_node_id, e.shard_index)
        for e in events
        if e.event_name == E.JOB_EVENT_TYPE_RESULTS_PUBLISHED
    )
    report.duplicated_publications += sum(n - 1 for n in publications.values() if n > 1)
    if not events or events[0].event_name != E.JOB_EVENT_TYPE_CREATED:
        report.events_missing += 1
        return
    for publisher, _shard in publications:
        mine = [
            e.event_name
            for e in events
            if e.event_name in LIFECYCLE and publisher in (e.source_node_id, e.target_node_id)
        ]
        # A node may have bid, been asked again after a restart and so on; its last lifecycle is complete.
        if mine[-len(LIFECYCLE) :] != LIFECYCLE:
            report.events_missing += 1


class Load:
    """Submits jobs with at most `in_flight` of them going, and follows each to its end."""

    def __init__(self, stack: Devstack, in_flight: int) -> None:
        self.stack = stack
        self.channel = channels.open_channel(stack.requester_address, credentials=stack.channel_credentials())
        self.stub = rgrpc.RequesterServiceStub(self.channel)
        self.key = ClientKey.generate()
        self.slots = asyncio.Semaphore(in_flight)
        self.report = Report()
        self.events: dict[str, list[pb.JobEvent]] = {}
        self.latencies: list[tuple[float, float]] = []  # (end time, seconds from submit to end)
        self.tasks: set[asyncio.Task] = set()

    async def _call(self, method, request, deadline: float):
        """The call, retried while the requester is down or busy, until `deadline`."""
        while True:
            try:
                return await method(request, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as err:
                if err.code() not in RETRYABLE or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(RETRY_SECONDS)

    async def one(self, index: int, deadline: float) -> None:
        async with self.slots:
            spec = job(index)
            # One submission ID per job: a retry whose first attempt's answer was lost gets that job back.
            request = self.key.signed_submit_request(spec, submission_id=f"chaos-{index}")
            started = time.time()
            response = await self._call(self.stub.SubmitJob, request, deadline)
            job_id = response.job.id
            self.report.acknowledged += 1
            self.events[job_id] = []
            while time.monotonic() < deadline:
                await asyncio.sleep(POLL_SECONDS)
                try:
                    reply = await self.stub.GetJob(rpb.GetJobRequest(job_id=job_id), timeout=CALL_TIMEOUT)
                except grpc.aio.AioRpcError as err:
                    if err.code() in RETRYABLE:
                        continue
                    raise
                events = list(reply.job.job_events)
                if ended(events, spec.deal.concurrency) is not None:
                    self.events[job_id] = events
                    now = time.time()
                    self.report.ends.append(now)
                    self.latencies.append((now, now - started))
                    return

    def start(self, index: int, deadline: float) -> None:
        task = asyncio.create_task(self.one(index, deadline))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        await self.channel.close()


async def kill_and_restart(stack: Devstack, node: Node, down: float, kill: Kill) -> None:
    assert node.process is not None and node.process.returncode is None
    os.kill(node.process.pid, signal.SIGKILL)
    await node.process.wait()
    await asyncio.sleep(down)
    await stack.restart(node)
    kill.up = time.time()


async def chaos(jobs: int, in_flight: int, kills: int, seed: int, deadline: float, data_dir: str) -> Report:
    rng = random.Random(seed)
    stack = Devstack(
        nodes=3,
        data_dir=data_dir,
        requester_flags=[f"--max-active-jobs-per-client={max(in_flight, 64)}"],
        compute_flags=["--noop-delay=0.05"],
    )
    await stack.start()
    load = Load(stack, in_flight)
    report = load.report
    started = time.time()
    end_by = time.monotonic() + deadline
    try:
        victims = ["requester", "compute-0", "verifier"] * kills
        plan = sorted((rng.uniform(0.15, 0.85) * jobs, name) for name in victims)
        nodes = {n.name: n for n in stack.all_nodes}

        async def killer() -> None:
            """Kills each planned node once its share of the jobs has ended (one at a time)."""
            for threshold, name in plan:
                while len(report.ends) < threshold and time.monotonic() < end_by:
                    await asyncio.sleep(0.05)
                kill = Kill(name, time.time())
                report.kills.append(kill)
                await kill_and_restart(stack, nodes[name], rng.uniform(0.5, 2.0), kill)

        kills_done = asyncio.create_task(killer())
        for index in range(jobs):
            load.start(index, end_by)
            await asyncio.sleep(0)
        while (load.tasks or not kills_done.done()) and time.monotonic() < end_by:
            await asyncio.wait({*load.tasks, kills_done}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        kills_done.cancel()
        for task in list(load.tasks):
            task.cancel()
        report.seconds = time.time() - started
        await assess(load, report)
    finally:
        await load.close()
        await stack.stop()
    return report


async def assess(load: Load, report: Report) -> None:
    for job_id, events in load.events.items():
        if not events:  # never seen ending: look once more
            try:
                reply = await load.stub.GetJob(rpb.GetJobRequest(job_id=job_id), timeout=CALL_TIMEOUT)
                events = list(reply.job.job_events)
            except grpc.aio.AioRpcError:
                events = []
            concurrency = max((e.deal.concurrency for e in events[:1]), default=1) or 1
            if not events or ended(events, concurrency) is None:
                report.lost.append(job_id)
                continue
        outcome = ended(events, max(events[0].deal.concurrency, 1)) or ""
        if outcome == "Completed":
            report.completed += 1
        else:
            report.errors[outcome] += 1
        check_events(events, report)
    known, token = 0, ""
    while True:
        request = rpb.ListJobsRequest(client_id=load.key.client_id, page_size=1000, page_token=token)
        listed = await load.stub.ListJobs(request, timeout=CALL_TIMEOUT)
        known += len(listed.jobs)
        token = listed.next_page_token
        if not token:
            break
    report.unacknowledged = max(known - report.acknowledged, 0)


def rate(ends: list[float], start: float, end: float) -> float:
    return sum(start <= t < end for t in ends) / max(end - start, 1e-9)


def describe_kill(kill: Kill, ends: list[float]) -> str:
    before = rate(ends, kill.at - 5.0, kill.at)
    last = max(ends, default=kill.at)
    buckets = [rate(ends, t, t + 1.0) for t in (kill.at + i for i in range(30)) if t + 1.0 <= last]
    lowest = min(buckets) if buckets else 0.0
    recovered = next(
        (
            t - kill.at
            for t in (kill.up + i * 0.25 for i in range(240))
            if rate(ends, t - 1.0, t) >= 0.8 * before
        ),
        None,
    )
    back = f"{recovered:.1f} s" if recovered is not None else "not within 60 s"
    return (
        f"  kill {kill.node:<10} down {kill.up - kill.at:4.1f} s: {before:6.1f} jobs/s before, "
        f"lowest 1-s rate {lowest:6.1f}, back to 80 % after {back}"
    )


def print_report(report: Report, jobs: int) -> None:
    print(
        f"{jobs} jobs ({report.acknowledged} acknowledged) in {report.seconds:.1f} s, "
        f"with {len(report.kills)} kills"
    )
    print(f"  completed                 {report.completed}")
    print(f"  ended in error            {sum(report.errors.values())} (goal 0: a restart is not a failure)")
    for why, count in report.errors.most_common(5):
        print(f"      {count} x {why}")
    print(f"  lost                      {len(report.lost)} (goal 0) {report.lost[:5]}")
    print(f"  duplicated publications   {report.duplicated_publications} (goal 0)")
    print(f"  events duplicated         {report.events_duplicated} (goal 0)")
    print(f"  events missing            {report.events_missing} (goal 0)")
    print(f"  unacknowledged jobs       {report.unacknowledged} (goal 0: jobs made twice by a retry)")
    for kill in report.kills:
        print(describe_kill(kill, report.ends))


async def soak(minutes: float, in_flight: int, data_dir: str) -> None:
    stack = Devstack(
        nodes=3, data_dir=data_dir, requester_flags=[f"--max-active-jobs-per-client={in_flight}"]
    )
    await stack.start()
    load = Load(stack, in_flight)
    nodes = {n.name: n for n in stack.all_nodes}
    try:
        index = 0
        warmup_end = time.monotonic() + 20.0
        while time.monotonic() < warmup_end:
            load.start(index, warmup_end + 60)
            index += 1
            await asyncio.sleep(0)
            while len(load.tasks) >= in_flight and time.monotonic() < warmup_end:
                await asyncio.sleep(0.01)
        peak = len(load.report.ends) / 20.0
        target = 0.7 * peak
        print(f"peak {peak:.1f} jobs/s over 20 s; soaking at {target:.1f} jobs/s for {minutes:g} min")
        stop = time.monotonic() + minutes * 60
        next_minute = time.time() + 60
        minute = 0
        while time.monotonic() < stop:
            load.start(index, stop + 60)
            index += 1
            await asyncio.sleep(1.0 / target)
            if time.time() >= next_minute:
                minute += 1
                window = [s for t, s in load.latencies if next_minute - 60 <= t < next_minute]
                rss_now = {name: rss(node.pid) for name, node in nodes.items()}
                if window:
                    print(
                        f"  minute {minute:3d}: {len(window)} jobs, "
                        f"p50 {statistics.median(window) * 1000:.0f} ms, "
                        f"p99 {p99(window) * 1000:.0f} ms; RSS MiB "
                        + ", ".join(f"{n} {r / 2**20:.0f}" for n, r in rss_now.items())
                    )
                next_minute += 60
        await asyncio.gather(*load.tasks, return_exceptions=True)
    finally:
        await load.close()
        await stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--kills", type=int, default=1, help="how many times each service is killed")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--deadline", type=float, default=1800.0, help="seconds for the whole run")
    parser.add_argument("--soak-minutes", type=float, default=0.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chaos-") as data_dir:
        if args.soak_minutes:
            asyncio.run(soak(args.soak_minutes, args.in_flight, data_dir))
            return 0
        print(f"seed {args.seed}")
        report = asyncio.run(chaos(args.jobs, args.in_flight, args.kills, args.seed, args.deadline, data_dir))
    print_report(report, args.jobs)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
