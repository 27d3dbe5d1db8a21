"""How a service talks to the others: TLS with the cluster's certificates (`common.certs`), or plaintext.

Every node has one certificate of its role, its key and the cluster CA (`--tls-cert`, `--tls-key`,
`--tls-ca`). It serves the node protocol over mutual TLS (a caller must show a certificate the CA signed)
and calls the other nodes with its own certificate. Plaintext is a development choice (`--insecure`), made
explicitly: `serve` refuses to start without certificates otherwise (`check_transport_settings`).

    transport = Transport.from_files(settings.tls_cert, settings.tls_key, settings.tls_ca)
    server credentials: transport.server_credentials(require_client_auth=True)
    channel credentials: transport.channel_credentials()   (None: plaintext)
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bacalhau_grpc.common import tls
from bacalhau_grpc.common.certs import TlsFiles, TlsPem
from bacalhau_grpc.common.errors import InvalidArgumentError

log = logging.getLogger(__name__)
_LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


@dataclass(frozen=True)
class Transport:
    """TLS material (certificate, key, CA, as PEM), or None for plaintext."""

    pem: TlsPem | None = None

    @classmethod
    def from_files(cls, cert: str = "", key: str = "", ca: str = "") -> Transport:
        """TLS from the three files, or plaintext when none is given; InvalidArgumentError when only some
        are, or one cannot be read (naming it)."""
        given = {"tls_cert": cert, "tls_key": key, "tls_ca": ca}
        if not any(given.values()):
            return PLAINTEXT
        missing = [name for name, path in given.items() if not path]
        if missing:
            raise InvalidArgumentError(
                "TLS needs the node's certificate, its key and the cluster CA: "
                f"--{missing[0].replace('_', '-')} is missing",
                field=missing[0],
            )
        return cls(TlsFiles(cert=Path(cert), key=Path(key), ca=Path(ca)).load())

    @property
    def secure(self) -> bool:
        return self.pem is not None

    def server_credentials(self, *, require_client_auth: bool) -> grpc.ServerCredentials | None:
        """The server's TLS credentials (None: plaintext); with `require_client_auth`, mutual TLS."""
        if self.pem is None:
            return None
        assert self.pem.cert is not None and self.pem.key is not None
        return tls.server_credentials(
            self.pem.cert, self.pem.key, self.pem.ca, require_client_auth=require_client_auth
        )

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """Credentials to call another node with this node's certificate (None: plaintext)."""
        if self.pem is None:
            return None
        return tls.channel_credentials(self.pem.ca, self.pem.cert, self.pem.key)


PLAINTEXT = Transport()


def transport_of(settings: Any) -> Transport:
    """The transport a service's settings ask for (`tls_cert`, `tls_key`, `tls_ca`)."""
    return Transport.from_files(settings.tls_cert, settings.tls_key, settings.tls_ca)


def check_transport_settings(settings: Any, component: str) -> Transport:
    """What `serve` starts a node with: its certificates, or plaintext only when `insecure` is set
    (refused otherwise, saying how to get certificates). Plaintext on an address other than loopback is
    logged as a warning."""
    transport = transport_of(settings)
    if transport.secure:
        if settings.insecure:
            raise InvalidArgumentError(
                "--insecure and TLS certificates were both given: choose one", field="insecure"
            )
        return transport
    if not settings.insecure:
        raise InvalidArgumentError(
            f"the {component} node refuses to serve without TLS: give --tls-cert, --tls-key and --tls-ca "
            "(`bacalhau-grpc certs ca` and `certs issue` make them), or --insecure for plaintext "
            "(development only)"
        )
    if not is_loopback(settings.host):
        log.warning(
            "%s serving in PLAINTEXT on %s (--insecure): anyone who can reach it can act as any node",
            component,
            settings.host,
        )
    else:
        log.info("%s serving in plaintext (--insecure), on loopback only", component)
    return transport


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
