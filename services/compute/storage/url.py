"""URLDownload volumes (Bacalhau v0.3's URL storage source): a file fetched over http(s) for one run.

`prepare` GETs the URL (redirects followed) into a fresh folder under the execution's scratch folder and
returns the file, named `checks.url_file_name(URL)`: the last path segment of the URL as submitted,
percent-decoded, even when a redirect ends at another name (a URL naming no file is refused at
submission). The job sees it at `<Path>/<name>` (`checks.mount_path`), which is also its sharding
atom's path, so a shard's glob selects what is mounted. The body is streamed to disk in chunks.
Connection errors, bodies cut short and answers 5xx or 429 are retried with exponential back-off; any
other answer but 200 fails at once ("non-200 response from URL (%s): %s"), as does an empty body ("no
bytes written to file %s") or one larger than `max_bytes`. The whole download, retries included, must
end within `timeout` seconds. A URL is never local: every run downloads it again.

URLs cannot reach inside: the node resolves each host itself (`GuardedResolver`, the session's only
resolver) and connects only to addresses it checked, so a name cannot resolve to one address when
checked and another when connected. Loopback, private, link-local, multicast, reserved, unspecified,
other non-global and cloud metadata addresses (169.254.169.254, fd00:ec2::254) are refused, with an
error naming the address ("URL input http://127.0.0.1:8080/x: refusing to download from 127.0.0.1, a
loopback address (allow its network with --url-download-allow-networks)"), unless they lie in one of
`allow_networks`. Redirects are followed here, one hop at a time (at most MAX_REDIRECTS), so every hop
is checked the same way: an address written in the URL before connecting, a name by the resolver.
"""

import asyncio
import ipaddress
import socket
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from bacalhau_grpc.common.model import checks, pb
from bacalhau_grpc.compute.domain.ports import StorageError

CHUNK_BYTES = 1 << 20
DEFAULT_TIMEOUT = 300.0
DEFAULT_MAX_BYTES = 10 * 1024**3
USER_AGENT = "bacalhau-grpc (URLDownload)"
MAX_REDIRECTS = 10
REDIRECTS = frozenset({301, 302, 303, 307, 308})
ALLOW_FLAG = "--url-download-allow-networks"
# Cloud instance metadata services (AWS, GCP, Azure, ...; AWS's IPv6 one).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254"))
T = TypeVar("T")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Retry(Exception):
    """An attempt failed in a way a later one may not (the text says how)."""


class RefusedAddress(Exception):
    """A URL's host is, or resolves only to, addresses the node does not download from."""


def address_kind(address: Address) -> str | None:
    """What makes `address` one the node does not download from ("a loopback address"), or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    kinds = (
        ("is_loopback", "a loopback address"),
        ("is_unspecified", "an unspecified address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    )
    for attribute, kind in kinds:
        if getattr(address, attribute):
            return kind
    if not address.is_global:
        return "a non-public address"
    return None


class AddressPolicy:
    """Which addresses URL downloads may connect to: public ones, and any in `allow_networks`."""

    def __init__(self, allow_networks: Iterable[Network] = ()) -> None:
        self.allow_networks = tuple(allow_networks)

    def refusal(self, host: str) -> str | None:
        """Why the IP address `host` is refused ("refusing to download from …"), or None."""
        address = ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 zone does not change the address
        if any(address in network for network in self.allow_networks):
            return None
        kind = address_kind(address)
        if kind is None:
            return None
        return f"refusing to download from {host}, {kind} (allow its network with {ALLOW_FLAG})"


class GuardedResolver(AbstractResolver):
    """Resolves through `inner` (aiohttp's default resolver) and returns only the addresses `policy`
    allows: the connector connects to nothing else. RefusedAddress, naming the first refused address,
    when none is left."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        allowed = [result for result in found if self.policy.refusal(result["host"]) is None]
        if not allowed and found:
            first = found[0]["host"]
            raise RefusedAddress(f"{host} resolves to {first}: {self.policy.refusal(first)}")
        return allowed

    async def close(self) -> None:
        await self.inner.close()


class UrlSource:
    source = pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        attempts: int = 3,
        backoff: float = 0.5,
        allow_networks: Iterable[Network] = (),
        resolver: AbstractResolver | None = None,
    ) -> None:
        """`allow_networks`: networks downloads may reach although they are not public (e.g.
        127.0.0.0/8 for a local test server); `resolver`: the one names go through before the check
        (default: aiohttp's)."""
        if timeout <= 0 or max_bytes <= 0 or attempts < 1 or backoff < 0:
            raise ValueError("timeout and max_bytes must be > 0, attempts >= 1 and backoff >= 0")
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.attempts = attempts
        self.backoff = backoff
        self.policy = AddressPolicy(allow_networks)
        self._inner_resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    async def is_local(self, volume: pb.StorageSpec) -> bool:
        return False

    async def prepare(self, volume: pb.StorageSpec, scratch: Path) -> Path:
        """The downloaded file, in a folder of its own under `scratch`; StorageError naming the URL."""
        url = volume.url
        problem = checks.url_error(url)
        if problem is not None:
            raise StorageError(problem)
        folder = Path(await _write(url, tempfile.mkdtemp, "", "url-", scratch))
        try:
            async with asyncio.timeout(self.timeout):
                return await self._download_with_retries(url, folder / checks.url_file_name(url))
        except TimeoutError:
            raise StorageError(f"downloading {url} took longer than {self.timeout:g}s") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.policy, self._inner_resolver))
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,  # no proxy: the node connects only to addresses it checked
            )
        return self._session

    async def _download_with_retries(self, url: str, path: Path) -> Path:
        for attempt in range(1, self.attempts + 1):
            try:
                return await self._download(url, path)
            except _Retry as exc:
                if attempt == self.attempts:
                    raise StorageError(f"{exc} (after {attempt} attempts)") from None
            await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def _download(self, url: str, path: Path) -> Path:
        """One attempt: `path`, written; StorageError for a final failure, _Retry for one worth retrying."""
        target = URL(url)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                self._check_literal(target)
                async with self._client().get(target, allow_redirects=False) as response:
                    following = _redirect_target(url, response)
                    if following is None:
                        _check_status(url, response)
                        _check_length(url, response, self.max_bytes)
                        return await self._save(url, response, path)
                target = following
            raise StorageError(f"could not download {url}: more than {MAX_REDIRECTS} redirects")
        except RefusedAddress as exc:
            raise StorageError(f"URL input {url}: {_hop(url, target)}{exc}") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise _Retry(f"could not download {url}: {_describe(exc)}") from exc
        except aiohttp.ClientError as exc:  # invalid URLs
            raise StorageError(f"could not download {url}: {_describe(exc)}") from exc

    def _check_literal(self, target: URL) -> None:
        """Refuses an address written in the URL (names are checked by the resolver)."""
        host = target.raw_host or ""
        try:
            refusal = self.policy.refusal(host)
        except ValueError:  # a name
            return
        if refusal is not None:
            raise RefusedAddress(refusal)

    async def _save(self, url: str, response: aiohttp.ClientResponse, path: Path) -> Path:
        """Streams the body to `path`; removes it on any failure."""
        try:
            size = await self._stream(url, response, path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if size == 0:
            path.unlink(missing_ok=True)
            raise StorageError(f"no bytes written to file {path.name}: {url} returned an empty body")
        return path

    async def _stream(self, url: str, response: aiohttp.ClientResponse, path: Path) -> int:
        file = await _write(url, path.open, "wb")
        size = 0
        try:
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                size += len(chunk)
                if size > self.max_bytes:
                    raise StorageError(_too_large(url, self.max_bytes))
                await _write(url, file.write, chunk)
        finally:
            file.close()
        return size


async def _write(url: str, operation: Callable[..., T], *args: object) -> T:
    """A file operation in a thread; StorageError when the disk refuses it."""
    try:
        return await asyncio.to_thread(operation, *args)
    except OSError as exc:
        raise StorageError(f"cannot write the file downloaded from {url}: {exc}") from exc


def _redirect_target(url: str, response: aiohttp.ClientResponse) -> URL | None:
    """Where a redirect answer sends the download (an absolute http(s) URL), or None for any other."""
    location = response.headers.get("Location")
    if response.status not in REDIRECTS or not location:
        return None
    try:
        target = response.url.join(URL(location))
    except ValueError:
        raise StorageError(f"could not download {url}: bad redirect to {location!r}") from None
    if target.scheme not in ("http", "https") or not target.raw_host:
        raise StorageError(f"could not download {url}: redirect to {location!r} is not an http(s) URL")
    return target


def _hop(url: str, target: URL) -> str:
    """ "redirected to U: " when the refused hop is not the URL as submitted."""
    return "" if str(target) == str(URL(url)) else f"redirected to {target}: "


def _check_status(url: str, response: aiohttp.ClientResponse) -> None:
    if response.status == 200:
        return
    message = f"non-200 response from URL ({url}): {response.status} {response.reason or ''}".rstrip()
    if response.status >= 500 or response.status == 429:
        raise _Retry(message)
    raise StorageError(message)


def _check_length(url: str, response: aiohttp.ClientResponse, max_bytes: int) -> None:
    """Refuses a body announced larger than the limit before reading it."""
    length = response.content_length
    if length is not None and length > max_bytes:
        raise StorageError(_too_large(url, max_bytes, f" ({length} bytes)"))


def _too_large(url: str, max_bytes: int, size: str = "") -> str:
    return f"{url} is larger{size} than the limit of {max_bytes} bytes for a downloaded file"


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
