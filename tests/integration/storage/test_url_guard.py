"""URL inputs cannot reach inside: loopback, private, link-local, multicast, reserved
and cloud metadata addresses are refused before connecting, whether written in the URL, resolved from
its host name or reached by a redirect, with an error naming the address; `url_download_allow_networks`
lets listed networks through; and a job whose runs would download more URL inputs than the node's
`url_download_max_inputs` is refused at bid time. Real HTTP servers on 127.0.0.1:0; host names other
than localhost go through a test resolver (`UrlSource(resolver=...)`), since no real name resolves to a
test server."""

import ipaddress
import socket
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.bidding import BidRequest, UrlInputCount, url_downloads_per_run
from bacalhau_grpc.compute.domain.ports import StorageError
from bacalhau_grpc.compute.settings import ComputeSettings
from bacalhau_grpc.compute.storage.url import UrlSource, address_kind
from tests.integration.network import E, Network, noop_job

URL_DOWNLOAD = pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD
DATA = b"inside\n"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
HINT = "(allow its network with --url-download-allow-networks)"
# Test host names: one public-looking name that resolves to a private address, one to the test server.
NAMES = {"inside.example": "10.1.2.3", "files.example": "127.0.0.1"}


class TestResolver(AbstractResolver):
    """Resolves NAMES (what a DNS server would answer for them); no other name."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = NAMES[host]
        return [
            ResolveResult(hostname=host, host=address, port=port, family=socket.AF_INET, proto=0, flags=0)
        ]

    async def close(self) -> None:
        return None


@pytest.fixture
async def server():
    """A file server on 127.0.0.1:0: (its base URL, the requests each path got). /files/<name> answers
    DATA; /to?url=U redirects to U."""
    hits: Counter = Counter()

    async def a_file(request: web.Request) -> web.Response:
        hits[request.path] += 1
        return web.Response(body=DATA)

    async def redirect(request: web.Request) -> web.Response:
        hits[request.path] += 1
        raise web.HTTPFound(request.query["url"])

    app = web.Application()
    app.router.add_get("/files/{name}", a_file)
    app.router.add_get("/to/{name}", redirect)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}", hits
    await runner.cleanup()


@pytest.fixture
async def sources():
    """UrlSource(allow_networks=...) → a source closed after the test."""
    made: list[UrlSource] = []

    def make(*networks: str, resolver: AbstractResolver | None = None) -> UrlSource:
        source = UrlSource(
            timeout=5,
            max_bytes=1024,
            backoff=0.01,
            allow_networks=[ipaddress.ip_network(n) for n in networks],
            resolver=resolver,
        )
        made.append(source)
        return source

    yield make
    for source in made:
        await source.close()


def url_volume(url: str) -> pb.StorageSpec:
    return pb.StorageSpec(storage_source=URL_DOWNLOAD, url=url, path="/inputs")


async def test_a_loopback_url_is_refused_before_connecting_naming_the_address(sources, server, tmp_path):
    base, hits = server
    url = f"{base}/files/data.txt"
    with pytest.raises(StorageError) as refused:
        await sources().prepare(url_volume(url), tmp_path)
    assert str(refused.value) == (
        f"URL input {url}: refusing to download from 127.0.0.1, a loopback address {HINT}"
    )
    assert hits == Counter()


@pytest.mark.parametrize(
    ("host", "shown", "kind"),
    [
        ("169.254.169.254", "169.254.169.254", "a cloud metadata address"),
        ("[fd00:ec2::254]", "fd00:ec2::254", "a cloud metadata address"),
        ("169.254.10.1", "169.254.10.1", "a link-local address"),
        ("10.0.0.1", "10.0.0.1", "a private address"),
        ("192.168.1.1", "192.168.1.1", "a private address"),
        ("172.16.0.1", "172.16.0.1", "a private address"),
        ("[::1]", "::1", "a loopback address"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1", "a loopback address"),  # as yarl writes it
        ("0.0.0.0", "0.0.0.0", "an unspecified address"),
        ("224.0.0.1", "224.0.0.1", "a multicast address"),
        ("100.64.0.1", "100.64.0.1", "a non-public address"),
    ],
)
async def test_addresses_inside_are_refused(sources, tmp_path, host, shown, kind):
    url = f"http://{host}/latest/meta-data.txt"
    with pytest.raises(StorageError) as refused:
        await sources().prepare(url_volume(url), tmp_path)
    assert str(refused.value) == f"URL input {url}: refusing to download from {shown}, {kind} {HINT}"


def test_public_addresses_pass():
    for address in ("93.184.216.34", "8.8.8.8", "2606:4700::1111"):
        assert address_kind(ipaddress.ip_address(address)) is None


async def test_a_name_resolving_inside_is_refused_naming_the_address(sources, tmp_path):
    url = "http://localhost:9/data.txt"
    with pytest.raises(StorageError) as refused:
        await sources().prepare(url_volume(url), tmp_path)
    assert str(refused.value).startswith(f"URL input {url}: localhost resolves to ")
    assert f", a loopback address {HINT}" in str(refused.value)

    url = "http://inside.example/data.txt"
    with pytest.raises(StorageError) as refused:
        await sources(resolver=TestResolver()).prepare(url_volume(url), tmp_path)
    assert str(refused.value) == (
        f"URL input {url}: inside.example resolves to 10.1.2.3: refusing to download from 10.1.2.3, "
        f"a private address {HINT}"
    )


async def test_with_its_network_allowed_the_local_server_is_reached(sources, server, tmp_path):
    base, hits = server
    port = base.rpartition(":")[2]
    got = await sources("127.0.0.0/8").prepare(url_volume(f"{base}/files/a.txt"), tmp_path)
    assert got.read_bytes() == DATA
    # A name is checked on the address it resolves to, and that address is the one connected to.
    by_name = f"http://files.example:{port}/files/b.txt"
    got = await sources("127.0.0.1/32", resolver=TestResolver()).prepare(url_volume(by_name), tmp_path)
    assert got.read_bytes() == DATA
    assert hits == Counter({"/files/a.txt": 1, "/files/b.txt": 1})


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "http://169.254.169.254/latest/meta-data/iam.txt",
            f"refusing to download from 169.254.169.254, a cloud metadata address {HINT}",
        ),
        (
            "http://127.0.0.2:{port}/files/secret.txt",
            f"refusing to download from 127.0.0.2, a loopback address {HINT}",
        ),
        (
            "http://inside.example/secret.txt",
            "inside.example resolves to 10.1.2.3: refusing to download from 10.1.2.3, a private address "
            + HINT,
        ),
    ],
)
async def test_a_redirect_inside_is_refused_at_the_redirect(sources, server, tmp_path, target, message):
    base, hits = server
    target = target.format(port=base.rpartition(":")[2])
    url = f"{base}/to/data.txt?url={target}"
    source = sources("127.0.0.1/32", resolver=TestResolver())
    with pytest.raises(StorageError) as refused:
        await source.prepare(url_volume(url), tmp_path)
    assert str(refused.value) == f"URL input {url}: redirected to {target}: {message}"
    assert hits == Counter({"/to/data.txt": 1})  # asked once (a refusal is not retried), never followed
    assert not list(Path(tmp_path).rglob("*.txt"))


def test_the_settings_read_the_allowed_networks_and_the_input_limit(tmp_path):
    settings = ComputeSettings(
        requester_address="127.0.0.1:1",
        data_dir=tmp_path,
        url_download_allow_networks=" 127.0.0.0/8, fd00::/8 ,",
    )
    assert settings.url_download_networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert settings.url_download_max_inputs == 100
    assert ComputeSettings(requester_address="x:1", data_dir=tmp_path).url_download_networks == ()
    with pytest.raises(InvalidArgumentError, match=r"'10\.0\.0\.0/33' is not a comma-separated") as bad:
        ComputeSettings(requester_address="x:1", data_dir=tmp_path, url_download_allow_networks="10.0.0.0/33")
    assert bad.value.field == "url_download_allow_networks"
    with pytest.raises(InvalidArgumentError) as bad:
        ComputeSettings(requester_address="x:1", data_dir=tmp_path, url_download_max_inputs=0)
    assert bad.value.field == "url_download_max_inputs"


def url_job(count: int, *, glob: str = "", batch: int = 0) -> pb.Job:
    job = noop_job()
    job.spec.inputs.extend(url_volume(f"http://files.example/{i}.txt") for i in range(count))
    job.spec.sharding.glob_pattern = glob
    job.spec.sharding.batch_size = batch
    return job


def test_the_url_input_count_is_per_run():
    assert url_downloads_per_run(url_job(3).spec) == 3
    assert url_downloads_per_run(url_job(300, glob="*.txt", batch=2).spec) == 2
    assert url_downloads_per_run(url_job(3, glob="*.txt", batch=10).spec) == 3
    job = url_job(1)
    job.spec.contexts.append(url_volume("http://files.example/code.py"))
    assert url_downloads_per_run(job.spec) == 2
    limit = UrlInputCount(2)
    assert limit.check(BidRequest(url_job(2), 0)) is None
    assert limit.check(BidRequest(url_job(40, glob="*", batch=2), 0)) is None
    assert limit.check(BidRequest(url_job(3), 0)) == (
        "a run of this job downloads up to 3 URL inputs, more than the 2 this node allows "
        "(url_download_max_inputs)"
    )


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    yield net
    await net.stop()


async def test_a_job_with_more_url_inputs_than_the_node_allows_is_refused_at_bid_time(network):
    await network.start(compute=[{"url_download_max_inputs": 2}])
    job = await network.submit(url_job(3))
    refusal = await network.wait_for_event(job.id, E.JOB_EVENT_TYPE_BID_CANCELLED)
    assert (refusal.source_node_id, refusal.status) == (
        network.computes[0].node_id,
        "declined to bid: a run of this job downloads up to 3 URL inputs, more than the 2 this node "
        "allows (url_download_max_inputs)",
    )
