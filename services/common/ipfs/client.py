"""A client of an IPFS daemon's HTTP RPC API (`/api/v0/...`): kubo's, and js-ipfs's with its differences
tolerated (`Size` a number or a string, an extra `Mode` field, CIDv1 in base58btc unless `cid-base` asks
for base32, a missing CID that hangs unless `timeout=` is passed).

Every request has a client-side deadline and, where the API takes one, the `timeout=` query parameter
set a little below it, so the daemon gives up first and says why. Errors are `IpfsError`s naming the API
call and the daemon's message; running out of time is an `IpfsTimeoutError` naming the CID.

CIDs: `add_folder` adds with `cid-version=1` (which implies raw leaves in kubo and js-ipfs), the
default chunker (size-262144), sha2-256 and balanced layout, no mode or mtime: the root CID equals
`content.unixfs.folder_cid(folder)` (up to js-ipfs' own layout of folders of thousands of entries, which
it does not shard as kubo does). `add_bytes` adds with the defaults (CIDv0, `Qm…`), which equals
`aleph_cid.compute_cid(data)`. CIDv1 are printed in base32 (`b…`), as kubo prints them.

One client belongs to one event loop (it holds an aiohttp session); `close()` it when done.
"""

import asyncio
import base64
import contextlib
import ipaddress
import json
import shutil
import tempfile
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bacalhau_grpc.common.content import archive, safe
from bacalhau_grpc.common.errors import BacalhauError, InvalidArgumentError

DEFAULT_TIMEOUT = 120.0  # metadata calls (id, stat, ls, pin): v0.3 gave stat 2 minutes
DEFAULT_TRANSFER_TIMEOUT = 300.0  # add and get: v0.3 gave a download 5 minutes
DEFAULT_MAX_BYTES = 10 * 1024**3  # the most `get` unpacks
# The daemon's own deadline is this much shorter than ours, so its error (naming the cause) arrives.
_DAEMON_MARGIN = 0.1
_CHUNK = 256 * 1024
_ADDRESS_HELP = "expected an http(s)://host:port URL or a multiaddr such as /ip4/127.0.0.1/tcp/5001"
# UnixFS types in `ls` answers: kubo's numbers (1 directory, 5 HAMT shard) or names.
# One part of an `add` upload: (its name, its content: a file to send, bytes, or None for a folder).
_Entry = tuple[str, Path | bytes | None]
_DIRECTORY_TYPES = {1, 5, "1", "5", "dir", "directory", "hamt-sharded-directory"}


class IpfsError(BacalhauError):
    """An API call failed. `call` is the API path (e.g. "files/stat"); the text says why."""

    def __init__(self, call: str, message: str) -> None:
        super().__init__(f"IPFS {call}: {message}")
        self.call = call
        self.reason = message


class IpfsTimeoutError(IpfsError):
    """The daemon did not answer in time: most often the content is on no reachable node."""


@dataclass(frozen=True, slots=True)
class IpfsStat:
    cid: str
    is_directory: bool
    # A file's size in bytes (0 for a directory, as kubo reports it).
    size: int
    # The size of the whole DAG: file data plus UnixFS/dag-pb overhead (what v0.3 used as the size).
    cumulative_size: int


@dataclass(frozen=True, slots=True)
class IpfsEntry:
    """One node below a folder: its path relative to the folder (with "/"), CID, kind and file size."""

    path: str
    cid: str
    is_directory: bool
    size: int


def parse_api_address(address: str) -> str:
    """The base URL (e.g. http://127.0.0.1:5001) of an API given as a URL or as a multiaddr
    (/ip4/…/tcp/…, /ip6/…, /dns/…, /dns4/…, /dns6/…, optionally ending in /http or /https).
    InvalidArgumentError saying what is expected otherwise."""
    text = address.strip()
    if text.startswith("/"):
        return _parse_multiaddr(text)
    return _parse_url(text)


def _invalid(address: str, why: str = "") -> InvalidArgumentError:
    detail = f" ({why})" if why else ""
    return InvalidArgumentError(f"{address!r} is not an IPFS API address{detail}: {_ADDRESS_HELP}")


def _parse_url(text: str) -> str:
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
    except ValueError as exc:
        raise _invalid(text, str(exc)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid(text)
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise _invalid(text, "a URL with only a scheme, a host and a port")
    return f"{parts.scheme}://{parts.netloc}"


def _parse_multiaddr(text: str) -> str:
    parts = text.strip("/").split("/")
    if len(parts) not in (4, 5) or parts[2] != "tcp":
        raise _invalid(text)
    protocol, host, _, port_text = parts[:4]
    scheme = parts[4] if len(parts) == 5 else "http"
    if scheme not in ("http", "https"):
        raise _invalid(text, f"/{scheme} is not /http or /https")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _invalid(text, f"{port_text!r} is not a port number")
    return f"{scheme}://{_multiaddr_host(text, protocol, host)}:{int(port_text)}"


def _multiaddr_host(text: str, protocol: str, host: str) -> str:
    try:
        if protocol == "ip4":
            return str(ipaddress.IPv4Address(host))
        if protocol == "ip6":
            return f"[{ipaddress.IPv6Address(host)}]"
    except ValueError as exc:
        raise _invalid(text, str(exc)) from None
    if protocol in ("dns", "dns4", "dns6") and host and all(c.isalnum() or c in "-." for c in host):
        return host
    raise _invalid(text, f"/{protocol}/{host} is not an /ip4, /ip6 or /dns address")


def _milliseconds(seconds: float) -> str:
    return f"{max(1, int(seconds * 1000))}ms"


def _as_int(value: Any) -> int:
    """js-ipfs sends sizes as numbers, kubo sometimes as strings."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base32_cid(cid: str) -> str:
    """A CIDv1 as kubo prints it (base32, "b…"): js-ipfs answers some calls in base58btc ("z…"), and
    cannot be asked for base32 there when a CIDv0 may be among the answers. Other CIDs are returned as
    they are."""
    if not cid.startswith("z") or any(c not in _BASE58 for c in cid[1:]):
        return cid
    number = 0
    for c in cid[1:]:
        number = number * 58 + _BASE58.index(c)
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    raw = b"\0" * (len(cid[1:]) - len(cid[1:].lstrip("1"))) + body
    return "b" + base64.b32encode(raw).decode().rstrip("=").lower()


def _is_timeout(message: str) -> bool:
    folded = message.lower()
    return any(word in folded for word in ("timed out", "timeout", "deadline exceeded"))


class IpfsClient:
    def __init__(
        self,
        api: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transfer_timeout: float = DEFAULT_TRANSFER_TIMEOUT,
    ) -> None:
        """`api`: the daemon's API as a URL or a multiaddr (`parse_api_address`). `timeout` bounds the
        metadata calls, `transfer_timeout` the adds and downloads (seconds)."""
        self.url = parse_api_address(api)
        self.timeout = timeout
        self.transfer_timeout = transfer_timeout
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"IpfsClient({self.url!r})"

    async def __aenter__(self) -> "IpfsClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the API ------------------------------------------------------------------------------------

    async def id(self) -> dict[str, Any]:
        """The daemon's identity (`ID`, `AgentVersion`, `Addresses`, …)."""
        return await self._json("id", {})

    async def add_bytes(self, data: bytes, *, cid_version: int = 0, name: str = "data") -> str:
        """Adds and pins one file; its CID (CIDv0 by default, as `ipfs add` gives)."""
        lines = await self._add(self._add_params(cid_version), [(name, data)], f"{len(data)} bytes")
        return _added_cid(lines, name)

    async def add_folder(self, folder: Path, *, cid_version: int = 1) -> str:
        """Adds and pins a folder's files and subfolders (symlinks followed, empty folders kept); the
        folder's CID, which equals `content.unixfs.folder_cid(folder)` for the default CIDv1."""
        folder = Path(folder)
        if not folder.is_dir():
            raise IpfsError("add", f"{folder} is not a folder")
        root = "folder"
        entries = await asyncio.to_thread(_folder_entries, folder, root)
        lines = await self._add(self._add_params(cid_version), entries, str(folder))
        return _added_cid(lines, root)

    async def stat(self, cid: str, *, timeout: float | None = None) -> IpfsStat:
        """What the CID is (a file or a directory) and its sizes. IpfsTimeoutError when it cannot be
        found within the timeout (default: the client's)."""
        answer = await self._json("files/stat", {"arg": f"/ipfs/{cid}"}, timeout=timeout, subject=cid)
        kind = str(answer.get("Type", "")).lower()
        return IpfsStat(
            cid=cid,
            is_directory=kind in _DIRECTORY_TYPES,
            size=_as_int(answer.get("Size")),
            cumulative_size=_as_int(answer.get("CumulativeSize")),
        )

    async def ls(self, cid: str, *, timeout: float | None = None) -> list[IpfsEntry]:
        """Every file and folder below the CID, recursively, parents before children, each folder's
        entries in name order (the root itself is not included; a file has none)."""
        found: list[IpfsEntry] = []
        await self._walk(cid, "", found, timeout)
        return found

    async def pin(self, cid: str, *, timeout: float | None = None) -> None:
        """Pins the CID (recursively), fetching it if the daemon does not hold it yet."""
        await self._json("pin/add", {"arg": cid, "recursive": "true"}, timeout=timeout, subject=cid)

    async def has_locally(self, cid: str, *, timeout: float = 5.0) -> bool:
        """Whether the daemon's repo holds every block of the CID, without fetching any (`refs -r
        --offline`; a block it would have to fetch makes the answer False)."""
        params = {"arg": cid, "recursive": "true", "offline": "true"}
        try:
            lines = await self._ndjson("refs", params, timeout=timeout, subject=cid)
        except IpfsError:
            return False
        return not any(line.get("Err") for line in lines)

    async def get(
        self, cid: str, dest: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float | None = None
    ) -> Path:
        """Downloads the file or folder to `dest` (which must not exist; its parent is made), unpacked
        safely (`archive.unpack`: no links or special files, at most `max_bytes`). The CID is looked up
        first, so a missing one fails with IpfsTimeoutError after `timeout` (default: the client's)."""
        dest = Path(dest)
        if dest.exists():
            raise IpfsError("get", f"{dest} exists already")
        stat = await self.stat(cid, timeout=timeout)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            await self._download(cid, staging, max_bytes=max_bytes)
            await self._unpack(cid, stat, staging, max_bytes=max_bytes)
            (staging / "content" / cid).rename(dest)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        return dest

    # -- requests -----------------------------------------------------------------------------------

    def _add_params(self, cid_version: int) -> dict[str, str]:
        params = {"pin": "true", "progress": "false", "quieter": "false"}
        if cid_version:
            params |= {"cid-version": str(cid_version), "raw-leaves": "true", "cid-base": "base32"}
        return params

    async def _add(self, params: dict[str, str], entries: list[_Entry], what: str) -> list[dict[str, Any]]:
        boundary = uuid.uuid4().hex
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        body = _multipart(entries, boundary)
        return await self._ndjson(
            "add", params, timeout=self.transfer_timeout, subject=what, data=body, headers=headers
        )

    async def _walk(self, cid: str, prefix: str, found: list[IpfsEntry], timeout: float | None) -> None:
        answer = await self._json("ls", {"arg": cid, "resolve-type": "true"}, timeout=timeout, subject=cid)
        objects = answer.get("Objects") or [{}]
        for link in objects[0].get("Links") or []:
            entry = IpfsEntry(
                path=f"{prefix}{link['Name']}",
                cid=base32_cid(str(link["Hash"])),
                is_directory=link.get("Type") in _DIRECTORY_TYPES,
                size=_as_int(link.get("Size")),
            )
            found.append(entry)
            if entry.is_directory:
                await self._walk(entry.cid, f"{entry.path}/", found, timeout)

    async def _download(self, cid: str, staging: Path, *, max_bytes: int) -> None:
        """Streams the CID's tar to staging/content.tar, refusing more than max_bytes (+ tar headers)."""
        limit = max_bytes + max_bytes // 8 + 1024 * 1024
        async with self._request("get", {"arg": cid}, self.transfer_timeout, subject=cid) as response:
            with (staging / "content.tar").open("wb") as out:
                written = 0
                async for chunk in response.content.iter_chunked(_CHUNK):
                    written += len(chunk)
                    if written > limit:
                        raise IpfsError("get", f"{cid} is larger than the {max_bytes} bytes allowed")
                    await asyncio.to_thread(out.write, chunk)

    async def _unpack(self, cid: str, stat: IpfsStat, staging: Path, *, max_bytes: int) -> None:
        content = staging / "content"
        content.mkdir()
        try:
            await asyncio.to_thread(
                archive.unpack, staging / "content.tar", content, max_bytes=max_bytes, max_files=1_000_000
            )
        except archive.ArchiveError as exc:
            if not stat.is_directory or await self._has_files(cid):
                raise IpfsError("get", f"the archive of {cid} cannot be unpacked: {exc}") from None
            # A tree of empty folders: archive.unpack wants a file; make the folders from the listing.
            await self._make_empty_tree(cid, content / cid)
        if not (content / cid).exists():
            raise IpfsError("get", f"the archive of {cid} does not hold it")

    async def _has_files(self, cid: str) -> bool:
        return any(not entry.is_directory for entry in await self.ls(cid))

    async def _make_empty_tree(self, cid: str, root: Path) -> None:
        root.mkdir(exist_ok=True)
        for entry in await self.ls(cid):
            (root / entry.path).mkdir(parents=True, exist_ok=True)

    async def _json(
        self, call: str, params: dict[str, str], *, timeout: float | None = None, subject: str = ""
    ) -> dict[str, Any]:
        async with self._request(call, params, timeout or self.timeout, subject=subject) as response:
            text = await response.text()
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise IpfsError(call, f"unexpected answer {text[:200]!r}")
        return answer

    async def _ndjson(
        self, call: str, params: dict[str, str], *, timeout: float | None = None, subject: str = "", **kwargs
    ) -> list[dict[str, Any]]:
        async with self._request(
            call, params, timeout or self.timeout, subject=subject, **kwargs
        ) as response:
            text = await response.text()
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError:
            raise IpfsError(call, f"not a JSON stream: {text[:200]!r}") from None

    @contextlib.asynccontextmanager
    async def _request(
        self, call: str, params: Mapping[str, str], timeout: float, *, subject: str = "", **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST /api/v0/<call>: the 200 response, within `timeout` seconds (reading it included); the
        daemon is asked to give up a little earlier. Anything else is an IpfsError naming `subject` (the
        CID, or what is added); running out of time is an IpfsTimeoutError."""
        query = {**params, "timeout": _milliseconds(max(timeout - _DAEMON_MARGIN, timeout * 0.9))}
        url = f"{self.url}/api/v0/{call}"
        try:
            async with self._client_session().post(
                url, params=query, timeout=aiohttp.ClientTimeout(total=timeout), **kwargs
            ) as response:
                if response.status != 200:
                    message = _error_message(await response.text())
                    raise _error(call, message, subject, timeout, timed_out=_is_timeout(message))
                yield response
        except TimeoutError:
            raise _error(call, f"no answer within {timeout:g}s", subject, timeout, timed_out=True) from None
        except aiohttp.ClientError as exc:
            message = f"the daemon at {self.url} cannot be reached: {exc}"
            raise _error(call, message, subject, timeout) from None

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session


def _error(call: str, message: str, subject: str, timeout: float, *, timed_out: bool = False) -> IpfsError:
    if timed_out:
        waiting = f"waiting for {subject}" if subject else "waiting"
        return IpfsTimeoutError(
            call,
            f"timed out after {timeout:g}s {waiting} ({message}): is it on a node the daemon can reach?",
        )
    return IpfsError(call, f"{message} ({subject})" if subject else message)


def _error_message(text: str) -> str:
    """The daemon's error: the `Message` of kubo's/js-ipfs's JSON error, else the text itself."""
    try:
        answer = json.loads(text)
    except ValueError:
        return text.strip()[:500] or "an empty error answer"
    if isinstance(answer, dict) and answer.get("Message"):
        return str(answer["Message"])
    return text.strip()[:500]


def _added_cid(lines: list[dict[str, Any]], name: str) -> str:
    for line in reversed(lines):
        if line.get("Name") == name and line.get("Hash"):
            return base32_cid(str(line["Hash"]))
    raise IpfsError("add", f"the answer names no CID for {name!r}: {lines[-3:]!r}")


# -- multipart bodies -------------------------------------------------------------------------------


def _folder_entries(folder: Path, root: str) -> list[_Entry]:
    """The folder and everything in it, parents first, siblings in byte order of their names (as
    dag-pb sorts links). Only folders and regular files: links and special files are left out, never
    followed (`safe.walk`), so the CID is `unixfs.folder_cid`'s."""
    entries: list[_Entry] = [(root, None)]
    entries.extend(
        (f"{root}/{relative}", None if is_dir else path) for relative, path, is_dir in safe.walk(folder)
    )
    return entries


def _part_header(boundary: str, name: str, *, directory: bool) -> bytes:
    """A part's delimiter and headers. The file name is percent-encoded, as kubo and js-ipfs expect."""
    content_type = "application/x-directory" if directory else "application/octet-stream"
    quoted = urllib.parse.quote(name, safe="/")
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


async def _multipart(entries: list[_Entry], boundary: str) -> AsyncIterator[bytes]:
    """The multipart/form-data body of `add`, streamed: files are read in chunks as it is sent."""
    for name, content in entries:
        yield _part_header(boundary, name, directory=content is None)
        if isinstance(content, bytes):
            yield content
        elif content is not None:
            with safe.open_file(content) as f:
                while chunk := await asyncio.to_thread(f.read, _CHUNK):
                    yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()
