"""Mutual TLS with the cluster's certificates (common.certs, common.tls) between real grpc.aio servers and
clients on 127.0.0.1:0, and the real grpcurl: the server sees the client's identity; a certificate of
another CA, an expired one, a server certificate for another host, plaintext against TLS and TLS against
plaintext are all refused at once (UNAVAILABLE, well within the calls' deadlines)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from bacalhau_grpc.common import certs, reflection, tls
from bacalhau_grpc.common.certs import Identity, TlsFiles, TlsPem
from bacalhau_grpc.common.errors import InvalidArgumentError, UnauthenticatedError
from tests.integration.common_testing import grpcurl_path, run_process

WHOAMI = "/test.v1.Whoami/Who"
DEADLINE = 10.0  # seconds: a refusal must come well before it (a hang would end as DEADLINE_EXCEEDED)
SEEN: list[Identity | None] = []  # what `who` found, call after call


async def who(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """The peer's identity URI, b"" for none; UNAUTHENTICATED when its certificate names none."""
    try:
        identity = tls.peer_identity(context)
    except UnauthenticatedError as err:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(err))
    SEEN.append(identity)
    return identity.uri.encode() if identity is not None else b""


@asynccontextmanager
async def serving(credentials: grpc.ServerCredentials | None) -> AsyncIterator[int]:
    """A grpc.aio server on 127.0.0.1:0 (TLS with `credentials`, else plaintext) serving gRPC health,
    reflection and WHOAMI; yields its port."""
    server = grpc.aio.server()
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_reflection(server, [health.SERVICE_NAME])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.v1.Whoami", {"Who": grpc.unary_unary_rpc_method_handler(who)}
            )
        ]
    )
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=0)


async def call_who(channel: grpc.aio.Channel) -> bytes:
    return await channel.unary_unary(WHOAMI)(b"", timeout=DEADLINE)


async def who_over_tls(port: int, client: TlsPem, host: str = "127.0.0.1") -> bytes:
    credentials = tls.channel_credentials(client.ca, client.cert, client.key)
    async with grpc.aio.secure_channel(f"{host}:{port}", credentials) as channel:
        return await call_who(channel)


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value
    return caught.value


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    certs.create_ca(tmp_path / "ca")
    return tmp_path / "ca"


@pytest.fixture
def issue(ca_dir: Path) -> Callable[..., TlsPem]:
    def make(role: str, node_id: str, **kwargs) -> TlsPem:
        return certs.issue(ca_dir, role=role, node_id=node_id, **kwargs).files.load()

    return make


@pytest.fixture
def mtls_server_credentials(issue) -> grpc.ServerCredentials:
    pem = issue("requester", "requester-0")
    return tls.server_credentials(pem.cert, pem.key, pem.ca, require_client_auth=True)


async def test_the_server_sees_the_client_certificates_identity(issue, mtls_server_credentials):
    async with serving(mtls_server_credentials) as port:
        SEEN.clear()
        uri = await who_over_tls(port, issue("compute", "node-1"))
        assert [Identity("compute", "node-1")] == SEEN
        assert uri == b"spiffe://bacalhau-grpc/compute/node-1"
        # an operator's certificate; and a server named by its DNS SAN (localhost) as well as its IP
        client = await who_over_tls(port, issue("client", "alice"), host="localhost")
        assert client == b"spiffe://bacalhau-grpc/client/alice"


async def test_a_certificate_of_another_ca_is_refused_at_the_handshake(
    tmp_path, issue, mtls_server_credentials
):
    certs.create_ca(tmp_path / "other")
    stranger = certs.issue(tmp_path / "other", role="compute", node_id="node-1").files.load()
    async with serving(mtls_server_credentials) as port:
        # the client's certificate is not the cluster CA's
        signed_elsewhere = TlsPem(cert=stranger.cert, key=stranger.key, ca=issue("compute", "x").ca)
        await refused(who_over_tls(port, signed_elsewhere))
        # and a client that trusts another CA does not accept the server's certificate
        await refused(who_over_tls(port, stranger))


async def test_a_client_without_a_certificate_is_refused(ca_dir, mtls_server_credentials):
    ca_only = TlsFiles(cert=None, key=None, ca=ca_dir / "ca.pem").load()
    async with serving(mtls_server_credentials) as port:
        await refused(who_over_tls(port, ca_only))


async def test_an_expired_certificate_is_refused(issue, mtls_server_credentials):
    expired = issue("compute", "old", days=1, not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=10))
    async with serving(mtls_server_credentials) as port:
        await refused(who_over_tls(port, expired))
        assert await who_over_tls(port, issue("compute", "old")) == b"spiffe://bacalhau-grpc/compute/old"


async def test_an_expired_server_certificate_is_refused_by_the_client(issue):
    expired = issue("requester", "old", days=1, not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=10))
    credentials = tls.server_credentials(expired.cert, expired.key, expired.ca, require_client_auth=True)
    async with serving(credentials) as port:
        await refused(who_over_tls(port, issue("compute", "node-1")))


async def test_a_server_certificate_for_another_host_is_refused(issue):
    elsewhere = issue("requester", "requester-0", dns=["requester.example.org"], ips=["10.0.0.5"])
    credentials = tls.server_credentials(
        elsewhere.cert, elsewhere.key, elsewhere.ca, require_client_auth=True
    )
    async with serving(credentials) as port:
        await refused(who_over_tls(port, issue("compute", "node-1")))


async def test_a_certificate_of_the_ca_without_an_identity_is_refused_by_the_handler(ca_dir, issue):
    """The handshake accepts any certificate the CA signed; one that names no identity is refused by
    `peer_identity` (what the server interceptor will do), with the reason."""
    ca_cert, ca_key = certs.load_ca(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    anonymous = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anonymous")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("anonymous.example")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    client = TlsPem(
        cert=anonymous.public_bytes(serialization.Encoding.PEM),
        key=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        ca=issue("compute", "x").ca,
    )
    pem = issue("requester", "requester-0")
    async with serving(tls.server_credentials(pem.cert, pem.key, pem.ca, require_client_auth=True)) as port:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await who_over_tls(port, client)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "'CN=anonymous' names no identity" in (caught.value.details() or "")


async def test_plaintext_against_tls_and_tls_against_plaintext_fail_at_once(issue, mtls_server_credentials):
    async with (
        serving(mtls_server_credentials) as port,
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        await refused(call_who(channel))
    async with serving(None) as port:
        await refused(who_over_tls(port, issue("compute", "node-1")))
        # plaintext to plaintext: no certificate, no identity
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert await call_who(channel) == b""


async def test_a_server_without_client_auth_never_sees_a_client_certificate(issue):
    """gRPC Python asks for a client certificate only when it requires one."""
    pem = issue("requester", "requester-0")
    async with serving(tls.server_credentials(pem.cert, pem.key)) as port:
        assert await who_over_tls(port, issue("compute", "node-1")) == b""
        assert await who_over_tls(port, TlsPem(cert=None, key=None, ca=pem.ca)) == b""


def test_credential_helpers_refuse_incomplete_material(issue):
    pem = issue("compute", "node-1")
    with pytest.raises(InvalidArgumentError, match=r"needs the CA that verifies them"):
        tls.server_credentials(pem.cert, pem.key, require_client_auth=True)
    with pytest.raises(InvalidArgumentError, match=r"needs its certificate and its key"):
        tls.server_credentials(pem.cert, b"")
    with pytest.raises(InvalidArgumentError, match=r"give both"):
        tls.channel_credentials(pem.ca, pem.cert)
    with pytest.raises(InvalidArgumentError, match=r"needs the CA certificate"):
        tls.channel_credentials(b"")


# ------------------------------------------------------------------------------------------ grpcurl


async def grpcurl(*args: str) -> tuple[int, str, str]:
    return await run_process(grpcurl_path(), "-max-time", "20", *args)


async def test_grpcurl_with_an_operator_certificate(ca_dir, issue, mtls_server_credentials):
    operator = certs.issue(ca_dir, role="client", node_id="alice")
    tls_flags = ["-cacert", str(operator.ca), "-cert", str(operator.cert), "-key", str(operator.key)]
    async with serving(mtls_server_credentials) as port:
        address = f"localhost:{port}"
        rc, out, err = await grpcurl(*tls_flags, address, "list")
        assert rc == 0, err
        assert health.SERVICE_NAME in out.split()
        rc, out, err = await grpcurl(*tls_flags, address, "grpc.health.v1.Health/Check")
        assert rc == 0, err
        assert json.loads(out) == {"status": "SERVING"}

        # without a certificate, or in plaintext, grpcurl fails to connect (it dials until its
        # -connect-timeout: the handshake fails on every attempt)
        rc, out, err = await grpcurl("-connect-timeout", "5", "-cacert", str(operator.ca), address, "list")
        assert rc != 0 and f'Failed to dial target host "{address}"' in err, (out, err)
        rc, out, err = await grpcurl("-connect-timeout", "2", "-plaintext", address, "list")
        assert rc != 0 and f'Failed to dial target host "{address}"' in err, (out, err)
