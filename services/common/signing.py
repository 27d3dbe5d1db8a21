"""Client identity: the client's Ed25519 key pair, signed submissions and signed calls, and their checks.

The client keeps one key pair in `client_key.pem` (PKCS8 PEM, mode 0600) under `$BACALHAU_DIR`, or
`~/.bacalhau-grpc` when that is not set, created on first use. Its ClientID is the lower-case hex SHA-256
of the raw 32-byte public key.

Signed submissions: a SubmitJob carries the serialized JobCreatePayload, the signature over exactly those
bytes and the public key; the requester checks all three and parses the payload from the bytes it verified
(nothing is re-encoded on either side). The payload's signer owns the job.

Signed calls: any call may carry the client's identity as request metadata (`ClientKey.call_metadata`,
checked by `verify_call`):

    bacalhau-client-key-bin   the raw 32-byte Ed25519 public key
    bacalhau-timestamp        when the call was signed, unix milliseconds as decimal text
    bacalhau-signature-bin    Ed25519 over  b"bacalhau-grpc call v1\n" + full method name
                              ("/bacalhau.requester.v1.RequesterService/CancelJob") + b"\n"
                              + the timestamp text + b"\n" + SHA-256(request bytes)

The request bytes are the request message's deterministic serialization
(`request.SerializeToString(deterministic=True)`): the client signs that of the message it sends, the
server computes it again from the message it parsed. Deterministic serialization of the same message
(unknown fields included, kept by the parser and written after the known ones) gives the same bytes on
both sides, whatever encoding travelled on the wire; a client built from another version of the .proto
whose request has fields the server does not know signs bytes the server can only reproduce when those
fields' numbers come after every field the server knows (as new fields' numbers do).

The server accepts a signed call whose timestamp is within `MAX_CLOCK_SKEW` (300 s) of its clock, either
way, and refuses the same signed call a second time within that window (`ReplayGuard`). Nothing here
imports gRPC: the server's hook (`common.caller`) hands the metadata over as plain pairs.
"""

import contextlib
import hashlib
import heapq
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import DecodeError

from bacalhau_grpc.common.errors import BacalhauError, UnauthenticatedError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb

DIR_ENV = "BACALHAU_DIR"
KEY_FILE_NAME = "client_key.pem"
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

# Signed calls: the metadata keys (binary values' keys end in -bin, as gRPC requires), what the signature
# covers, and how far a call's timestamp may be from the server's clock, either way.
CLIENT_KEY_METADATA = "bacalhau-client-key-bin"
TIMESTAMP_METADATA = "bacalhau-timestamp"
SIGNATURE_METADATA = "bacalhau-signature-bin"
CALL_METADATA_KEYS = (CLIENT_KEY_METADATA, TIMESTAMP_METADATA, SIGNATURE_METADATA)
CALL_SIGNATURE_CONTEXT = b"bacalhau-grpc call v1\n"
MAX_CLOCK_SKEW = 300.0
# The longest timestamp text accepted (unix milliseconds have 13 digits until the year 2286).
_MAX_TIMESTAMP_DIGITS = 16


class KeyFileError(BacalhauError):
    """The client's key file exists but cannot be read or is not an Ed25519 private key."""


def default_directory(environ=os.environ) -> Path:
    """$BACALHAU_DIR when set, else ~/.bacalhau-grpc."""
    given = environ.get(DIR_ENV, "").strip()
    return Path(given).expanduser() if given else Path.home() / ".bacalhau-grpc"


def client_id_of(public_key_bytes: bytes) -> str:
    """The ClientID of a raw public key: its lower-case hex SHA-256."""
    return hashlib.sha256(public_key_bytes).hexdigest()


class ClientKey:
    """A client's Ed25519 key pair and the ClientID derived from it."""

    def __init__(self, private_key: Ed25519PrivateKey, path: Path | None = None) -> None:
        self._private_key = private_key
        self.path = path
        self.public_key_bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.client_id = client_id_of(self.public_key_bytes)
        # Signed calls get strictly increasing timestamps (see `call_metadata`).
        self._last_call_ms = 0
        self._call_lock = threading.Lock()

    @classmethod
    def generate(cls) -> "ClientKey":
        """A new key kept in memory only (tests, tools)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, directory: Path | None = None) -> "ClientKey":
        """The key in `directory` (default: $BACALHAU_DIR or ~/.bacalhau-grpc), created on first use.

        A key file that cannot be read or parsed raises KeyFileError naming it; it is never replaced.
        """
        directory = Path(directory).expanduser() if directory is not None else default_directory()
        path = directory / KEY_FILE_NAME
        if path.exists():
            return cls._load(path)
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise KeyFileError(f"cannot create the key directory {directory}: {err.strerror or err}") from err
        private_key = Ed25519PrivateKey.generate()
        pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # Write a temporary file, then link it into place: the key file appears whole or not at all, and
        # when another process created one meanwhile, that one wins and is loaded.
        temporary = directory / f".{KEY_FILE_NAME}.{os.getpid()}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                return cls._load(path)
        except OSError as err:
            raise KeyFileError(f"cannot write the key file {path}: {err.strerror or err}") from err
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()
        return cls(private_key, path)

    @classmethod
    def _load(cls, path: Path) -> "ClientKey":
        try:
            data = path.read_bytes()
        except OSError as err:
            raise KeyFileError(f"cannot read the key file {path}: {err.strerror or err}") from err
        try:
            private_key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as err:
            raise KeyFileError(
                f"the key file {path} is not a readable PEM private key ({err}); "
                "move it away to create a new key (a new key is a new ClientID)"
            ) from err
        if not isinstance(private_key, Ed25519PrivateKey):
            raise KeyFileError(f"the key file {path} does not hold an Ed25519 private key")
        return cls(private_key, path)

    def sign(self, data: bytes) -> bytes:
        return self._private_key.sign(data)

    def call_metadata(
        self, method: str, request: Any, *, now: float | None = None
    ) -> list[tuple[str, bytes | str]]:
        """The metadata that signs one call of `method` (the full name, "/package.Service/Method") with
        `request` (a protobuf message, or its deterministic serialization as bytes) as this client.

        Each call needs its own: the server refuses a signed call it has seen before. Timestamps are
        strictly increasing per key (the clock in milliseconds, or one past the last one used), so two
        equal calls made in the same millisecond are still two calls. `now` (unix seconds) signs as of
        another time, as is, for tests.
        """
        if now is None:
            millis = int(time.time() * 1000)
            with self._call_lock:
                millis = max(millis, self._last_call_ms + 1)
                self._last_call_ms = millis
        else:
            millis = int(now * 1000)
        timestamp = str(millis)
        data = request if isinstance(request, bytes) else request_bytes(request)
        signature = self.sign(call_message(method, timestamp, data))
        return [
            (CLIENT_KEY_METADATA, self.public_key_bytes),
            (TIMESTAMP_METADATA, timestamp),
            (SIGNATURE_METADATA, signature),
        ]

    def signed_submit_request(
        self, job: pb.Job, context: bytes = b"", submission_id: str = ""
    ) -> rpb.SubmitJobRequest:
        """A SubmitJobRequest for `job` by this client: the payload serialized once, signed as sent.
        `submission_id`: the payload's client-chosen SubmissionID (a retry with the same one gets the
        same job back; "" for none)."""
        owned = pb.Job()
        owned.CopyFrom(job)
        owned.client_id = self.client_id
        payload = pb.JobCreatePayload(
            client_id=self.client_id, job=owned, context=context, submission_id=submission_id
        )
        data = payload.SerializeToString()
        return rpb.SubmitJobRequest(
            signed_payload=data, signature=self.sign(data), client_public_key=self.public_key_bytes
        )


def verify_submission(request: rpb.SubmitJobRequest) -> pb.JobCreatePayload:
    """The payload of a signed submission, once its key, signature and ClientID check out.

    Raises UnauthenticatedError otherwise. The payload is parsed from the verified bytes, and its job's
    client_id is set to the verified ClientID (the job's owner).
    """
    if not request.signature:
        raise UnauthenticatedError("the submission carries no signature")
    if not request.client_public_key:
        raise UnauthenticatedError("the submission carries no client public key")
    if not request.signed_payload:
        raise UnauthenticatedError("the submission carries no signed payload")
    key_bytes = request.client_public_key
    if len(key_bytes) != PUBLIC_KEY_SIZE:
        raise UnauthenticatedError(
            f"the client public key must be {PUBLIC_KEY_SIZE} raw Ed25519 bytes, got {len(key_bytes)}"
        )
    try:
        public_key = Ed25519PublicKey.from_public_bytes(key_bytes)
        public_key.verify(request.signature, request.signed_payload)
    except (InvalidSignature, ValueError):
        raise UnauthenticatedError(
            "the signature does not match the signed payload and the client public key"
        ) from None
    payload = pb.JobCreatePayload()
    try:
        payload.ParseFromString(request.signed_payload)
    except DecodeError:
        raise UnauthenticatedError("the signed payload is not a serialized JobCreatePayload") from None
    client_id = client_id_of(key_bytes)
    if payload.client_id != client_id:
        raise UnauthenticatedError(
            f"the payload's ClientID {payload.client_id!r} is not the SHA-256 of the client public key "
            f"({client_id})"
        )
    if payload.HasField("job"):
        payload.job.client_id = client_id
    return payload


# ------------------------------------------------------------------------------------------ signed calls


def request_bytes(request: Any) -> bytes:
    """The bytes a call's signature covers: the request message's deterministic serialization."""
    return request.SerializeToString(deterministic=True)


def call_message(method: str, timestamp: str, data: bytes) -> bytes:
    """What a signed call's signature is over (see the module's docstring)."""
    return b"".join(
        (
            CALL_SIGNATURE_CONTEXT,
            method.encode(),
            b"\n",
            timestamp.encode(),
            b"\n",
            hashlib.sha256(data).digest(),
        )
    )


def call_credentials(metadata: Iterable[tuple[str, Any]] | None) -> dict[str, Any]:
    """The signed-call entries of a call's metadata (key → value; empty: an anonymous call).

    A key given twice is refused (UnauthenticatedError): which one would count is not the caller's to
    leave open."""
    found: dict[str, Any] = {}
    for key, value in metadata or ():
        if key.startswith("bacalhau-") and key in CALL_METADATA_KEYS:
            if key in found:
                raise UnauthenticatedError(f"the call's metadata gives {key} more than once")
            found[key] = value
    return found


def verify_call(
    method: str,
    data: bytes,
    metadata: Mapping[str, Any],
    now: float,
    *,
    replay_guard: "ReplayGuard | None" = None,
    max_skew: float = MAX_CLOCK_SKEW,
) -> str:
    """The ClientID of the client that signed this call of `method` with request bytes `data`
    (`request_bytes`), from the call's metadata (`call_credentials`), at `now` (unix seconds).

    Raises UnauthenticatedError saying why: a part missing, a malformed key or timestamp, a timestamp more
    than `max_skew` seconds from `now` (saying by how much), a signature that is not the key's over this
    method, timestamp and request, or (with `replay_guard`) a signed call already received.
    """
    missing = [key for key in CALL_METADATA_KEYS if key not in metadata]
    if missing:
        raise UnauthenticatedError(
            f"the call's signature metadata is incomplete: {', '.join(missing)} missing "
            f"(a signed call sends {', '.join(CALL_METADATA_KEYS)} together)"
        )
    key_bytes = metadata[CLIENT_KEY_METADATA]
    if not isinstance(key_bytes, bytes) or len(key_bytes) != PUBLIC_KEY_SIZE:
        size = len(key_bytes) if isinstance(key_bytes, bytes | str) else 0
        raise UnauthenticatedError(
            f"{CLIENT_KEY_METADATA} must be the {PUBLIC_KEY_SIZE} raw bytes of an Ed25519 public key, "
            f"got {size} {'bytes' if isinstance(key_bytes, bytes) else 'characters'}"
        )
    timestamp = metadata[TIMESTAMP_METADATA]
    if isinstance(timestamp, bytes):
        timestamp = timestamp.decode("ascii", "replace")
    if not (
        isinstance(timestamp, str)
        and 0 < len(timestamp) <= _MAX_TIMESTAMP_DIGITS
        and timestamp.isascii()
        and timestamp.isdigit()
    ):
        raise UnauthenticatedError(
            f"{TIMESTAMP_METADATA} must be unix milliseconds as decimal digits, got {str(timestamp)[:40]!r}"
        )
    signed_at = int(timestamp) / 1000
    offset = signed_at - now
    if not abs(offset) <= max_skew:
        direction = "ahead of" if offset > 0 else "behind"
        raise UnauthenticatedError(
            f"the call's timestamp is {abs(offset):.1f} s {direction} the server's clock; at most "
            f"{max_skew:g} s either way is accepted: check the client's clock"
        )
    signature = metadata[SIGNATURE_METADATA]
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        raise UnauthenticatedError(f"{SIGNATURE_METADATA} must be a {SIGNATURE_SIZE}-byte Ed25519 signature")
    message = call_message(method, timestamp, data)
    try:
        _public_key(key_bytes).verify(signature, message)
    except (InvalidSignature, ValueError):
        raise UnauthenticatedError(
            f"the call's signature does not match its method ({method}), timestamp and request bytes for "
            "the given key"
        ) from None
    if replay_guard is not None:
        replay_guard.check(hashlib.sha256(key_bytes + message).digest(), signed_at, now)
    return client_id_of(key_bytes)


# Parsed public keys of recent callers (parsing costs a few microseconds; a client makes many calls).
_PUBLIC_KEYS: dict[bytes, Ed25519PublicKey] = {}
_PUBLIC_KEYS_MAX = 1024


def _public_key(key_bytes: bytes) -> Ed25519PublicKey:
    key = _PUBLIC_KEYS.get(key_bytes)
    if key is None:
        key = Ed25519PublicKey.from_public_bytes(key_bytes)  # ValueError when not a valid key
        if len(_PUBLIC_KEYS) >= _PUBLIC_KEYS_MAX:
            _PUBLIC_KEYS.pop(next(iter(_PUBLIC_KEYS)))
        _PUBLIC_KEYS[key_bytes] = key
    return key


class ReplayGuard:
    """The signed calls received within the skew window, so that none is accepted twice.

    `check(entry, signed_at, now)` refuses (UnauthenticatedError "replayed signature") an entry seen
    before; an entry is forgotten once its call's timestamp is more than `window` seconds old, as the
    call would be refused as too old by then anyway. Only calls whose signature checked out are entered,
    so strangers cannot fill it.

    Bounded: at most `max_entries` (100,000 by default; about 20 MB). A flood past the bound drops the
    entries whose timestamps are oldest and narrows the window instead of forgetting: from then on a call
    signed at or before the newest timestamp dropped (but never later than the server's clock then) is
    refused ("older than the replay window") until the window has moved past it. So no replay of a call
    dated up to now is accepted, and a flood of calls dated in the future cannot lock out clients signing
    at the present time; under a flood an honest client whose call is late (a slow clock, a long trip)
    may be refused and has to sign again.

    One event loop's use: not thread-safe.
    """

    def __init__(self, max_entries: int = 100_000, window: float = MAX_CLOCK_SKEW) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.window = window
        self._seen: dict[bytes, float] = {}
        self._by_time: list[tuple[float, bytes]] = []  # a heap of (signed_at, entry)
        # Calls signed at or before this were dropped early (the bound): refused.
        self.floor = -math.inf

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, entry: bytes, signed_at: float, now: float) -> None:
        """Remembers `entry` (a signed call, signed at `signed_at`); UnauthenticatedError when it was
        seen before, or when it is older than what a full guard still remembers."""
        by_time, seen = self._by_time, self._seen
        horizon = now - self.window
        while by_time and by_time[0][0] < horizon:
            del seen[heapq.heappop(by_time)[1]]
        if entry in seen:
            raise UnauthenticatedError(
                "replayed signature: this signed call was received before; sign every call anew"
            )
        if signed_at <= self.floor:
            raise UnauthenticatedError(
                f"the call was signed {now - signed_at:.1f} s ago, older than the replay window, which is "
                f"{max(now - self.floor, 0):.1f} s now (the server is receiving more signed calls than it "
                "can remember for longer): sign it again"
            )
        seen[entry] = signed_at
        heapq.heappush(by_time, (signed_at, entry))
        if len(seen) > self.max_entries:
            dropped_at, dropped = heapq.heappop(by_time)
            del seen[dropped]
            # Never past the server's clock: calls dated in the future (a flood of them) cannot push the
            # floor ahead and lock out everyone signing at the present time. Such a dropped call can then
            # be replayed once, by whoever holds it: its own signer's call, which they could make anew.
            self.floor = max(self.floor, min(dropped_at, now))
