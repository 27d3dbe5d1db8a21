"""One noop job over N input files with batch size 1 (N shards) through a devstack (requester, verifier and
3 compute nodes as separate processes, every node pointed at one real IPFS daemon), against the noop job
rate measured on the same devstack in the same run.

The files (one byte each, in folders of 1,000: `dir-000/file-000000.txt`, ...) are added to a real IPFS
daemon (js-ipfs, offline, started with `scripts/ipfs-daemon.sh`, which installs it once), and their folder's
CID is the sharded job's IPFS input, with the glob `/inputs/*/*.txt`. The requester lists the CID through
the daemon at submission (its `--ipfs-connect`), each compute node fetches it once through the daemon. Past
10,000 files the requester's `max_shards_per_job` setting is raised to N for this run (its
`--max-shards-per-job` flag; nothing else changes). Folders of 1,000 because the requester gives the daemon
5 s per folder listing (`ls`, ~0.25 s per 1,000 entries with js-ipfs), and js-ipfs did not finish adding
one flat folder of 100,000 files in 9 minutes; `--per-folder 0` makes the folder flat.

Prints, next to their goals:
* shards/s: shards completed per second from submission to the last shard's publication (the events'
  own timestamps, so a watcher falling behind does not count);
* the noop job rate at concurrency 1 (`bench.bench_network.run_scenario`'s measurement, run on this
  devstack before the sharded job) and the ratio shards/s : jobs/s (goal >= 2x);
* the requester process's peak resident memory while the job runs (goal < 1 GB);
* whether `describe` of the finished job (GetJob, what `bacalhau-grpc describe` calls) answers, in how
  long and how many bytes; the exact gRPC error when it does not (then again with the client's receive
  limit raised, to tell the server's limit from the client's), and the same events read in pages
  (ListJobEvents).

Run with `make bench` (10,000 files), or
`python -m bench.bench_sharding --files 100000` (the issue's figure; about 4 minutes here), or
`python -m bench.bench_sharding --files 500` (a quick check).
"""

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import grpc

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.ipfs import IpfsClient
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.devstack import Devstack
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from bench import bench_network
from bench.bench_network import bench_job, seconds
from bench.measure import PeakRss, rss

RATIO_GOAL = 2.0  # shards/s at least this many times the noop job rate (concurrency 1)
RSS_GOAL = 1_000_000_000  # bytes: the requester's peak while the job runs
DEFAULT_MAX_SHARDS = 10_000  # the requester's max_shards_per_job default (requester/settings.py)
PER_FOLDER = 1_000  # files per folder: js-ipfs lists one folder per `ls` call, each within 5 s
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "ipfs-daemon.sh"
# Concurrency 1: a shard ends with its one publication, or with an error.
ENDING_EVENTS = {pb.JobEventType.JOB_EVENT_TYPE_RESULTS_PUBLISHED, pb.JobEventType.JOB_EVENT_TYPE_ERROR}
GB = 1_000_000_000
PROGRESS_EVERY = 10_000  # shards: a line while a big job runs


class IpfsDaemon:
    """An offline js-ipfs daemon in `folder` (scripts/ipfs-daemon.sh start/stop); `url` is its API."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.url = ""

    async def _script(self, *args: str, timeout: float) -> str:
        process = await asyncio.create_subprocess_exec(
            str(SCRIPT), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout)
        if process.returncode != 0:
            raise RuntimeError(f"{SCRIPT.name} {' '.join(args)} failed: {err.decode()[-2000:]}")
        return out.decode().strip()

    async def __aenter__(self) -> "IpfsDaemon":
        self.url = (await self._script("start", str(self.folder), timeout=900)).splitlines()[-1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._script("stop", str(self.folder), timeout=60)


def make_files(root: Path, files: int, per_folder: int) -> str:
    """`files` one-byte files under `root` (in folders of `per_folder`, or flat when it is 0); the glob
    that matches each of them once, below the input's mount point /inputs."""
    for i in range(files):
        folder = root / f"dir-{i // per_folder:03d}" if per_folder else root
        if per_folder and i % per_folder == 0:
            folder.mkdir()
        (folder / f"file-{i:06d}.txt").write_bytes(b"x")
    return "/inputs/*/*.txt" if per_folder else "/inputs/*.txt"


def sharding_devstack(work_dir: Path, ipfs_url: str, files: int, in_flight: int = 256, **options) -> Devstack:
    """3 compute nodes and a requester pointed at the IPFS daemon `ipfs_url`, the requester taking a job of
    `files` shards (past its default, `--max-shards-per-job`); `options`: more of Devstack's."""
    requester_flags = [f"--max-active-jobs-per-client={max(256, in_flight)}", "--ipfs-connect", ipfs_url]
    if files > DEFAULT_MAX_SHARDS:
        requester_flags.append(f"--max-shards-per-job={files}")
    return Devstack(
        nodes=3,
        data_dir=work_dir / "devstack",
        log_level="WARNING",
        requester_flags=requester_flags,
        compute_flags=["--ipfs-connect", ipfs_url],
        **options,
    )


async def noop_rate(devstack: Devstack, jobs: int, in_flight: int) -> dict:
    """bench_network's noop scenario at concurrency 1 (noop verifier), on `devstack`."""
    return await bench_network.drive(
        devstack, "concurrency 1, noop verifier", jobs, in_flight, 1, pb.Verifier.VERIFIER_NOOP
    )


async def sharded_job(stub, key: ClientKey, cid: str, glob: str, requester_pid: int | None, deadline: float):
    """Submits the sharded noop job and follows its events until every shard ended (or `deadline`)."""
    job = bench_job(1, pb.Verifier.VERIFIER_NOOP)
    job.spec.inputs.append(
        pb.StorageSpec(storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS, cid=cid, path="/inputs")
    )
    job.spec.sharding.glob_pattern = glob
    job.spec.sharding.batch_size = 1
    request = key.signed_submit_request(job)
    ended: dict[int, tuple[int, float]] = {}  # shard index -> the event that ended it, its time
    events = 0
    async with PeakRss(requester_pid) as peak:
        started_wall, started = time.time(), time.monotonic()
        submitted = (await stub.SubmitJob(request, timeout=300)).job
        accepted = time.monotonic()
        shards = submitted.execution_plan.total_shards
        watch = rpb.WatchJobEventsRequest(job_id=submitted.id)
        try:
            async for reply in stub.WatchJobEvents(watch, timeout=deadline):  # one stream, no polling
                events += 1
                event = reply.event
                if event.event_name in ENDING_EVENTS:
                    ended.setdefault(event.shard_index, (event.event_name, seconds(event.event_time)))
                    if len(ended) % PROGRESS_EVERY == 0:
                        print(
                            f"  ... {len(ended)} shards ended at {time.monotonic() - started:.0f} s",
                            flush=True,
                        )
                    if len(ended) == shards:
                        break
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        watched = time.monotonic() - started
    ends = sorted(t - started_wall for _, t in ended.values()) or [0.0]
    last = started_wall + ends[-1]
    return {
        "job_id": submitted.id,
        "shards": shards,
        "ended": len(ended),
        "errors": sum(e != pb.JobEventType.JOB_EVENT_TYPE_RESULTS_PUBLISHED for e, _ in ended.values()),
        "events": events,
        "submit": accepted - started,
        "elapsed": last - started_wall,  # submission to the last shard's ending event (its timestamp)
        "watched": watched,  # submission to the watcher seeing it
        "first": ends[0],  # submission to the first shard's end
        "half": ends[len(ends) // 2],  # ... to half of them ended
        "peak_rss": peak.peak,
        "rss_samples": peak.samples,
    }


async def describe(address: str, credentials, job_id: str, max_receive: int | None = None) -> dict:
    """GetJob (describe) of the job: its time and response size, or the error's code and details."""
    options = () if max_receive is None else (("grpc.max_receive_message_length", max_receive),)
    async with channels.open_channel(address, credentials=credentials, options=options) as channel:
        stub = rgrpc.RequesterServiceStub(channel)
        started = time.monotonic()
        try:
            reply = await stub.GetJob(rpb.GetJobRequest(job_id=job_id), timeout=120)
        except grpc.aio.AioRpcError as error:
            return {"ok": False, "seconds": time.monotonic() - started, "error": error}
        took = time.monotonic() - started
    info = reply.job
    shard_states = sum(len(node.shards) for node in info.job_state.nodes.values())
    return {
        "ok": True,
        "seconds": took,
        "bytes": reply.ByteSize(),
        "events": len(info.job_events),
        "shard_states": shard_states,
    }


async def paged_events(address: str, credentials, job_id: str) -> dict:
    """The job's events read through ListJobEvents pages of 1,000 (the paged way to the same events)."""
    async with channels.open_channel(address, credentials=credentials) as channel:
        stub = rgrpc.RequesterServiceStub(channel)
        started = time.monotonic()
        events = pages = 0
        token = ""
        while True:
            page = await stub.ListJobEvents(
                rpb.ListJobEventsRequest(job_id=job_id, page_size=1000, page_token=token), timeout=60
            )
            events += len(page.events)
            pages += 1
            token = page.next_page_token
            if not token:
                break
    return {"events": events, "pages": pages, "seconds": time.monotonic() - started}


def describe_line(r: dict) -> str:
    if r["ok"]:
        return (
            f"answers in {r['seconds']:.2f} s, {r['bytes'] / 1e6:.1f} MB "
            f"({r['shard_states']} shard states, {r['events']} events)"
        )
    error = r["error"]
    return f"FAILS after {r['seconds']:.2f} s: {error.code().name}: {error.details()}"


async def main(files: int, deadline: float, noop_jobs: int, in_flight: int, per_folder: int) -> None:
    key = ClientKey.generate()
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as work:
        work_dir = Path(work)
        t = time.monotonic()
        inputs = work_dir / "inputs"
        inputs.mkdir()
        glob = await asyncio.to_thread(make_files, inputs, files, per_folder)
        made = time.monotonic() - t
        async with IpfsDaemon(work_dir / "ipfs") as daemon:
            t = time.monotonic()
            async with IpfsClient(daemon.url, transfer_timeout=3600) as ipfs:
                cid = await ipfs.add_folder(inputs)
            added = time.monotonic() - t
            print(
                f"input: {files} one-byte files ({glob}), made in {made:.1f} s, added to js-ipfs "
                f"({daemon.url}) in {added:.1f} s: {cid}",
                flush=True,
            )
            async with sharding_devstack(work_dir, daemon.url, files, in_flight) as devstack:
                print(
                    "devstack: 1 requester + 1 verifier + 3 compute nodes (separate processes, TLS), "
                    f"requester flags: {' '.join(devstack.requester_flags)}",
                    flush=True,
                )
                noop = await noop_rate(devstack, noop_jobs, in_flight)
                pid = devstack.requester.pid if devstack.requester else None
                idle_rss = rss(pid)
                async with channels.open_channel(
                    devstack.requester_address, credentials=devstack.channel_credentials()
                ) as channel:
                    r = await sharded_job(rgrpc.RequesterServiceStub(channel), key, cid, glob, pid, deadline)
                address, credentials = devstack.requester_address, devstack.channel_credentials()
                described = await describe(address, credentials, r["job_id"])
                bigger = None
                if not described["ok"] and described["error"].code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    bigger = await describe(address, credentials, r["job_id"], max_receive=2**31 - 1)
                try:
                    paged = await paged_events(address, credentials, r["job_id"])
                except grpc.aio.AioRpcError as error:
                    paged = {"error": error}
                after_rss = rss(pid)
    report(files, noop, r, idle_rss, after_rss, described, bigger, paged, deadline)


def report(files, noop, r, idle_rss, after_rss, described, bigger, paged, deadline) -> None:
    shards, elapsed = r["shards"], r["elapsed"]
    jobs_rate = noop["rate"]
    print(
        f"noop jobs, concurrency 1 (bench_network's scenario on this devstack): {jobs_rate:.1f} jobs/s "
        f"({noop['jobs']} jobs, {noop['errors']} errors, p50 {noop['p50']:.0f} ms, p99 {noop['p99']:.0f} ms)"
    )
    print(
        f"sharded job: {files} files, batch 1: {shards} shards; {r['ended']} ended ({r['errors']} in Error)"
    )
    print(f"  submission (list the CID through IPFS + explode + plan + shard machines): {r['submit']:.2f} s")
    rate = r["ended"] / elapsed if elapsed > 0 else 0.0
    if r["ended"] < shards:
        print(f"  NOT COMPLETED within the {deadline:g} s deadline: {rate:.1f} shards/s until then")
    else:
        print(
            f"  submit to every shard completed: {elapsed:.1f} s "
            f"(the watcher saw it at {r['watched']:.1f} s, {r['events']} events streamed)"
        )
    print(
        f"  after submission: first shard ended at {r['first']:.1f} s, half of them at {r['half']:.1f} s, "
        f"the last at {elapsed:.1f} s"
    )
    ratio = rate / jobs_rate if jobs_rate else 0.0
    verdict = "met" if ratio >= RATIO_GOAL and r["ended"] == shards else "MISSED"
    print(f"  shards/s: {rate:.1f}, {elapsed / max(r['ended'], 1) * 1000:.2f} ms per shard")
    print(
        f"  shards/s : noop jobs/s = {rate:.1f} / {jobs_rate:.1f} = {ratio:.2f}x "
        f"(goal >= {RATIO_GOAL:g}x: {verdict})"
    )
    peak = r["peak_rss"]
    verdict = "met" if peak < RSS_GOAL else "MISSED"
    print(
        f"  requester peak RSS during the job: {peak / GB:.3f} GB (goal < {RSS_GOAL / GB:g} GB: {verdict}; "
        f"{idle_rss / GB:.3f} GB before, {after_rss / GB:.3f} GB after describe; {r['rss_samples']} samples)"
    )
    print(f"  describe (GetJob) of the finished job: {describe_line(described)}")
    if bigger is not None:
        print(f"  the same with the client's receive limit raised to 2 GiB: {describe_line(bigger)}")
    if "error" in paged:
        error = paged["error"]
        print(
            f"  its events through ListJobEvents (pages of 1,000): FAIL: "
            f"{error.code().name}: {error.details()}"
        )
    else:
        print(
            f"  its events through ListJobEvents (pages of 1,000): {paged['events']} events, "
            f"{paged['pages']} pages in {paged['seconds']:.2f} s"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="input files = shards (default 10,000)")
    parser.add_argument("--deadline", type=float, default=1800.0, help="give up after this many seconds")
    parser.add_argument(
        "--noop-jobs", type=int, default=1000, help="noop jobs for the job rate (default 1,000)"
    )
    parser.add_argument(
        "--in-flight", type=int, default=32, help="noop job submissions in flight (default 32)"
    )
    parser.add_argument(
        "--per-folder",
        type=int,
        default=PER_FOLDER,
        help=f"files per folder, 0: flat (default {PER_FOLDER:,})",
    )
    args = parser.parse_args()
    asyncio.run(main(args.files, args.deadline, args.noop_jobs, args.in_flight, args.per_folder))
