"""gRPC's TLS credentials from the cluster's certificates (`common.certs`), and the identity of the peer
of a call.

    pem = TlsFiles(cert=..., key=..., ca=...).load()
    server.add_secure_port(address, server_credentials(pem.cert, pem.key, pem.ca, require_client_auth=True))
    channel = grpc.aio.secure_channel(target, channel_credentials(pem.ca, pem.cert, pem.key))

gRPC verifies the peer's chain against the CA (and, on the client side, that the server's certificate
names the host dialled: connect to a DNS name or IP address in its SANs, `localhost` / `127.0.0.1` by
default). `peer_identity` then reads who the peer is from the verified certificate.

Note: gRPC Python asks a client for its certificate only when `require_client_auth` is set; a server
made with `require_client_auth=False` never sees a client certificate (`peer_identity` is None).
"""

from __future__ import annotations

from typing import Any

import grpc

from bacalhau_grpc.common.certs import Identity, identity_of
from bacalhau_grpc.common.errors import InvalidArgumentError

# The auth context property gRPC sets to the peer's (verified) certificate, PEM.
PEER_CERT_PROPERTY = "x509_pem_cert"


def server_credentials(
    cert_pem: bytes, key_pem: bytes, ca_pem: bytes | None = None, require_client_auth: bool = False
) -> grpc.ServerCredentials:
    """A server's TLS credentials: its certificate and key; with `require_client_auth`, every client must
    present a certificate the CA `ca_pem` signed (mutual TLS), else the handshake fails."""
    if not cert_pem or not key_pem:
        raise InvalidArgumentError("a TLS server needs its certificate and its key")
    if require_client_auth and not ca_pem:
        raise InvalidArgumentError(
            "a server that requires client certificates needs the CA that verifies them"
        )
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=require_client_auth
    )


def channel_credentials(
    ca_pem: bytes, cert_pem: bytes | None = None, key_pem: bytes | None = None
) -> grpc.ChannelCredentials:
    """A client's TLS credentials: the CA that verifies servers, and the client's own certificate and key
    for servers that require one (both or neither)."""
    if not ca_pem:
        raise InvalidArgumentError("a TLS client needs the CA certificate that verifies servers")
    if (cert_pem is None) != (key_pem is None):
        raise InvalidArgumentError("a client certificate needs its key and a key its certificate: give both")
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def peer_certificate(context: Any) -> bytes | None:
    """The PEM certificate the peer of a call presented (verified by gRPC), None when it sent none."""
    auth = context.auth_context() or {}
    values = auth.get(PEER_CERT_PROPERTY) or []
    return bytes(values[0]) if values else None


def peer_identity(context: Any) -> Identity | None:
    """Who the peer of a call is (`context`: a grpc or grpc.aio ServicerContext), from its verified
    certificate: None when it sent no certificate (plaintext, or a server that does not ask for one);
    UnauthenticatedError (from `identity_of`) when its certificate names no valid identity."""
    pem = peer_certificate(context)
    return identity_of(pem) if pem is not None else None
