"""Signed submissions: the client's Ed25519 key pair, and the requester's check of a signed SubmitJob.

The client keeps one key pair in `client_key.pem` (PKCS8 PEM, mode 0600) under `$BACALHAU_DIR`, or
`~/.bacalhau-grpc` when that is not set, created on first use. Its ClientID is the lower-case hex SHA-256
of the raw 32-byte public key. A submission carries the serialized JobCreatePayload, the signature over
exactly those bytes and the public key; the requester checks all three and parses the payload from the
bytes it verified (nothing is re-encoded on either side).
"""

import contextlib
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import DecodeError

from bacalhau.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.common.errors import BacalhauError, UnauthenticatedError
from bacalhau_grpc.common.model import pb

DIR_ENV = "BACALHAU_DIR"
KEY_FILE_NAME = "client_key.pem"
PUBLIC_KEY_SIZE = 32


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

    def signed_submit_request(self, job: pb.Job, context: bytes = b"") -> rpb.SubmitJobRequest:
        """A SubmitJobRequest for `job` by this client: the payload serialized once, signed as sent."""
        owned = pb.Job()
        owned.CopyFrom(job)
        owned.client_id = self.client_id
        payload = pb.JobCreatePayload(client_id=self.client_id, job=owned, context=context)
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
