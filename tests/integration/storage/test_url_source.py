"""URLDownload volumes against a real HTTP server on 127.0.0.1:0: where the file lands and under which
name (the submitted URL's, redirects followed), retries, limits and the errors a user reads; the URL
checks made at submission; and WASM jobs reading URL inputs through a whole network."""

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from bacalhau_grpc.common.content.archive import make_tar_gz
from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import checks, pb
from bacalhau_grpc.compute.domain.ports import StorageError
from bacalhau_grpc.compute.storage.url import UrlSource
from bacalhau_grpc.compute.storage.volumes import Volumes
from tests.integration.network import E, Network, names, of_type

URL_DOWNLOAD = pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD
WASM = Path(__file__).resolve().parent.parent.parent / "wasm"
DATA = b"compute over data\n"
BIG = b"x" * 4096
# What the tests let a download take: short, so failures are quick, yet far above a local request.
LIMIT = 1024
# The test server is on 127.0.0.1, which URL downloads reach only when allowed (test_url_guard.py).
LOCAL = [ipaddress.ip_network("127.0.0.0/8")]
ALLOW_LOCAL = {"url_download_allow_networks": "127.0.0.0/8"}


@dataclass
class Server:
    """The test HTTP server: its base URL, the requests each path got, and when the slow ones ran."""

    base: str = ""
    hits: Counter = field(default_factory=Counter)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    both_started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return self.base + path


def routes(server: Server) -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/files/{name}")
    async def a_file(request: web.Request) -> web.Response:
        return web.Response(body=DATA if request.match_info["name"] != "big.bin" else BIG)

    @table.get("/hop/{n}/{name}")
    async def hop(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        name = request.match_info["name"]
        target = f"/hop/{n - 1}/{name}" if n > 1 else "/files/final%20name.txt?version=2"
        raise web.HTTPFound(target)

    @table.get("/unnamed.txt")
    async def to_a_folder(request: web.Request) -> web.Response:
        raise web.HTTPFound("/folder/")

    @table.get("/folder/")
    async def folder(request: web.Request) -> web.Response:
        return web.Response(body=DATA)

    @table.get("/to-ftp.txt")
    async def to_ftp(request: web.Request) -> web.Response:
        raise web.HTTPFound("ftp://127.0.0.1/file.txt")

    @table.get("/missing.txt")
    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    @table.get("/empty.txt")
    async def empty(request: web.Request) -> web.Response:
        return web.Response(body=b"")

    @table.get("/flaky/{status}/data.txt")
    async def flaky(request: web.Request) -> web.Response:
        server.hits[request.path] += 1
        if server.hits[request.path] == 1:
            return web.Response(status=int(request.match_info["status"]))
        return web.Response(body=DATA)

    @table.get("/down.txt")
    async def down(request: web.Request) -> web.Response:
        server.hits[request.path] += 1
        return web.Response(status=503)

    @table.get("/endless.bin")
    async def endless(request: web.Request) -> web.StreamResponse:
        """Chunked (no Content-Length): the limit is only seen while reading."""
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(16):
            await response.write(BIG[:512])
        await response.write_eof()
        return response

    @table.get("/slow.txt")
    async def slow(request: web.Request) -> web.Response:
        await _wait(server.release)
        return web.Response(body=DATA)

    @table.get("/overlap/{name}")
    async def overlap(request: web.Request) -> web.Response:
        """Waits until two of these requests have started (or 10 s), so only concurrent ones overlap."""
        start = time.monotonic()
        server.intervals[request.match_info["name"]] = (start, start)
        if len(server.intervals) == 2:
            server.both_started.set()
        await _wait(server.both_started, 10)
        server.intervals[request.match_info["name"]] = (start, time.monotonic())
        return web.Response(body=request.match_info["name"].encode())

    return table


async def _wait(event: asyncio.Event, timeout: float = 60) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


@pytest.fixture
async def server():
    state = Server()
    app = web.Application()
    app.add_routes(routes(state))
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.base = f"http://{host}:{port}"
    yield state
    state.release.set()
    await runner.cleanup()


@pytest.fixture
async def source():
    urls = UrlSource(timeout=5, max_bytes=LIMIT, attempts=3, backoff=0.01, allow_networks=LOCAL)
    yield urls
    await urls.close()


def url_volume(url: str, path: str = "/inputs") -> pb.StorageSpec:
    return pb.StorageSpec(storage_source=URL_DOWNLOAD, url=url, path=path)


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def file_of(path: Path) -> dict[str, bytes]:
    """The downloaded file, which must be alone in its folder."""
    assert files_in(path.parent) == {path.name: path.read_bytes()}
    return {path.name: path.read_bytes()}


async def test_a_url_is_never_local(source, server):
    assert not await source.is_local(url_volume(server.url("/files/data.txt")))


async def test_the_file_lands_in_a_folder_of_its_own_under_its_name(source, server, tmp_path):
    path = await source.prepare(url_volume(server.url("/files/data.txt")), tmp_path)
    assert path.parent.parent == tmp_path
    assert file_of(path) == {"data.txt": DATA}
    again = await source.prepare(url_volume(server.url("/files/data.txt")), tmp_path)
    assert again.parent != path.parent and file_of(again) == {"data.txt": DATA}


async def test_the_name_is_percent_decoded_and_leaves_the_query_out(source, server, tmp_path):
    path = await source.prepare(url_volume(server.url("/files/a%20b.txt?version=2")), tmp_path)
    assert file_of(path) == {"a b.txt": DATA}


async def test_redirects_are_followed_and_the_submitted_url_names_the_file(source, server, tmp_path):
    """The name the requester gave the sharding atom, not the final URL's "final name.txt"."""
    path = await source.prepare(url_volume(server.url("/hop/3/report%20v1.csv")), tmp_path)
    assert file_of(path) == {"report v1.csv": DATA}


async def test_a_redirect_to_a_url_without_a_name_keeps_the_submitted_name(source, server, tmp_path):
    path = await source.prepare(url_volume(server.url("/unnamed.txt")), tmp_path)
    assert file_of(path) == {"unnamed.txt": DATA}


@pytest.mark.parametrize("status", [503, 500, 429])
async def test_a_server_error_is_retried(source, server, tmp_path, status):
    path = await source.prepare(url_volume(server.url(f"/flaky/{status}/data.txt")), tmp_path)
    assert file_of(path) == {"data.txt": DATA}
    assert server.hits[f"/flaky/{status}/data.txt"] == 2


async def test_a_server_that_keeps_failing_is_given_three_attempts(source, server, tmp_path):
    url = server.url("/down.txt")
    with pytest.raises(StorageError) as caught:
        await source.prepare(url_volume(url), tmp_path)
    assert str(caught.value) == (
        f"non-200 response from URL ({url}): 503 Service Unavailable (after 3 attempts)"
    )
    assert server.hits["/down.txt"] == 3


async def test_a_404_fails_at_once_naming_the_url(source, server, tmp_path):
    url = server.url("/missing.txt")
    with pytest.raises(StorageError) as caught:
        await source.prepare(url_volume(url), tmp_path)
    assert str(caught.value) == f"non-200 response from URL ({url}): 404 Not Found"


async def test_an_empty_body_fails_and_leaves_no_file(source, server, tmp_path):
    url = server.url("/empty.txt")
    with pytest.raises(StorageError) as caught:
        await source.prepare(url_volume(url), tmp_path)
    assert str(caught.value) == f"no bytes written to file empty.txt: {url} returned an empty body"
    assert all(not any(folder.iterdir()) for folder in tmp_path.iterdir())


@pytest.mark.parametrize("path", ["/files/big.bin", "/endless.bin"])
async def test_a_body_past_the_limit_is_refused_with_the_limit(source, server, tmp_path, path):
    url = server.url(path)
    with pytest.raises(StorageError, match=f"^{url} is larger.* than the limit of {LIMIT} bytes"):
        await source.prepare(url_volume(url), tmp_path)
    assert all(not any(folder.iterdir()) for folder in tmp_path.iterdir())


async def test_a_download_past_the_timeout_is_abandoned(server, tmp_path):
    quick = UrlSource(timeout=0.2, max_bytes=LIMIT, backoff=0.01, allow_networks=LOCAL)
    try:
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"^downloading http://.*/slow.txt took longer than 0.2s$"):
            await quick.prepare(url_volume(server.url("/slow.txt")), tmp_path)
        assert time.monotonic() - started < 5
    finally:
        await quick.close()


async def test_an_unreachable_server_is_retried_then_reported(source, tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.txt"
    with pytest.raises(StorageError, match=rf"^could not download {url}: .*\(after 3 attempts\)$"):
        await source.prepare(url_volume(url), tmp_path)


async def test_a_redirect_to_another_scheme_is_refused(source, server, tmp_path):
    with pytest.raises(StorageError, match=r"^could not download http://.*/to-ftp.txt: .*ftp://"):
        await source.prepare(url_volume(server.url("/to-ftp.txt")), tmp_path)


async def test_the_provider_checks_the_url_itself(source, tmp_path):
    with pytest.raises(StorageError, match="unsupported URL scheme 'file': use http or https"):
        await source.prepare(url_volume("file:///etc/passwd"), tmp_path)


async def test_volumes_download_two_urls_at_once_and_mount_each_file_at_path_slash_name(
    source, server, tmp_path
):
    volumes = Volumes([source])
    specs = [url_volume(server.url("/overlap/a.txt")), url_volume(server.url("/overlap/b.txt"))]
    mounts = await volumes.prepare(specs, field="Spec.inputs", scratch=tmp_path)
    assert [(m.target, m.read_only) for m in mounts] == [("/inputs/a.txt", True), ("/inputs/b.txt", True)]
    assert [file_of(m.source) for m in mounts] == [{"a.txt": b"a.txt"}, {"b.txt": b"b.txt"}]
    (a_start, a_end), (b_start, b_end) = server.intervals["a.txt"], server.intervals["b.txt"]
    assert a_start < b_end and b_start < a_end, server.intervals
    await volumes.close()


async def test_volumes_name_the_input_whose_download_failed(source, server, tmp_path):
    volumes = Volumes([source])
    specs = [url_volume(server.url("/files/data.txt")), url_volume(server.url("/missing.txt"))]
    failed = r"^Spec.inputs\[1\] \(URLDownload http://.*/missing.txt\): non-200 response"
    with pytest.raises(StorageError, match=failed):
        await volumes.prepare(specs, field="Spec.inputs", scratch=tmp_path)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com", "URL 'http://example.com' has no file name: its path must end in the name"),
        ("https://example.com/", "URL 'https://example.com/' has no file name: its path must end in"),
        ("http://h/d/", "URL 'http://h/d/' has no file name: its path must end in the name of the file"),
        ("http://h/a%2Fb", "URL 'http://h/a%2Fb' ends in 'a/b', which cannot be a file name"),
        ("ftp://example.com/data.txt", "unsupported URL scheme 'ftp': use http or https"),
        ("garbage", "'garbage' is not a URL: it has no scheme (use http or https)"),
        ("not a url", "'not a url' is not a URL: it is empty or holds spaces or control characters"),
        ("http://[::1/data.txt", "'http://[::1/data.txt' is not a valid URL: Invalid IPv6 URL"),
        ("http://example.com:99999/data.txt", "is not a valid URL: Port out of range"),
        ("http:///data.txt", "URL 'http:///data.txt' has no host"),
        ("", "the volume has no URL"),
    ],
)
def test_submission_refuses_urls_that_cannot_be_downloaded(url, message):
    volumes = [url_volume("https://example.com/ok.txt", "/ok"), url_volume(url)]
    problem = checks.input_error(volumes, field="Spec.inputs")
    assert problem is not None and message in problem[0], problem
    assert problem[1] == "Spec.inputs[1].URL"


@pytest.mark.parametrize("url", ["http://example.com/data.txt", "HTTPS://example.com/a/b?c=d", "http://h/d"])
def test_submission_accepts_http_urls_naming_a_file(url):
    assert checks.input_error([url_volume(url)], field="Spec.inputs") is None


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    yield net
    await net.stop()


def files_job(*urls: str, reads: tuple[str, ...] = ("/inputs/words.txt",)) -> pb.Job:
    """A WASM job (files.wasm) copying the files `reads` (the URL inputs at /inputs/<name>) to /outputs,
    upper-cased."""
    job = pb.Job(api_version="V1beta1")
    job.spec.engine = pb.Engine.ENGINE_WASM
    job.spec.verifier = pb.Verifier.VERIFIER_NOOP
    job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
    job.spec.timeout = 60
    job.deal.concurrency = 1
    job.spec.wasm.parameters.extend([*reads, "/outputs/shout.txt"])
    job.spec.inputs.extend(url_volume(url) for url in urls)
    job.spec.outputs.append(pb.StorageSpec(name="outputs", path="/outputs"))
    return job


async def test_a_wasm_job_reads_its_url_input_at_path_slash_name(network, server):
    await network.start(compute=[ALLOW_LOCAL])
    context = make_tar_gz({"files.wasm": (WASM / "files.wasm").read_bytes()})
    submitted = await network.submit(files_job(server.url("/files/words.txt")), context=context)
    events = await network.wait_for_end(submitted.id, timeout=60)
    assert names(events)[-1] == "RESULTS_PUBLISHED", [(e.event_name, e.status) for e in events]
    (result,) = of_type(events, E.JOB_EVENT_TYPE_RESULTS_PROPOSED)
    assert result.run_output.stdout == (
        f"read {len(DATA)} bytes from /inputs/words.txt\nwrote /outputs/shout.txt\n"
    )
    assert result.run_output.exit_code == 0

    with pytest.raises(InvalidArgumentError, match="has no file name") as caught:
        await network.submit(files_job(server.base), context=context)
    assert caught.value.field == "Spec.inputs[0].URL"


async def test_a_wasm_job_reads_two_url_inputs_side_by_side_under_inputs(network, server):
    await network.start(compute=[ALLOW_LOCAL])
    context = make_tar_gz({"files.wasm": (WASM / "files.wasm").read_bytes()})
    job = files_job(
        server.url("/files/one.txt"),
        server.url("/hop/2/two%20words.txt"),  # redirected to another name: mounted under this one
        reads=("/inputs/one.txt", "/inputs/two words.txt"),
    )
    submitted = await network.submit(job, context=context)
    events = await network.wait_for_end(submitted.id, timeout=60)
    assert names(events)[-1] == "RESULTS_PUBLISHED", [(e.event_name, e.status) for e in events]
    (result,) = of_type(events, E.JOB_EVENT_TYPE_RESULTS_PROPOSED)
    assert result.run_output.stdout == (
        f"read {len(DATA)} bytes from /inputs/one.txt\n"
        f"read {len(DATA)} bytes from /inputs/two words.txt\n"
        "wrote /outputs/shout.txt\n"
    )
