"""The cluster's certificates (common.certs): what the CA and issued certificates contain, the files and
their modes, refusals with their messages, and reading an identity (or a ClientID) from a certificate."""

import datetime as dt
import hashlib
import ipaddress
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bacalhau_grpc.common import certs
from bacalhau_grpc.common.certs import Identity, TlsFiles
from bacalhau_grpc.common.errors import InvalidArgumentError, UnauthenticatedError


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ca"
    certs.create_ca(directory)
    return directory


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ext(cert: x509.Certificate, kind):
    return cert.extensions.get_extension_for_class(kind)


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """The signature of `cert` verifies with `issuer`'s public key (ECDSA over its TBS bytes)."""
    public_key = issuer.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    return cert.issuer == issuer.subject


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ------------------------------------------------------------------------------------------- the CA


def test_the_ca_is_a_self_signed_p256_ca_for_signing_certificates_only(tmp_path: Path):
    written = certs.create_ca(tmp_path / "new" / "ca")
    assert written.cert == tmp_path / "new" / "ca" / "ca.pem"
    assert written.key == tmp_path / "new" / "ca" / "ca-key.pem"
    ca = load(written.cert)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "bacalhau-grpc cluster CA"
    assert signed_by(ca, ca)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"
    assert isinstance(ca.signature_hash_algorithm, hashes.SHA256)

    constraints = ext(ca, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ext(ca, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign and not usage.value.digital_signature
    ski = ext(ca, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(ca.public_key())

    # about ten years, from a few minutes ago
    assert now() - dt.timedelta(minutes=6) < ca.not_valid_before_utc < now() - dt.timedelta(minutes=4)
    assert abs(ca.not_valid_after_utc - (now() + dt.timedelta(days=3650))) < dt.timedelta(minutes=1)

    key = serialization.load_pem_private_key(written.key.read_bytes(), password=None)
    assert key.public_key().public_numbers() == ca.public_key().public_numbers()
    assert mode(written.key) == 0o600
    assert mode(written.cert) == 0o644
    assert mode(written.cert.parent) == 0o700


def test_the_ca_takes_its_validity_and_name(tmp_path: Path):
    written = certs.create_ca(tmp_path, days=30, common_name="test CA")
    ca = load(written.cert)
    assert abs(ca.not_valid_after_utc - (now() + dt.timedelta(days=30))) < dt.timedelta(minutes=1)
    assert ca.subject.rfc4514_string() == "CN=test CA"


def test_key_files_are_0600_whatever_the_umask(tmp_path: Path):
    previous = os.umask(0)
    try:
        written = certs.create_ca(tmp_path)
        issued = certs.issue(tmp_path, role="compute", node_id="node-1")
    finally:
        os.umask(previous)
    assert mode(written.key) == mode(issued.key) == 0o600
    assert mode(written.cert) == mode(issued.cert) == 0o644


def test_an_existing_ca_is_not_replaced_without_force(ca_dir: Path):
    before = (ca_dir / "ca.pem").read_bytes()
    with pytest.raises(InvalidArgumentError, match=r"a CA exists already in .*ca\.pem.*--force"):
        certs.create_ca(ca_dir)
    assert (ca_dir / "ca.pem").read_bytes() == before
    # half a CA counts too: its key alone
    (ca_dir / "ca.pem").unlink()
    with pytest.raises(InvalidArgumentError, match=r"ca-key\.pem"):
        certs.create_ca(ca_dir)

    replaced = certs.create_ca(ca_dir, force=True)
    assert replaced.cert.read_bytes() != before
    assert mode(replaced.key) == 0o600
    assert not [p.name for p in ca_dir.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("days", [0, -1, True, 1.5])
def test_the_ca_needs_a_day_at_least(tmp_path: Path, days):
    with pytest.raises(InvalidArgumentError, match=r"the CA must be valid for at least 1 day"):
        certs.create_ca(tmp_path, days=days)
    assert not (tmp_path / "ca.pem").exists()


# ---------------------------------------------------------------------------------------- issuing


def test_a_node_certificate_names_its_identity_and_loopback_by_default(ca_dir: Path):
    issued = certs.issue(ca_dir, role="compute", node_id="node-1")
    assert issued.identity == Identity("compute", "node-1")
    assert issued.identity.uri == "spiffe://bacalhau-grpc/compute/node-1"
    assert issued.cert == ca_dir / "compute-node-1.pem"
    assert issued.key == ca_dir / "compute-node-1-key.pem"
    assert issued.ca == ca_dir / "ca.pem"
    assert (issued.dns, issued.ips) == (("localhost",), ("127.0.0.1",))

    ca, cert = load(ca_dir / "ca.pem"), load(issued.cert)
    assert signed_by(cert, ca)
    assert cert.subject.rfc4514_string() == "O=compute,CN=node-1"
    assert cert.public_key().curve.name == "secp256r1"
    sans = ext(cert, x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://bacalhau-grpc/compute/node-1"
    ]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]

    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_cert_sign and not usage.value.key_encipherment
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    assert ext(cert, x509.BasicConstraints).value.ca is False
    authority = ext(cert, x509.AuthorityKeyIdentifier).value
    assert authority.key_identifier == ext(ca, x509.SubjectKeyIdentifier).value.digest

    # valid from 5 minutes ago (clock skew) for a year
    assert now() - dt.timedelta(minutes=6) < cert.not_valid_before_utc < now() - dt.timedelta(minutes=4)
    assert abs(cert.not_valid_after_utc - (now() + dt.timedelta(days=365))) < dt.timedelta(minutes=1)
    assert issued.not_valid_after == cert.not_valid_after_utc

    key = serialization.load_pem_private_key(issued.key.read_bytes(), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert mode(issued.key) == 0o600
    assert mode(issued.cert) == 0o644


def test_given_names_and_addresses_replace_the_defaults(ca_dir: Path, tmp_path: Path):
    issued = certs.issue(
        ca_dir,
        role="requester",
        node_id="requester-0",
        dns=["requester.example.org", "*.bacalhau.svc"],
        ips=["10.0.0.5", "fd00::5"],
        days=90,
        out_dir=tmp_path / "elsewhere",
    )
    assert issued.cert == tmp_path / "elsewhere" / "requester-requester-0.pem"
    assert issued.key == tmp_path / "elsewhere" / "requester-requester-0-key.pem"
    assert issued.ca == ca_dir / "ca.pem"
    cert = load(issued.cert)
    sans = ext(cert, x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["requester.example.org", "*.bacalhau.svc"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("fd00::5"),
    ]
    assert abs(cert.not_valid_after_utc - (now() + dt.timedelta(days=90))) < dt.timedelta(minutes=1)
    # only an address: no default name is added
    only_ip = load(certs.issue(ca_dir, role="verifier", node_id="v", ips=["10.0.0.7"]).cert)
    assert ext(only_ip, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == []


def test_a_client_certificate_is_for_client_authentication_only(ca_dir: Path):
    issued = certs.issue(ca_dir, role="client", node_id="alice")
    assert issued.cert.name == "client-alice.pem"
    cert = load(issued.cert)
    assert cert.subject.rfc4514_string() == "O=client,CN=alice"
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    sans = ext(cert, x509.SubjectAlternativeName).value
    assert list(sans) == [x509.UniformResourceIdentifier("spiffe://bacalhau-grpc/client/alice")]
    assert (issued.dns, issued.ips) == ((), ())


def test_issuing_again_replaces_the_pair(ca_dir: Path):
    first = certs.issue(ca_dir, role="compute", node_id="node-1")
    before = first.cert.read_bytes(), first.key.read_bytes()
    second = certs.issue(ca_dir, role="compute", node_id="node-1")
    assert (second.cert.read_bytes(), second.key.read_bytes()) != before
    assert mode(second.key) == 0o600
    assert TlsFiles(second.cert, second.key, second.ca).load().cert == second.cert.read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": "admin"}, r"unknown role 'admin': the roles are requester, compute, verifier, client"),
        ({"node_id": ""}, r"bad node ID '': a node ID is 1 to 128 characters"),
        ({"node_id": "a/b"}, r"bad node ID 'a/b'"),
        ({"node_id": "a b"}, r"bad node ID 'a b'"),
        ({"node_id": ".."}, r"bad node ID '\.\.'.*not '\.' or '\.\.'"),
        ({"node_id": "é"}, r"bad node ID 'é'"),
        ({"node_id": "n" * 129}, r"bad node ID 'n{129}'"),
        ({"ips": ["1.2.3"]}, r"bad IP address '1\.2\.3'"),
        ({"ips": ["localhost"]}, r"bad IP address 'localhost'"),
        ({"dns": ["bad name"]}, r"bad DNS name 'bad name'"),
        ({"dns": ["exämple.org"]}, r"bad DNS name 'exämple\.org'"),
        ({"days": 0}, r"the certificate must be valid for at least 1 day, not 0"),
        ({"days": 4000}, r"a certificate valid for 4000 days would outlive the CA, which expires on \d{4}-"),
    ],
)
def test_bad_input_is_refused_naming_what_is_wrong(ca_dir: Path, kwargs, message):
    arguments = {"role": "compute", "node_id": "node-1", **kwargs}
    with pytest.raises(InvalidArgumentError, match=message):
        certs.issue(ca_dir, **arguments)
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca-key.pem", "ca.pem"]


def test_the_node_id_limits_are_inclusive(ca_dir: Path):
    for node_id in ("a", "A.b_c-9", "n" * 128):
        issued = certs.issue(ca_dir, role="compute", node_id=node_id)
        assert issued.identity.node_id == node_id
        assert certs.identity_of(issued.cert.read_bytes()) == Identity("compute", node_id)
    # X.509 caps a common name at 64 characters: the subject has the first 64, the SAN the whole ID
    subject = load(ca_dir / f"compute-{'n' * 128}.pem").subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "n" * 64


def test_a_missing_or_broken_ca_is_named(tmp_path: Path, ca_dir: Path):
    with pytest.raises(InvalidArgumentError, match=r"there is no CA in .*nowhere.*certs ca --out"):
        certs.issue(tmp_path / "nowhere", role="compute", node_id="n")
    (ca_dir / "ca-key.pem").unlink()
    with pytest.raises(InvalidArgumentError, match=r"the CA key .*ca-key\.pem does not exist"):
        certs.issue(ca_dir, role="compute", node_id="n")
    (ca_dir / "ca-key.pem").write_text("not a key")
    with pytest.raises(InvalidArgumentError, match=r"the CA key .*ca-key\.pem is not an unencrypted PEM"):
        certs.issue(ca_dir, role="compute", node_id="n")
    (ca_dir / "ca.pem").write_text("not a certificate")
    with pytest.raises(InvalidArgumentError, match=r"the CA certificate .*ca\.pem is not a PEM X\.509"):
        certs.issue(ca_dir, role="compute", node_id="n")


def test_a_ca_key_of_another_ca_or_a_leaf_as_ca_is_refused(tmp_path: Path):
    one, two = tmp_path / "one", tmp_path / "two"
    certs.create_ca(one)
    certs.create_ca(two)
    (one / "ca-key.pem").write_bytes((two / "ca-key.pem").read_bytes())
    with pytest.raises(InvalidArgumentError, match=r"is not the key of the CA certificate"):
        certs.issue(one, role="compute", node_id="n")

    leaf = certs.issue(two, role="compute", node_id="n", out_dir=tmp_path / "leaf")
    leaf.cert.rename(leaf.cert.with_name("ca.pem"))
    leaf.key.rename(leaf.key.with_name("ca-key.pem"))
    with pytest.raises(InvalidArgumentError, match=r"is not a CA certificate"):
        certs.issue(tmp_path / "leaf", role="compute", node_id="m")


def test_an_unreadable_ca_key_is_named(ca_dir: Path):
    # a folder where the key belongs cannot be read by anyone, root included
    (ca_dir / "ca-key.pem").unlink()
    (ca_dir / "ca-key.pem").mkdir()
    with pytest.raises(InvalidArgumentError, match=r"cannot read the CA key .*ca-key\.pem"):
        certs.issue(ca_dir, role="compute", node_id="n")


def test_not_before_moves_the_validity(ca_dir: Path):
    start = now() - dt.timedelta(days=10)
    cert = load(certs.issue(ca_dir, role="compute", node_id="old", days=1, not_before=start).cert)
    assert cert.not_valid_before_utc == start.replace(microsecond=0)
    assert cert.not_valid_after_utc == (start + dt.timedelta(days=1)).replace(microsecond=0)


# ------------------------------------------------------------------------------------ TLS files


def test_tls_files_load_checked_pem(ca_dir: Path, tmp_path: Path):
    issued = certs.issue(ca_dir, role="compute", node_id="node-1")
    pem = issued.files.load()
    assert pem.cert == issued.cert.read_bytes()
    assert pem.key == issued.key.read_bytes()
    assert pem.ca == (ca_dir / "ca.pem").read_bytes()
    ca_only = TlsFiles(cert=None, key=None, ca=ca_dir / "ca.pem").load()
    assert (ca_only.cert, ca_only.key, ca_only.ca) == (None, None, pem.ca)

    with pytest.raises(InvalidArgumentError, match=r"give both or neither"):
        TlsFiles(cert=issued.cert, key=None, ca=issued.ca).load()
    with pytest.raises(InvalidArgumentError, match=r"the TLS certificate .*missing\.pem does not exist"):
        TlsFiles(cert=tmp_path / "missing.pem", key=issued.key, ca=issued.ca).load()
    with pytest.raises(InvalidArgumentError, match=r"the CA certificate .*nope\.pem does not exist"):
        TlsFiles(cert=issued.cert, key=issued.key, ca=tmp_path / "nope.pem").load()
    other = certs.issue(ca_dir, role="compute", node_id="node-2")
    with pytest.raises(
        InvalidArgumentError, match=r"the TLS key .*compute-node-2-key\.pem is not the key of"
    ):
        TlsFiles(cert=issued.cert, key=other.key, ca=issued.ca).load()
    with pytest.raises(InvalidArgumentError, match=r"the TLS key .* is not an unencrypted PEM private key"):
        TlsFiles(cert=issued.cert, key=issued.cert, ca=issued.ca).load()


# ---------------------------------------------------------------------------------- reading identities


def test_identity_of_an_issued_certificate(ca_dir: Path):
    for role in certs.ROLES:
        issued = certs.issue(ca_dir, role=role, node_id=f"{role}-7")
        pem = issued.cert.read_bytes()
        assert certs.identity_of(pem) == Identity(role, f"{role}-7")
        assert certs.identity_of(pem.decode()) == Identity(role, f"{role}-7")
    assert str(Identity("verifier", "v1")) == "spiffe://bacalhau-grpc/verifier/v1"


def foreign_cert(
    *uris: str, dns: tuple[str, ...] = ("localhost",), with_sans: bool = True
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """A self-signed certificate with the given URI SANs, made with cryptography alone."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - dt.timedelta(minutes=1))
        .not_valid_after(now() + dt.timedelta(days=1))
    )
    if with_sans:
        names = [x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(d) for d in dns]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), key


@pytest.mark.parametrize(
    ("uris", "message"),
    [
        ((), r"names no identity: it has no spiffe://bacalhau-grpc/<role>/<node-id> URI"),
        (("https://example.org/compute/node-1",), r"names no identity"),
        (
            ("spiffe://bacalhau-grpc/compute/a", "spiffe://bacalhau-grpc/compute/b"),
            r"names 2 SPIFFE IDs \(spiffe://bacalhau-grpc/compute/a, spiffe://bacalhau-grpc/compute/b\)",
        ),
        (
            ("spiffe://bacalhau-grpc/compute/a", "spiffe://other.org/compute/a"),
            r"names 2 SPIFFE IDs",
        ),
        (
            ("spiffe://other.org/compute/node-1",),
            r"'spiffe://other.org/compute/node-1' is not in the trust domain",
        ),
        (("spiffe://bacalhau-grpc/admin/node-1",), r"has an unknown role 'admin' \(the roles are requester,"),
        (("spiffe://bacalhau-grpc/compute",), r"is not spiffe://bacalhau-grpc/<role>/<node-id>"),
        (("spiffe://bacalhau-grpc/compute/a/b",), r"has a malformed node ID 'a/b'"),
        (("spiffe://bacalhau-grpc/compute/",), r"has a malformed node ID ''"),
        (("spiffe://bacalhau-grpc/compute/..",), r"has a malformed node ID '\.\.'"),
    ],
)
def test_identity_of_refuses_a_certificate_without_one_valid_identity(uris, message):
    pem, _ = foreign_cert(*uris)
    with pytest.raises(UnauthenticatedError, match=message):
        certs.identity_of(pem)


def test_identity_of_ignores_other_uris_beside_the_identity():
    pem, _ = foreign_cert("https://example.org/about", "spiffe://bacalhau-grpc/verifier/v-1")
    assert certs.identity_of(pem) == Identity("verifier", "v-1")


def test_identity_of_a_certificate_without_sans_or_not_a_certificate(ca_dir: Path):
    pem, _ = foreign_cert(with_sans=False)
    with pytest.raises(UnauthenticatedError, match=r"'CN=stranger' has no subject alternative names"):
        certs.identity_of(pem)
    with pytest.raises(UnauthenticatedError, match=r"'CN=bacalhau-grpc cluster CA' has no subject alt"):
        certs.identity_of((ca_dir / "ca.pem").read_bytes())  # the CA itself is nobody
    with pytest.raises(UnauthenticatedError, match=r"not a readable PEM X\.509 certificate"):
        certs.identity_of(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(UnauthenticatedError, match=r"not a readable PEM X\.509 certificate"):
        certs.identity_of(b"")


def test_client_id_of_a_certificate_is_the_sha256_of_its_public_key(ca_dir: Path):
    issued = certs.issue(ca_dir, role="client", node_id="alice")
    pem = issued.cert.read_bytes()
    client_id = certs.client_id_of_certificate(pem)
    assert len(client_id) == 64 and client_id == client_id.lower()
    assert certs.client_id_of_certificate(pem) == client_id  # stable
    assert certs.client_id_of_certificate(pem.decode()) == client_id
    spki = (
        load(issued.cert)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    assert client_id == hashlib.sha256(spki).hexdigest()
    # another key is another ClientID; the same key in another certificate is the same one
    other = certs.issue(ca_dir, role="client", node_id="bob")
    assert certs.client_id_of_certificate(other.cert.read_bytes()) != client_id
    key = serialization.load_pem_private_key(issued.key.read_bytes(), password=None)
    same_key = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "again")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "again")]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now())
        .not_valid_after(now() + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    assert certs.client_id_of_certificate(same_key.public_bytes(serialization.Encoding.PEM)) == client_id
