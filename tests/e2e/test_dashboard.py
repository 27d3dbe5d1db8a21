"""The web dashboard in a real browser: `bacalhau-grpc dashboard` (its own process, a TLS client of a
devstack's requester) driven by headless Chromium through Selenium (Debian's chromium and chromedriver;
nothing is downloaded). The network page lists the devstack's compute nodes; a job submitted while the
jobs page is open appears there and reaches Completed without a reload; the jobs page pages on the
server; a sharded job's page shows the shard-by-node grid, the event timeline, the logs (a shard's, by a
click on its cell) and a working results download; a grid taller than its view draws only the rows in
view; cancel from the page stops a running job; an annotation holding `<script>` is shown as text and
never runs; bad requests and other host names are refused; each page fits a phone. Each page is saved as
a screenshot under tests/artifacts/dashboard/ (ignored by git); with UPDATE_SCREENSHOTS=1 (`make
screenshots`) also to docs/screenshots/, which the README shows."""

import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from bacalhau_grpc.dashboard.server import HIDDEN, hide_env
from bacalhau_grpc.sdk import sdk_types as m
from tests.e2e.cli_support import (
    COMMAND,
    STDOUT_TEXT,
    Lines,
    RunningDevstack,
    job_id_of,
    run_cli,
    sdk,
    start_spinning,
)
from tests.e2e.file_server import serve_files

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "dashboard"
DOCS_SCREENSHOTS = Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots"
UI_WAIT = 60.0
SCRIPT_ANNOTATION = "<script>window.__pwned=1</script>"
FILES = {"a.txt": b"alpha\n", "b.txt": b"beta\n", "c.txt": b"gamma\n"}
MANY_SHARDS = 120  # more rows than the grid's view holds: only those in view are in the page


def _file(name: str) -> bytes | None:
    """FILES, and many-<n>.txt for the job of MANY_SHARDS inputs."""
    return FILES.get(name) or (name.encode() if re.fullmatch(r"many-\d+\.txt", name) else None)


@pytest.fixture(scope="module")
def files_url():
    with serve_files(_file) as url:
        yield url


@pytest.fixture(scope="module")
def devstack(tmp_path_factory):
    """3 compute nodes (no bad actor) that may download URL inputs from 127.0.0.1."""
    stack = RunningDevstack(
        tmp_path_factory.mktemp("dash"),
        ("--nodes", "3", "--noop-stdout", STDOUT_TEXT, "--url-download-allow-networks", "127.0.0.0/8"),
    )
    yield stack
    stack.stop_all()


@pytest.fixture(scope="module")
def dashboard(devstack):
    """`bacalhau-grpc dashboard --port 0 --allow-cancel` against the devstack (TLS from its CA); its URL."""
    with running_dashboard(devstack, "--allow-cancel") as url:
        yield url


@contextlib.contextmanager
def running_dashboard(devstack, *flags: str):
    """`bacalhau-grpc dashboard --port 0 FLAGS` against the devstack, as a user starts it; its URL."""
    process = subprocess.Popen(
        [*COMMAND, "dashboard", "--port", "0", *flags],
        env=devstack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = Lines(process.stdout)
    try:
        yield lines.wait_for(r"^Dashboard: (http://127\.0\.0\.1:\d+/)", 60).group(1)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), (
        "needs Debian's chromium and chromium-driver: make browser-install"
    )
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager downloads nothing
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def wait_for(predicate, what: str, timeout: float = UI_WAIT):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as err:  # the DOM changes under us while the page refreshes
            last_error = err
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_error!r})")


def screenshot(driver, name: str, width: int = 1280) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(int(height), 900), 3000))
    driver.save_screenshot(str(path))
    driver.set_window_size(width, 900)
    if os.environ.get("UPDATE_SCREENSHOTS"):  # make screenshots: the README's
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / f"dashboard-{name}.png")
    return path


def create(devstack, tmp_path, text: str, *extra: str) -> str:
    path = tmp_path / f"job-{time.monotonic_ns()}.yaml"
    path.write_text(text)
    created = run_cli("create", str(path), *extra, env=devstack.env, timeout=180)
    assert created.returncode == 0, created.stdout + created.stderr
    found = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", created.stdout)
    assert found, created.stdout
    return found.group(0)


def test_network_page_lists_the_devstacks_compute_nodes(devstack, dashboard, browser):
    browser.get(dashboard + "network")
    node_ids = {node_id for node_id, *_ in devstack.computes.values()}
    assert len(node_ids) == 3

    def listed():
        rows = browser.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")
        return {row.get_attribute("data-node-id") for row in rows} == node_ids and rows

    rows = wait_for(listed, "the three compute nodes")
    for row in rows:
        cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        assert cells[1] == "compute" and cells[2] == "live", cells
        assert "Noop" in cells[3], cells
        assert re.fullmatch(r"[\d.]+ / [\d.]+", cells[4]), cells
    assert "3 compute node(s), 3 live" in browser.find_element(By.ID, "summary").text
    requester = browser.find_element(By.ID, "requester").text
    assert requester.startswith(f"Requester {devstack.host}:{devstack.port} (") and requester.endswith(
        ") answers."
    )
    assert browser.title.startswith("Network")
    screenshot(browser, "network")


def test_a_submitted_job_appears_on_the_jobs_page_without_a_reload_and_completes(
    devstack, dashboard, browser, tmp_path
):
    browser.get(dashboard + "jobs")
    wait_for(lambda: "updated" in browser.find_element(By.ID, "summary").text, "the first listing")
    browser.execute_script("window.__sameDocument = true")
    job_id = create(
        devstack,
        tmp_path,
        "Spec:\n  Engine: Noop\n  Timeout: 60\n  Annotations: [dashboard-live]\nDeal:\n  Concurrency: 1\n",
        "--wait=false",
    )
    selector = f'#jobs tbody tr[data-job-id="{job_id}"]'
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, selector), "the new job's row")
    wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, selector + " td.state").text == "Completed",
        "the job to show Completed",
    )
    assert browser.execute_script("return window.__sameDocument") is True  # no reload happened
    row = browser.find_element(By.CSS_SELECTOR, selector)
    cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
    assert cells[0] == job_id[:8] and cells[1] == "Noop" and cells[3] == "1/1", cells
    assert cells[6] == "dashboard-live"

    # the filters: by ID prefix, then by a state the job is not in
    box = browser.find_element(By.ID, "prefix")
    box.send_keys(job_id[:8])
    wait_for(lambda: f"prefix={job_id[:8]}" in browser.current_url, "the filter in the address")
    wait_for(
        lambda: (
            [r.get_attribute("data-job-id") for r in browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")]
            == [job_id]
        ),
        "only the job",
    )
    browser.find_element(By.CSS_SELECTOR, "#state option[value='error']").click()
    wait_for(
        lambda: "No jobs match." in browser.find_element(By.ID, "jobs").text, "an empty filtered listing"
    )


def test_a_sharded_jobs_page_shows_the_grid_and_the_timeline(
    devstack, dashboard, browser, files_url, tmp_path
):
    inputs = "".join(
        f"    - StorageSource: URLDownload\n      URL: {files_url(name)}\n      path: /inputs\n"
        for name in FILES
    )
    text = (
        "Spec:\n  Engine: Noop\n  Timeout: 60\n  inputs:\n"
        + inputs
        + "  Sharding:\n    GlobPattern: '*.txt'\n    BatchSize: 1\n    GlobPatternBasePath: /inputs\n"
        "Deal:\n  Concurrency: 2\n"
    )
    job_id = create(devstack, tmp_path, text, "--wait-timeout-secs", "120")
    browser.get(dashboard + "jobs/" + job_id[:8])
    wait_for(lambda: browser.find_element(By.ID, "job-id").text == job_id, "the full job ID")
    wait_for(
        lambda: len(browser.find_elements(By.CSS_SELECTOR, "#grid tbody tr.shard-row")) == 3,
        "three shard rows",
    )
    cells = wait_for(
        lambda: [
            c
            for c in browser.find_elements(By.CSS_SELECTOR, "#grid td.cell")
            if c.get_attribute("data-state") == "Completed"
        ],
        "completed cells",
    )
    assert len(cells) >= 6, len(cells)  # 3 shards, concurrency 2
    title = cells[0].get_attribute("title")
    assert re.match(r"node-[0-9a-f]+ · shard \d: Completed", title), title
    assert len(browser.find_elements(By.CSS_SELECTOR, "#grid thead th")) >= 3  # "Shard" + nodes

    def timeline():
        names = [
            e.get_attribute("data-event") for e in browser.find_elements(By.CSS_SELECTOR, "#timeline li")
        ]
        return names if names.count("ResultsPublished") >= 6 else None

    events = wait_for(timeline, "the timeline up to six ResultsPublished events")
    assert "Created" in events and "BidAccepted" in events, events
    assert "3/3 shard(s) done" in browser.find_element(By.ID, "summary").text
    wait_for(lambda: STDOUT_TEXT in browser.find_element(By.ID, "logs").text, "the noop stdout in the logs")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#logs details")) == 6  # every execution's
    # Once the live view has ended no update redraws the grid under the click.
    grid = browser.find_element(By.ID, "grid")
    wait_for(lambda: grid.get_attribute("data-ended-ms"), "the live view's end")

    def shard_one_chosen() -> bool:
        if not browser.find_element(By.ID, "logs-note").text.startswith("Shard 1 "):
            browser.find_element(By.CSS_SELECTOR, '#grid tr.shard-row[data-shard="1"] td.cell').click()
        return browser.find_element(By.ID, "logs-note").text.startswith("Shard 1 ")

    wait_for(shard_one_chosen, "shard 1's logs")

    def shard_one_panes():
        titles = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#logs details summary")]
        return titles if len(titles) == 2 and all(t.startswith("shard 1 on ") for t in titles) else None

    wait_for(shard_one_panes, "the logs of shard 1's two executions only")
    link = browser.find_element(By.CSS_SELECTOR, "#results a.button").get_attribute("href")
    with urllib.request.urlopen(link, timeout=120) as response:
        body = response.read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        names = archive.getnames()
    assert any(name.endswith("combined_results/stdout") for name in names), names
    assert sum(1 for name in names if re.search(r"per_shard/\d_node_[^/]+$", name)) == 6, names
    # cancel is enabled, but the job has ended: no button
    assert not browser.find_elements(By.CSS_SELECTOR, "#actions button")
    screenshot(browser, "job")


def test_a_script_annotation_is_shown_as_text(devstack, dashboard, browser, tmp_path):
    job_id = create(
        devstack,
        tmp_path,
        "Spec:\n  Engine: Noop\n  Timeout: 60\n  Annotations: ['" + SCRIPT_ANNOTATION + "']\n"
        "Deal:\n  Concurrency: 1\n",
        "--wait=false",
    )
    browser.get(dashboard + "jobs?prefix=" + job_id[:8])
    cell = wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{job_id}"] td.annotations'),
        "the job's row",
    )
    assert cell.text == SCRIPT_ANNOTATION
    assert browser.execute_script("return window.__pwned") is None
    browser.get(dashboard + "jobs/" + job_id)
    wait_for(lambda: browser.find_element(By.ID, "annotations").text == SCRIPT_ANNOTATION, "the annotation")
    assert browser.execute_script("return window.__pwned") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "main script")


def test_the_dashboard_is_read_only_and_sends_a_content_security_policy(dashboard):
    with urllib.request.urlopen(dashboard + "jobs", timeout=10) as response:
        policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    request = urllib.request.Request(dashboard + "api/jobs/anything/cancel", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert json.load(refused.value) == {"error": "missing or wrong CSRF token"}


def test_env_values_are_hidden_names_kept():
    spec = {
        "Docker": {"Image": "x", "EnvironmentVariables": ["TOKEN=s3cret", "MODE=fast"]},
        "Wasm": {"EnvironmentVariables": {"KEY": "value"}},
        "Annotations": ["a=b"],
    }
    hidden = hide_env(spec)
    assert hidden["Docker"]["EnvironmentVariables"] == [f"TOKEN={HIDDEN}", f"MODE={HIDDEN}"]
    assert hidden["Wasm"]["EnvironmentVariables"] == {"KEY": HIDDEN}
    assert hidden["Annotations"] == ["a=b"] and "s3cret" not in repr(hidden)


def test_cancel_from_the_job_page_stops_a_running_job(devstack, dashboard, browser):
    job_id = start_spinning(devstack)
    browser.get(dashboard + "jobs/" + job_id)
    wait_for(lambda: "spinning" in browser.find_element(By.ID, "logs").text, "the running job's output")
    assert browser.find_element(By.ID, "overview-state").text in ("Waiting", "Running")
    button = wait_for(lambda: browser.find_element(By.ID, "cancel"), "the cancel button")
    assert button.get_attribute("aria-label") == "Cancel this job"
    button.click()
    alert = browser.switch_to.alert  # "Cancel job ...?"
    assert job_id in alert.text
    alert.accept()
    wait_for(
        lambda: browser.find_element(By.ID, "overview-state").text == "Cancelled", "the job to show Cancelled"
    )
    wait_for(lambda: not browser.find_elements(By.ID, "cancel"), "the button to go once the job ended")

    assert asyncio.run(job_states(devstack, job_id)) == {"CANCELLED"}
    events = [e.get_attribute("data-event") for e in browser.find_elements(By.CSS_SELECTOR, "#timeline li")]
    assert events[-1] == "BidCancelled", events
    screenshot(browser, "job-cancelled")


def test_the_jobs_page_pages_on_the_server_forward_and_back(devstack, dashboard, browser):
    async def submit_many() -> list[str]:
        async with sdk(devstack) as client:
            job = m.Job(
                spec=m.Spec(engine=m.Engine.NOOP, verifier=m.Verifier.NOOP, publisher=m.Publisher.NOOP),
                deal=m.Deal(concurrency=1),
            )
            return [(await client.submit(job)).id for _ in range(12)]

    newest_first = asyncio.run(submit_many())[::-1]
    browser.get(dashboard + "jobs?size=10")

    def listed() -> list[str]:
        return [
            r.get_attribute("data-job-id") for r in browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
        ]

    wait_for(lambda: listed() == newest_first[:10], "the ten newest jobs on page 1")
    wait_for(
        lambda: all(
            c.text == "Completed" for c in browser.find_elements(By.CSS_SELECTOR, "#jobs tbody td.state")
        ),
        "the page's jobs completed",
    )
    screenshot(browser, "jobs")
    assert browser.find_element(By.ID, "pageno").text == "page 1"
    assert not browser.find_element(By.ID, "prev").is_enabled()
    browser.find_element(By.ID, "next").click()
    wait_for(lambda: listed()[:2] == newest_first[10:], "the next two on page 2")
    assert browser.find_element(By.ID, "pageno").text == "page 2"
    assert not set(listed()) & set(newest_first[:10])
    browser.find_element(By.ID, "prev").click()
    wait_for(lambda: listed() == newest_first[:10], "page 1 again")


def test_a_grid_taller_than_its_view_draws_only_the_rows_in_view(
    devstack, dashboard, browser, files_url, tmp_path
):
    inputs = "".join(
        f"    - StorageSource: URLDownload\n      URL: {files_url(f'many-{i}.txt')}\n      path: /inputs\n"
        for i in range(MANY_SHARDS)
    )
    text = (
        "Spec:\n  Engine: Noop\n  Timeout: 120\n  inputs:\n"
        + inputs
        + "  Sharding:\n    GlobPattern: '*.txt'\n    BatchSize: 1\n    GlobPatternBasePath: /inputs\n"
        "Deal:\n  Concurrency: 1\n"
    )
    job_id = create(devstack, tmp_path, text, "--wait-timeout-secs", "180")
    browser.get(dashboard + "jobs/" + job_id)
    wait_for(
        lambda: f"{MANY_SHARDS}/{MANY_SHARDS} shard(s) done" in browser.find_element(By.ID, "summary").text,
        "every shard done",
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "#grid tbody tr.shard-row")
    assert 0 < len(rows) < MANY_SHARDS, len(rows)
    assert rows[0].get_attribute("data-shard") == "0"
    note = browser.find_element(By.ID, "logs-note").text
    assert note == f"{MANY_SHARDS} shards: click a cell of the grid to follow its shard's logs.", note
    assert not browser.find_elements(By.CSS_SELECTOR, "#logs details")  # none streamed until asked
    legend = browser.find_element(By.CSS_SELECTOR, '#legend [data-state="Completed"]').text
    assert legend == f"Completed {MANY_SHARDS}"
    browser.execute_script("const s = document.getElementById('grid-scroll'); s.scrollTop = s.scrollHeight;")
    last = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, f'#grid tr.shard-row[data-shard="{MANY_SHARDS - 1}"]'),
        "the last shard's row after scrolling",
    )
    cells = last[0].find_elements(By.CSS_SELECTOR, "td.cell")
    assert [c.get_attribute("data-state") for c in cells] == ["Completed"], cells
    assert len(browser.find_elements(By.CSS_SELECTOR, "#grid tbody tr.shard-row")) < MANY_SHARDS

    # "Go to shard" brings a shard's row into view and marks it; a state's chip, the next shard in it
    def target() -> str | None:
        rows = browser.find_elements(By.CSS_SELECTOR, "#grid tr.shard-row.target")
        return rows[0].get_attribute("data-shard") if len(rows) == 1 else None

    box = browser.find_element(By.ID, "goto-shard")
    box.send_keys("37")
    box.submit()
    wait_for(lambda: target() == "37", "shard 37 marked")
    assert browser.switch_to.active_element.get_attribute("data-state") == "Completed"  # its cell
    grid = browser.find_element(By.ID, "grid")
    wait_for(lambda: grid.get_attribute("data-ended-ms"), "the live view's end (no more legend redraws)")
    browser.find_element(By.CSS_SELECTOR, '#legend button[data-state="Completed"]').click()
    wait_for(lambda: target() == "38", "the next Completed shard, 38")
    box.clear()
    box.send_keys(str(MANY_SHARDS))  # no such shard: the box says so, nothing moves
    box.submit()
    assert browser.execute_script("return document.getElementById('goto-shard').validationMessage") == (
        f"No shard {MANY_SHARDS} (0 to {MANY_SHARDS - 1})"
    )
    assert target() == "38"


def test_bad_requests_name_what_is_wrong(dashboard):
    for query, named in (
        ("state=finished", "unknown state 'finished'"),
        ("size=7", "page size must be one of 10, 25, 50, 100"),
        ("sort=size", "unknown sort 'size'"),
        ("cursor=not-a-token", "not a page token"),
    ):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(dashboard + "api/jobs?" + query, timeout=10)
        assert refused.value.code == 400, query
        assert named in json.load(refused.value)["error"], query
    for shard in ("-1", "1e3", "9" * 30):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{dashboard}api/jobs/any/logs?shard={shard}", timeout=10)
        assert refused.value.code == 400, shard
        assert json.load(refused.value)["error"].startswith("shard must be a shard index"), shard
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(dashboard + "api/jobs/no-such-job", timeout=10)
    assert missing.value.code == 404
    with urllib.request.urlopen(dashboard + "healthz", timeout=10) as response:
        assert json.load(response)["ok"] is True


def test_cancel_from_another_origin_is_refused_even_with_the_token(devstack, dashboard):
    """A page of another site that got hold of the token still cannot cancel: its Origin is not ours."""
    job_id = start_spinning(devstack)
    try:
        with urllib.request.urlopen(dashboard + "api/config", timeout=10) as response:
            token = json.load(response)["csrf"]
        assert token
        request = urllib.request.Request(
            f"{dashboard}api/jobs/{job_id}/cancel",
            method="POST",
            data=b"",
            headers={"X-CSRF-Token": token, "Origin": "http://evil.example"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
        assert json.load(refused.value) == {"error": "cross-origin request refused"}
        assert asyncio.run(job_states(devstack, job_id)) != {"CANCELLED"}  # still running
    finally:
        asyncio.run(cancel(devstack, job_id))


async def job_states(devstack, job_id: str) -> set[str]:
    async with sdk(devstack) as client:
        return {row.state.name async for row in client.shards(job_id)}


def test_a_request_for_another_host_name_is_refused(dashboard):
    """A page of another site whose DNS name was rebound to this address reaches the dashboard with its own
    name in the Host header: refused (the dashboard listens on 127.0.0.1, so only loopback names)."""
    port = urllib.parse.urlsplit(dashboard).port
    for host, code in ((f"evil.example:{port}", 421), (f"localhost:{port}", 200), (f"127.0.0.1:{port}", 200)):
        request = urllib.request.Request(dashboard + "api/config", headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as err:
            status = err.code
            assert "does not serve the host 'evil.example" in json.load(err)["error"]
        assert status == code, host


@pytest.mark.parametrize("page", ["network", "jobs", "job"])
def test_each_page_fits_a_phone_screen(devstack, dashboard, browser, page):
    target = "jobs/" + finished_job(devstack) if page == "job" else page
    browser.set_window_size(390, 844)
    try:
        browser.get(dashboard + target)
        if page == "job":
            grid = browser.find_element(By.ID, "grid")
            wait_for(lambda: grid.get_attribute("data-ended-ms"), "the live view's end")
            wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#results > *"), "the results")
        else:
            wait_for(lambda: "updated" in browser.find_element(By.ID, "summary").text, "the page filled")
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{page}: {overflow} px wider than the screen"
        for control in browser.find_elements(By.CSS_SELECTOR, "button, select, input"):
            name = control.get_attribute("aria-label") or control.accessible_name
            assert name, control.get_attribute("outerHTML")
        screenshot(browser, f"{page}-phone", width=390)
    finally:
        browser.set_window_size(1280, 900)


def finished_job(devstack) -> str:
    """A noop job of the dashboard's key, once it has ended."""

    async def run() -> str:
        async with sdk(devstack) as client:
            job = m.Job(
                spec=m.Spec(engine=m.Engine.NOOP, verifier=m.Verifier.NOOP, publisher=m.Publisher.LOCAL),
                deal=m.Deal(concurrency=1),
            )
            submitted = await client.submit(job)
            await client.wait(submitted.id, timeout=120)
            return submitted.id

    return asyncio.run(run())


def test_live_views_past_the_limit_are_refused_until_one_closes(devstack):
    job_id = start_spinning(devstack)
    try:
        with running_dashboard(devstack, "--max-live-views", "1") as url:
            live = urllib.request.urlopen(f"{url}api/jobs/{job_id}/live", timeout=30)
            assert live.readline() == b"event: grid\n"  # the one view, open while the job runs
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{url}api/jobs/{job_id}/logs", timeout=30)
            assert refused.value.code == 503
            assert json.load(refused.value)["error"].startswith("too many live views open (1)")
            live.close()

            def reopened() -> bool:
                try:
                    with urllib.request.urlopen(f"{url}api/jobs/{job_id}/live", timeout=30) as again:
                        return again.readline() == b"event: grid\n"
                except urllib.error.HTTPError as err:
                    assert err.code == 503
                    return False

            wait_for(reopened, "a live view once the first closed")
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(cancel(devstack, job_id))


async def cancel(devstack, job_id: str) -> None:
    async with sdk(devstack) as client:
        await client.cancel(job_id, reason="the test is done with it")


def test_a_results_archive_past_the_limit_is_refused_naming_get(devstack, docker_engine):
    made = run_cli(
        "docker",
        "run",
        "--wait",
        "--wait-timeout-secs",
        "120",
        "--publisher",
        "local",
        docker_engine,
        "--",
        "sh",
        "-c",
        "head -c 1500000 /dev/zero > /outputs/big",
        env=devstack.env,
        timeout=180,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    job_id = job_id_of(made.stdout)
    with running_dashboard(devstack, "--max-download-mb", "1") as url:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}api/jobs/{job_id}/results.tar.gz", timeout=120)
        assert refused.value.code == 502
        message = json.load(refused.value)["error"]
        assert f"the results of job {job_id} are more than the 1,048,576 bytes" in message, message
        assert f"download them with `bacalhau-grpc get {job_id}`" in message
