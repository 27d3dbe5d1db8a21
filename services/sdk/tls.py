"""TLS between a client and a requester: the cluster CA that verifies the requester, optionally an operator's
client certificate (for the requester's node port, mutual TLS), and what a failed connection means.

    tls = client_tls(ca_cert="tls/ca.pem")                            # the client API port
    tls = client_tls(ca_cert="tls/ca.pem", client_cert="tls/client-operator.pem",
                     client_key="tls/client-operator-key.pem")         # the node port, as an operator
    tls = client_tls()                  # from BACALHAU_TLS_CA_CERT (+ _CLIENT_CERT, _CLIENT_KEY), or None

A cluster has its own CA (`bacalhau-grpc certs ca`; a devstack makes one in `<data-dir>/tls/`), so there is
no default: TLS always names the CA certificate. gRPC checks that the requester's certificate names the
host dialled: connect to a DNS name or IP address it was issued for (`localhost` / `127.0.0.1` by default).

A connection that fails because the two sides disagree about TLS fails at once (no retry would help) with
an `UnavailableError` saying what is likely wrong (`connection_problem`): a TLS client at a plaintext port,
a plaintext client at a TLS port, a requester whose certificate another CA signed, or one issued for
another host name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bacalhau_grpc.common import tls as common_tls
from bacalhau_grpc.common.errors import BacalhauError, InvalidArgumentError, UnavailableError

ENV_CA_CERT = "BACALHAU_TLS_CA_CERT"
ENV_CLIENT_CERT = "BACALHAU_TLS_CLIENT_CERT"
ENV_CLIENT_KEY = "BACALHAU_TLS_CLIENT_KEY"
_PEM_START = b"-----BEGIN "

# A path to a PEM file, or the PEM itself (bytes, or text that starts with "-----BEGIN ").
PemSource = str | os.PathLike[str] | bytes


@dataclass(frozen=True)
class ClientTls:
    """A client's TLS: the CA certificate that verifies the requester (PEM) and, for an operator, a client
    certificate and its key. `ca_source` says where the CA came from (a path, an environment variable)."""

    ca: bytes
    cert: bytes | None = None
    key: bytes | None = field(default=None, repr=False)  # never in a log line
    ca_source: str = "the CA certificate"

    def credentials(self) -> grpc.ChannelCredentials:
        return common_tls.channel_credentials(self.ca, self.cert, self.key)

    @property
    def has_client_cert(self) -> bool:
        return self.cert is not None


class TransportMismatchError(UnavailableError):
    """The client and the requester disagree about TLS (or its certificates): retrying will not help."""


def client_tls(
    tls: bool | None = None,
    ca_cert: PemSource | None = None,
    client_cert: PemSource | None = None,
    client_key: PemSource | None = None,
    environ: Mapping[str, str] = os.environ,
) -> ClientTls | None:
    """The TLS a client uses, or None for plaintext.

    `tls`: True for TLS, False for plaintext, None to decide from the rest: TLS when a CA certificate is
    given. `ca_cert`, `client_cert`, `client_key` (paths to PEM files, or PEM) each default to its
    environment variable: BACALHAU_TLS_CA_CERT (so setting it means TLS), BACALHAU_TLS_CLIENT_CERT,
    BACALHAU_TLS_CLIENT_KEY. InvalidArgumentError, naming the file, when one cannot be read or is not what
    it should be, when TLS has no CA certificate, or a client certificate comes without its key (or the
    reverse)."""
    if tls is False:
        if ca_cert is not None or client_cert is not None or client_key is not None:
            raise InvalidArgumentError(
                "TLS certificates were given for a plaintext connection: drop them or use TLS", field="tls"
            )
        return None
    ca_name, cert_name, key_name = "the CA certificate", "the client certificate", "the client key"
    if ca_cert is None and (ca_cert := _env(environ, ENV_CA_CERT)) is not None:
        ca_name = ENV_CA_CERT
    if client_cert is None and (client_cert := _env(environ, ENV_CLIENT_CERT)) is not None:
        cert_name = ENV_CLIENT_CERT
    if client_key is None and (client_key := _env(environ, ENV_CLIENT_KEY)) is not None:
        key_name = ENV_CLIENT_KEY
    if ca_cert is None:
        if tls or client_cert is not None or client_key is not None:
            raise InvalidArgumentError(
                "TLS needs the cluster's CA certificate: give --ca-cert FILE or BACALHAU_TLS_CA_CERT (a "
                "Bacalhau-gRPC cluster has its own CA: `bacalhau-grpc devstack` prints its path, "
                "`bacalhau-grpc certs ca` makes one)",
                field="ca_cert",
            )
        return None
    if client_cert is not None and client_key is None:
        raise InvalidArgumentError(
            f"{cert_name} needs its key: give --client-key FILE (or {ENV_CLIENT_KEY})", field="client_key"
        )
    if client_key is not None and client_cert is None:
        raise InvalidArgumentError(
            f"{key_name} needs its certificate: give --client-cert FILE (or {ENV_CLIENT_CERT})",
            field="client_cert",
        )
    ca_pem, ca_where = _load(ca_cert, ca_name)
    _certificate(ca_pem, ca_where)
    if client_cert is None or client_key is None:
        return ClientTls(ca=ca_pem, ca_source=ca_where)
    cert_pem, cert_where = _load(client_cert, cert_name)
    key_pem, key_where = _load(client_key, key_name)
    certificate = _certificate(cert_pem, cert_where)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise InvalidArgumentError(f"{key_where} is not an unencrypted PEM private key") from None
    if _public_der(key.public_key()) != _public_der(certificate.public_key()):
        raise InvalidArgumentError(f"{key_where} is not the key of {cert_where}")
    return ClientTls(ca=ca_pem, cert=cert_pem, key=key_pem, ca_source=ca_where)


def connection_problem(
    err: BacalhauError, address: str, tls: ClientTls | None, what: str = "the requester"
) -> UnavailableError:
    """What an UNAVAILABLE call to `address` means for the user: a TransportMismatchError naming the likely
    cause when the two sides disagree about TLS, else "cannot reach <what> at <address>: <details>"."""
    details = str(err)
    lowered = details.lower()
    if tls is not None:
        if "certificate_verify_failed" in lowered:
            reason = lowered.split("certificate_verify_failed:", 1)[-1].split(":")[0].strip()
            if "expired" in reason or "not yet valid" in reason:
                return TransportMismatchError(
                    f"the certificate of {what} at {address} is not valid now ({reason}): it needs a new "
                    "one (`bacalhau-grpc certs issue`), or this machine's clock is off"
                )
            return TransportMismatchError(
                f"{what} at {address} presented a certificate that {tls.ca_source} does not verify "
                f"({reason or 'verification failed'}): is it the CA of that cluster?"
            )
        if "wrong_version_number" in lowered or ("handshake" in lowered and "protocol" in lowered):
            return TransportMismatchError(
                f"{what} at {address} did not complete a TLS handshake: is it serving plaintext? "
                f"(drop --tls / --ca-cert / {ENV_CA_CERT})"
            )
        if "hostname verification" in lowered or "peer name" in lowered:
            host = address.rpartition(":")[0] or address
            return TransportMismatchError(
                f"the certificate of {what} at {address} does not name the host {host}: connect to a "
                "DNS name or IP address it was issued for (`certs issue --dns/--ip`; localhost and "
                "127.0.0.1 by default)"
            )
        if "socket closed" in lowered or "connection reset" in lowered:
            if tls.has_client_cert:
                cause = "did it issue your client certificate (signed by the same CA, role client)?"
            else:
                cause = (
                    "is this the requester's node port, which needs an operator's client certificate "
                    "(--client-cert and --client-key)? The client API port needs only --ca-cert"
                )
            return TransportMismatchError(f"{what} at {address} refused the TLS connection: {cause}")
    elif "socket closed" in lowered or "connection reset" in lowered:
        return TransportMismatchError(
            f"{what} at {address} closed the connection: it may be serving TLS: give --ca-cert or "
            f"{ENV_CA_CERT} (the cluster's CA certificate)"
        )
    return UnavailableError(f"cannot reach {what} at {address}: {details}")


def _certificate(pem: bytes, where: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise InvalidArgumentError(f"{where} is not a PEM X.509 certificate") from None


def _public_der(public_key: Any) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "")
    return value or None


def _is_pem(source: Any) -> bool:
    if isinstance(source, bytes | bytearray):
        return True
    return isinstance(source, str) and source.lstrip().startswith(_PEM_START.decode())


def _load(source: PemSource, what: str) -> tuple[bytes, str]:
    """The PEM bytes of `source` (PEM, or a file), and a name for it in messages."""
    if isinstance(source, bytes | bytearray):
        data, where = bytes(source), what
    elif _is_pem(source):
        data, where = str(source).encode(), what
    else:
        path = Path(source).expanduser()
        where = f"{what} {path}" if what.startswith("the ") else f"{what} ({path})"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InvalidArgumentError(f"{where} does not exist") from None
        except OSError as err:
            raise InvalidArgumentError(f"cannot read {where}: {err.strerror or err}") from None
    if _PEM_START not in data:
        raise InvalidArgumentError(f"{where} is not PEM (no '-----BEGIN' line)")
    return data, where
