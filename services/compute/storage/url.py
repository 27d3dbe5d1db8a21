"""URLDownload volumes (v0.3 §3.6): a file fetched over http(s) for one run.

`prepare` GETs the URL (redirects followed) into a fresh folder under the execution's scratch folder and
returns the file, named `checks.url_file_name(URL)`: the last path segment of the URL as submitted,
percent-decoded, even when a redirect ends at another name (a URL naming no file is refused at
submission). The job sees it at `<Path>/<name>` (`checks.mount_path`), which is also its sharding
atom's path, so a shard's glob selects what is mounted. The body is streamed to disk in chunks.
Connection errors, bodies cut short and answers 5xx or 429 are retried with exponential back-off; any
other answer but 200 fails at once ("non-200 response from URL (%s): %s"), as does an empty body ("no
bytes written to file %s") or one larger than `max_bytes`. The whole download, retries included, must
end within `timeout` seconds. A URL is never local: every run downloads it again.
"""

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import aiohttp

from bacalhau_grpc.common.model import checks, pb
from bacalhau_grpc.compute.storage.base import StorageError

CHUNK_BYTES = 1 << 20
DEFAULT_TIMEOUT = 300.0
DEFAULT_MAX_BYTES = 10 * 1024**3
USER_AGENT = "bacalhau-grpc (URLDownload)"
T = TypeVar("T")


class _Retry(Exception):
    """An attempt failed in a way a later one may not (the text says how)."""


class UrlSource:
    source = pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        attempts: int = 3,
        backoff: float = 0.5,
    ) -> None:
        if timeout <= 0 or max_bytes <= 0 or attempts < 1 or backoff < 0:
            raise ValueError("timeout and max_bytes must be > 0, attempts >= 1 and backoff >= 0")
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.attempts = attempts
        self.backoff = backoff
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
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None), headers={"User-Agent": USER_AGENT}
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
        try:
            async with self._client().get(url, allow_redirects=True) as response:
                _check_status(url, response)
                _check_length(url, response, self.max_bytes)
                return await self._save(url, response, path)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise _Retry(f"could not download {url}: {_describe(exc)}") from exc
        except aiohttp.ClientError as exc:  # bad redirects, too many of them, invalid URLs
            raise StorageError(f"could not download {url}: {_describe(exc)}") from exc

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
