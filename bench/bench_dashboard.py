"""The web dashboard with big jobs and many jobs, in real headless Chromium (Debian's chromium and
chromedriver through Selenium) against a devstack started with its dashboard (separate processes, TLS):

- one noop job over N input files (N shards, batch size 1; the files in a real js-ipfs daemon as in
  bench/bench_sharding.py): its job page opened right after submission, while the shards run: the time
  to the grid's first drawing, how many live updates reached the page until the job ended, and how many
  times the page fetched the job (once: the live view carries the cells, never the whole job); then the
  page of the finished job loaded again and again: time to the grid (goal: under 1 s at 10,000 shards)
  and to the timeline caught up; and scrolling to the last shard;
- with `--stored` finished jobs in the requester: `/api/jobs` (the jobs page's request: one page of 25)
  first page and 50th page (following the page tokens) p50/p99 against `/healthz` p99 (the same HTTP and
  gRPC path with one GetVersion: the floor; goal: at most 5x), and the jobs page's time to its first rows.

Run with `make bench` (10,000 files, 10,000 stored jobs) or
`python -m bench.bench_dashboard --files 10000 --stored 100000`.
"""

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from bacalhau_grpc.common import channels
from bacalhau_grpc.common.ipfs import IpfsClient
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.dashboard.live import TIMELINE_LIMIT
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from bench.bench_latency import store_jobs
from bench.bench_network import bench_job
from bench.bench_sharding import PER_FOLDER, IpfsDaemon, make_files, sharding_devstack
from bench.measure import p99

PAGE_GOAL = 1.0  # seconds: the job page of the big job draws its grid
API_GOAL = 5.0  # /api/jobs p99 at most this many times /healthz p99
LOADS = 5
REQUESTS = 200
DEADLINE = 600.0


def browser() -> webdriver.Chrome:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager downloads nothing
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait_for(predicate, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"{what}: not within {timeout:g} s")


def grid_data(driver, name: str) -> str | None:
    return driver.find_element(By.ID, "grid").get_attribute(f"data-{name}")


def job_page(driver, url: str, job_id: str, *, until_end: bool) -> dict:
    """Opens the job's page; the moments (ms after navigation start) its grid was drawn and its live view
    ended, the updates it took and how many times it fetched the job's overview."""
    driver.get(f"{url}jobs/{job_id}")
    loaded = float(wait_for(lambda: grid_data(driver, "loaded-ms"), "the grid drawn"))
    ended = (
        float(wait_for(lambda: grid_data(driver, "ended-ms"), "the live view ended")) if until_end else None
    )
    fetches = driver.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.endsWith(arguments[0])).length",
        f"/api/jobs/{job_id}",
    )
    return {
        "loaded": loaded / 1000,
        "ended": None if ended is None else ended / 1000,
        "updates": int(grid_data(driver, "updates") or 0),
        "overview_fetches": fetches,
        "summary": driver.find_element(By.ID, "summary").text,
        "rows_in_page": len(driver.find_elements(By.CSS_SELECTOR, "#grid tbody tr.shard-row")),
    }


def scroll_to_last(driver, shards: int) -> float:
    """Seconds from scrolling the grid to its end until the last shard's row is drawn."""
    began = time.perf_counter()
    driver.execute_script("const s = document.getElementById('grid-scroll'); s.scrollTop = s.scrollHeight;")
    wait_for(
        lambda: driver.find_elements(By.CSS_SELECTOR, f'#grid tr.shard-row[data-shard="{shards - 1}"]'),
        "the last row",
        30,
    )
    return time.perf_counter() - began


def http_times(url: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        began = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
        times.append(time.perf_counter() - began)
    return times


def deep_cursor(url: str, pages: int) -> str:
    cursor = ""
    for _ in range(pages - 1):
        with urllib.request.urlopen(f"{url}api/jobs?size=25&cursor={cursor}", timeout=30) as response:
            cursor = json.load(response)["next"] or cursor
    return cursor


async def main(files: int, stored: int) -> None:
    key = ClientKey.generate()
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as work:
        work_dir = Path(work)
        inputs = work_dir / "inputs"
        inputs.mkdir()
        glob = await asyncio.to_thread(make_files, inputs, files, PER_FOLDER)
        async with IpfsDaemon(work_dir / "ipfs") as daemon:
            async with IpfsClient(daemon.url, transfer_timeout=3600) as ipfs:
                cid = await ipfs.add_folder(inputs)
            async with sharding_devstack(work_dir, daemon.url, files, dashboard=True) as devstack:
                url = devstack.dashboard_url
                print(f"devstack with its dashboard at {url}; {files} files in js-ipfs: {cid}", flush=True)
                driver = await asyncio.to_thread(browser)
                try:
                    async with channels.open_channel(
                        devstack.requester_address, credentials=devstack.channel_credentials()
                    ) as channel:
                        stub = rgrpc.RequesterServiceStub(channel)
                        await big_job(driver, stub, key, url, cid, glob)
                        if stored:
                            await many_jobs(driver, stub, key, url, stored)
                finally:
                    await asyncio.to_thread(driver.quit)


async def big_job(driver, stub, key: ClientKey, url: str, cid: str, glob: str) -> None:
    job = bench_job(1, pb.Verifier.VERIFIER_NOOP)
    job.spec.inputs.append(
        pb.StorageSpec(storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS, cid=cid, path="/inputs")
    )
    job.spec.sharding.glob_pattern = glob
    job.spec.sharding.batch_size = 1
    submitted = (await stub.SubmitJob(key.signed_submit_request(job), timeout=300)).job
    shards = submitted.execution_plan.total_shards
    running = await asyncio.to_thread(job_page, driver, url, submitted.id, until_end=True)
    print(
        f"job page of a {shards}-shard job opened at submission: grid drawn at {running['loaded']:.2f} s; "
        f"{running['updates']} live updates until it ended at {running['ended']:.1f} s; the page fetched "
        f"the job {running['overview_fetches']} time(s); at the end: {running['summary']!r}",
        flush=True,
    )
    loads = [
        await asyncio.to_thread(job_page, driver, url, submitted.id, until_end=True) for _ in range(LOADS)
    ]
    drawn = [r["loaded"] for r in loads]
    caught_up = [r["ended"] for r in loads]
    met = "met" if max(drawn) < PAGE_GOAL else "NOT met"
    print(
        f"job page of the finished {shards}-shard job, {LOADS} loads: grid drawn p50 "
        f"{statistics.median(drawn):.2f} s, max {max(drawn):.2f} s (goal: under {PAGE_GOAL:g} s: {met}); "
        f"{loads[-1]['rows_in_page']} rows in the page; timeline filled (the last {TIMELINE_LIMIT} events) "
        f"p50 {statistics.median(caught_up):.2f} s",
        flush=True,
    )
    scrolled = await asyncio.to_thread(scroll_to_last, driver, shards)
    print(f"scrolling the grid to shard {shards - 1}: drawn in {scrolled * 1000:.0f} ms", flush=True)


async def many_jobs(driver, stub, key: ClientKey, url: str, stored: int) -> None:
    began = time.monotonic()
    await store_jobs(stub, key, stored)
    listed = await stub.ListJobs(rpb.ListJobsRequest(page_size=1), timeout=30)
    assert listed.jobs
    print(f"stored {stored} more finished jobs in {time.monotonic() - began:.0f} s", flush=True)
    floor = await asyncio.to_thread(http_times, f"{url}healthz", REQUESTS)
    first = await asyncio.to_thread(http_times, f"{url}api/jobs?size=25", REQUESTS)
    cursor = await asyncio.to_thread(deep_cursor, url, 50)
    deep = await asyncio.to_thread(http_times, f"{url}api/jobs?size=25&cursor={cursor}", REQUESTS)
    base = p99(floor)
    for name, times in (("first page", first), ("50th page", deep)):
        ratio = p99(times) / base
        print(
            f"/api/jobs {name} of 25 with {stored}+ jobs stored: p50 "
            f"{statistics.median(times) * 1000:.1f} ms, p99 {p99(times) * 1000:.1f} ms = {ratio:.1f}x "
            f"/healthz p99 ({base * 1000:.1f} ms) "
            f"(goal: at most {API_GOAL:g}x: {'met' if ratio <= API_GOAL else 'NOT met'})",
            flush=True,
        )

    def jobs_page() -> float:
        driver.get(f"{url}jobs")
        return (
            float(
                wait_for(
                    lambda: driver.find_element(By.CSS_SELECTOR, "#jobs tbody").get_attribute(
                        "data-loaded-ms"
                    ),
                    "the first rows",
                )
            )
            / 1000
        )

    shown = [await asyncio.to_thread(jobs_page) for _ in range(LOADS)]
    print(f"jobs page, first rows: p50 {statistics.median(shown):.2f} s, max {max(shown):.2f} s", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10_000, help="input files: the big job's shards")
    parser.add_argument("--stored", type=int, default=10_000, help="finished jobs to store (0: skip)")
    args = parser.parse_args()
    asyncio.run(main(args.files, args.stored))
