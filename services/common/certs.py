"""The cluster's certificates: one CA, a certificate per node (and per operator), and the identity in one.

Every service of a cluster trusts one CA (`create_ca`: `ca.pem`, and `ca-key.pem`, which signs every
certificate and stays with the operator). A certificate (`issue`) names its holder's **identity** — a
role and a node ID — as one URI subject alternative name in SPIFFE ID form,
`spiffe://bacalhau-grpc/<role>/<node-id>`, beside the DNS names and IP addresses it serves on (by
default `localhost` and `127.0.0.1`, so a devstack on loopback works). The roles are the three services
and `client`, an operator's certificate for grpcurl (`-cacert -cert -key`); its ClientID is
`client_id_of_certificate` (the SHA-256 of its public key).

gRPC verifies a peer's certificate chain against the CA during the TLS handshake; `identity_of` only
reads the identity out of a certificate that was verified (a server interceptor gives it
`context.auth_context()["x509_pem_cert"][0]`, see `common.tls.peer_identity`).

Standard parts only: X.509 v3 from `cryptography`, ECDSA P-256 keys (PKCS8 PEM, unencrypted, mode 0600,
never world-readable even briefly), SHA-256 signatures. This module does not import gRPC.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bacalhau_grpc.common.errors import InvalidArgumentError, UnauthenticatedError
from bacalhau_grpc.common.node_ids import check_node_id, node_id_problem

TRUST_DOMAIN = "bacalhau-grpc"
SPIFFE_PREFIX = f"spiffe://{TRUST_DOMAIN}/"
ROLES = ("requester", "compute", "verifier", "client")
NODE_ROLES = ("requester", "compute", "verifier")

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
DEFAULT_CA_DAYS = 3650
DEFAULT_DAYS = 365
DEFAULT_CA_NAME = "bacalhau-grpc cluster CA"
# The names a node certificate serves on when none are given: a devstack on loopback.
DEFAULT_DNS = ("localhost",)
DEFAULT_IPS = ("127.0.0.1",)
# Certificates are valid from a few minutes ago, so a peer whose clock is a little behind accepts them.
CLOCK_SKEW = dt.timedelta(minutes=5)

CN_MAX = 64  # RFC 5280's ub-common-name
_DNS_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DNS_NAME = re.compile(rf"(?:\*\.)?{_DNS_LABEL}(?:\.{_DNS_LABEL})*\.?")


@dataclass(frozen=True)
class Identity:
    """Who holds a certificate: a role (one of ROLES) and a node ID (for `client`, the operator's name)."""

    role: str
    node_id: str

    @property
    def uri(self) -> str:
        """The identity as its certificate names it: `spiffe://bacalhau-grpc/<role>/<node-id>`."""
        return f"{SPIFFE_PREFIX}{self.role}/{self.node_id}"

    def __str__(self) -> str:
        return self.uri


@dataclass(frozen=True)
class CaFiles:
    """Where a CA was written: its certificate (0644) and its key (0600)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class TlsPem:
    """The PEM bytes of a TLS configuration: a certificate and its key (both None for a peer that only
    verifies the other side) and the CA certificate that verifies peers."""

    cert: bytes | None
    key: bytes | None = field(repr=False)  # never in a log line
    ca: bytes


@dataclass(frozen=True)
class TlsFiles:
    """Where a node's (or client's) TLS files are: its certificate and key, and the cluster's CA
    certificate. `cert` and `key` are None for a client that only verifies servers."""

    cert: Path | None
    key: Path | None
    ca: Path

    def load(self) -> TlsPem:
        """The files' PEM bytes, each checked: readable, what it should be, the key matching the
        certificate. Raises InvalidArgumentError naming the file and what is wrong."""
        if (self.cert is None) != (self.key is None):
            raise InvalidArgumentError(
                "a TLS certificate needs its key and a key its certificate: give both or neither"
            )
        ca_pem = _read(Path(self.ca), "CA certificate")
        _parse_cert(ca_pem, Path(self.ca), "CA certificate")
        if self.cert is None or self.key is None:
            return TlsPem(cert=None, key=None, ca=ca_pem)
        cert_pem = _read(Path(self.cert), "TLS certificate")
        key_pem = _read(Path(self.key), "TLS key")
        cert = _parse_cert(cert_pem, Path(self.cert), "TLS certificate")
        key = _parse_key(key_pem, Path(self.key), "TLS key")
        if _public_der(key.public_key()) != _public_der(cert.public_key()):
            raise InvalidArgumentError(
                f"the TLS key {self.key} is not the key of the certificate {self.cert}"
            )
        return TlsPem(cert=cert_pem, key=key_pem, ca=ca_pem)


@dataclass(frozen=True)
class IssuedCert:
    """A certificate `issue` wrote: whose it is, its file (0644), its key's file (0600), the CA's
    certificate that verifies it, when it expires, and the DNS names and IP addresses it names."""

    identity: Identity
    cert: Path
    key: Path
    ca: Path
    not_valid_after: dt.datetime
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()

    @property
    def files(self) -> TlsFiles:
        return TlsFiles(cert=self.cert, key=self.key, ca=self.ca)


# ------------------------------------------------------------------------------------------- checks


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidArgumentError(f"unknown role {role!r}: the roles are {', '.join(ROLES)}")
    return role


def _check_days(days: int, what: str) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise InvalidArgumentError(f"the {what} must be valid for at least 1 day, not {days!r}")
    return days


def _check_dns(names: Iterable[str]) -> list[str]:
    checked = []
    for name in names:
        if not isinstance(name, str) or len(name) > 253 or not _DNS_NAME.fullmatch(name):
            raise InvalidArgumentError(
                f"bad DNS name {name!r}: a host name is ASCII labels of letters, digits and '-' "
                "separated by '.' (a leading '*.' makes a wildcard)"
            )
        checked.append(name.rstrip("."))
    return checked


def _check_ips(addresses: Iterable[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    checked = []
    for address in addresses:
        try:
            checked.append(ipaddress.ip_address(address.strip() if isinstance(address, str) else address))
        except ValueError:
            raise InvalidArgumentError(
                f"bad IP address {address!r}: give an IPv4 (10.0.0.5) or IPv6 (fd00::5) address"
            ) from None
    return checked


# ------------------------------------------------------------------------------------------- the CA


def create_ca(
    out_dir: str | os.PathLike[str],
    *,
    days: int = DEFAULT_CA_DAYS,
    common_name: str = DEFAULT_CA_NAME,
    force: bool = False,
) -> CaFiles:
    """Makes the cluster's CA in `out_dir` (created, mode 0700, when missing): `ca.pem` (0644) and
    `ca-key.pem` (0600), an ECDSA P-256 key and its self-signed certificate, valid for `days` days, that
    may sign node certificates and nothing else (path length 0).

    Refuses to replace an existing CA (every certificate it issued would stop working) unless `force`."""
    _check_days(days, "CA")
    if not common_name or not isinstance(common_name, str):
        raise InvalidArgumentError("the CA needs a common name")
    directory = Path(out_dir).expanduser()
    paths = CaFiles(cert=directory / CA_CERT_FILE, key=directory / CA_KEY_FILE)
    existing = [str(p) for p in (paths.cert, paths.key) if p.exists()]
    if existing and not force:
        raise InvalidArgumentError(
            f"a CA exists already in {directory} ({', '.join(existing)}): replacing it would invalidate "
            "every certificate it issued; replace it anyway with --force"
        )
    _make_dir(directory)

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_file(paths.key, _key_pem(key), 0o600)
    _write_file(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths


def load_ca(ca_dir: str | os.PathLike[str]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA in `ca_dir` (`ca.pem`, `ca-key.pem`): its certificate and key, checked to be a CA and a
    matching pair. Raises InvalidArgumentError naming the file and what is wrong."""
    directory = Path(ca_dir).expanduser()
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if not cert_path.exists() and not key_path.exists():
        raise InvalidArgumentError(
            f"there is no CA in {directory} (no {CA_CERT_FILE}, no {CA_KEY_FILE}): make one with "
            f"`bacalhau-grpc certs ca --out {directory}`"
        )
    cert = _parse_cert(_read(cert_path, "CA certificate"), cert_path, "CA certificate")
    key = _parse_key(_read(key_path, "CA key"), key_path, "CA key")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise InvalidArgumentError(f"the CA certificate {cert_path} is not a CA certificate")
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise InvalidArgumentError(f"the CA key {key_path} is not the key of the CA certificate {cert_path}")
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidArgumentError(f"the CA key {key_path} is not an ECDSA key")
    return cert, key


# ---------------------------------------------------------------------------------- issuing certificates


def cert_file_names(role: str, node_id: str) -> tuple[str, str]:
    """The names `issue` writes: `<role>-<node-id>.pem` and `<role>-<node-id>-key.pem`."""
    return f"{role}-{node_id}.pem", f"{role}-{node_id}-key.pem"


def issue(
    ca_dir: str | os.PathLike[str],
    *,
    role: str,
    node_id: str,
    dns: Iterable[str] = (),
    ips: Iterable[str] = (),
    days: int = DEFAULT_DAYS,
    out_dir: str | os.PathLike[str] | None = None,
    not_before: dt.datetime | None = None,
) -> IssuedCert:
    """Issues a certificate for `node_id` in `role`, signed by the CA in `ca_dir`, and writes
    `<role>-<node-id>.pem` (0644) and `<role>-<node-id>-key.pem` (0600) to `out_dir` (default: `ca_dir`),
    replacing a pair issued before (rotation).

    Its identity is the URI SAN `spiffe://bacalhau-grpc/<role>/<node-id>`; its subject is CN=<node-id>
    (its first 64 characters: X.509's limit), O=<role>. A node certificate (requester, compute,
    verifier) is for servers and clients (TLS serverAuth and clientAuth) and also names the DNS names
    `dns` and addresses `ips` it is reached at — `localhost` and `127.0.0.1` when neither is given.
    A `client` certificate is for clients only and names no host unless asked. Valid from 5 minutes ago
    (clock skew) for `days` days; `not_before` (tests) moves the start: the certificate is then valid
    from it for `days` days.

    Raises InvalidArgumentError naming what is wrong (role, node ID, DNS name, IP address, days, the CA's
    files, a validity past the CA's)."""
    check_role(role)
    check_node_id(node_id)
    _check_days(days, "certificate")
    dns_names = _check_dns([dns] if isinstance(dns, str) else dns)
    addresses = _check_ips([ips] if isinstance(ips, str) else ips)
    if not dns_names and not addresses and role in NODE_ROLES:
        dns_names, addresses = list(DEFAULT_DNS), _check_ips(DEFAULT_IPS)
    ca_cert, ca_key = load_ca(ca_dir)

    if not_before is None:
        now = _now()
        start, end = now - CLOCK_SKEW, now + dt.timedelta(days=days)
    else:
        start = not_before if not_before.tzinfo else not_before.replace(tzinfo=dt.UTC)
        end = start + dt.timedelta(days=days)
    if end > ca_cert.not_valid_after_utc:
        raise InvalidArgumentError(
            f"a certificate valid for {days} days would outlive the CA, which expires on "
            f"{ca_cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: issue it for fewer days or make a new CA"
        )

    identity = Identity(role, node_id)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri)]
    sans += [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(address) for address in addresses]
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role in NODE_ROLES:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        authority = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:  # a CA made elsewhere, without one
        authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    # X.509 caps a CN at 64 characters; the identity is the SAN, whole
                    x509.NameAttribute(NameOID.COMMON_NAME, node_id[:CN_MAX]),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, role),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(authority, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    directory = Path(out_dir).expanduser() if out_dir is not None else Path(ca_dir).expanduser()
    _make_dir(directory)
    cert_name, key_name = cert_file_names(role, node_id)
    issued = IssuedCert(
        identity=identity,
        cert=directory / cert_name,
        key=directory / key_name,
        ca=Path(ca_dir).expanduser() / CA_CERT_FILE,
        not_valid_after=cert.not_valid_after_utc,
        dns=tuple(dns_names),
        ips=tuple(str(address) for address in addresses),
    )
    _write_file(issued.key, _key_pem(key), 0o600)
    _write_file(issued.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return issued


# --------------------------------------------------------------------------------- reading certificates


def identity_of(cert_pem: bytes | str) -> Identity:
    """The identity a (verified) certificate names: its one `spiffe://bacalhau-grpc/<role>/<node-id>` URI
    SAN with a known role and a valid node ID. Raises UnauthenticatedError saying why when the certificate
    cannot be read, names no SPIFFE ID, several, one of another trust domain or a malformed one."""
    cert = _peer_cert(cert_pem)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise UnauthenticatedError(
            f"the certificate of {cert.subject.rfc4514_string()!r} has no subject alternative names, so "
            f"no {SPIFFE_PREFIX}<role>/<node-id> identity"
        ) from None
    uris = [u for u in sans.get_values_for_type(x509.UniformResourceIdentifier) if _is_spiffe(u)]
    if not uris:
        raise UnauthenticatedError(
            f"the certificate of {cert.subject.rfc4514_string()!r} names no identity: it has no "
            f"{SPIFFE_PREFIX}<role>/<node-id> URI"
        )
    if len(uris) > 1:
        raise UnauthenticatedError(
            f"the certificate names {len(uris)} SPIFFE IDs ({', '.join(uris)}): "
            "a certificate names one identity"
        )
    uri = uris[0]
    if not uri.startswith(SPIFFE_PREFIX):
        raise UnauthenticatedError(
            f"the certificate's identity {uri!r} is not in the trust domain {TRUST_DOMAIN}"
        )
    role, slash, node_id = uri[len(SPIFFE_PREFIX) :].partition("/")
    if not slash:
        raise UnauthenticatedError(
            f"the certificate's identity {uri!r} is not {SPIFFE_PREFIX}<role>/<node-id>"
        )
    if role not in ROLES:
        raise UnauthenticatedError(
            f"the certificate's identity {uri!r} has an unknown role {role!r} "
            f"(the roles are {', '.join(ROLES)})"
        )
    if node_id_problem(node_id) is not None:
        raise UnauthenticatedError(f"the certificate's identity {uri!r} has a malformed node ID {node_id!r}")
    return Identity(role, node_id)


def client_id_of_certificate(cert_pem: bytes | str) -> str:
    """The ClientID of an operator's (`client`) certificate: the lower-case hex SHA-256 of its
    SubjectPublicKeyInfo (DER). Stable for the certificate's key: a certificate re-issued with a new key
    (as `issue` does) is a new ClientID."""
    return hashlib.sha256(_public_der(_peer_cert(cert_pem).public_key())).hexdigest()


# ---------------------------------------------------------------------------------------------- helpers


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _is_spiffe(uri: str) -> bool:
    return uri[:9].lower() == "spiffe://"


def _public_der(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _peer_cert(cert_pem: bytes | str) -> x509.Certificate:
    data = cert_pem.encode() if isinstance(cert_pem, str) else bytes(cert_pem)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as err:
        raise UnauthenticatedError(
            f"the certificate is not a readable PEM X.509 certificate ({err})"
        ) from None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidArgumentError(f"the {what} {path} does not exist") from None
    except OSError as err:
        raise InvalidArgumentError(f"cannot read the {what} {path}: {err.strerror or err}") from None


def _parse_cert(data: bytes, path: Path, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise InvalidArgumentError(f"the {what} {path} is not a PEM X.509 certificate") from None


def _parse_key(data: bytes, path: Path, what: str):
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise InvalidArgumentError(f"the {what} {path} is not an unencrypted PEM private key") from None


def _make_dir(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidArgumentError(f"cannot create the folder {directory}: {err.strerror or err}") from None
    if not directory.is_dir():
        raise InvalidArgumentError(f"{directory} is not a folder")


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Writes `path` whole or not at all: a temporary file created with `mode` (never wider, whatever the
    umask), then renamed over it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        temporary.unlink()  # left by a process that died, with this pid
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o600)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as out:
                fd = -1
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        finally:
            if fd != -1:
                os.close(fd)
        os.replace(temporary, path)
    except OSError as err:
        raise InvalidArgumentError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
