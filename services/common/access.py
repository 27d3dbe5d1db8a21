"""The one check every served call goes through before its servicer runs: who the caller is, and whether
its certificate's role may call the service (`common.authz.Policy`).

    ServiceBinding(add, servicer, NAME, authenticate=Access(NAME, policy, transport=transport, clients=...))

With TLS, the caller's identity is the verified certificate of the peer (`tls.peer_identity`): a node acts
only as itself; an operator's `client` certificate is a client identity too (its ClientID is the SHA-256
of the certificate's public key), so grpcurl with `-cert/-key` needs no signing helper. A client without a
certificate is who its signed call metadata says (`caller.ClientCallAuthenticator`), or anonymous.
Without TLS there are no certificates: no policy can be enforced, and only signatures identify clients.
"""

from __future__ import annotations

from typing import Any

from bacalhau_grpc.common import tls
from bacalhau_grpc.common.authz import Policy
from bacalhau_grpc.common.caller import ANONYMOUS, Caller, ClientCallAuthenticator
from bacalhau_grpc.common.certs import Identity, client_id_of_certificate, identity_of
from bacalhau_grpc.common.transport import Transport

# Certificates seen recently (PEM -> identity, operator ClientID): reading one costs ~50 µs, a lookup
# next to nothing. Bounded: cleared when full.
_MAX_CACHED = 4096
_known: dict[bytes, tuple[Identity, str]] = {}


def _identify(pem: bytes) -> tuple[Identity, str]:
    known = _known.get(pem)
    if known is None:
        if len(_known) >= _MAX_CACHED:
            _known.clear()
        identity = identity_of(pem)
        known = _known[pem] = (identity, client_id_of_certificate(pem))
    return known


class Access:
    """The `authenticate` hook of one served service: the policy on the peer's certificate (with TLS),
    then the caller (an operator certificate's ClientID, else the client's signature, else anonymous)."""

    def __init__(
        self,
        service: str,
        policy: Policy,
        *,
        transport: Transport,
        clients: ClientCallAuthenticator | None = None,
    ) -> None:
        self.service = service
        self.policy = policy
        self.secure = transport.secure
        self.clients = clients

    def __call__(self, method: str, request: Any, context: Any) -> Caller:
        identity, client_id = None, None
        if self.secure:
            pem = tls.peer_certificate(context)
            if pem is not None:
                identity, client_id = _identify(pem)
            self.policy.check(self.service, method.rpartition("/")[2], request, identity)
            if identity is not None and identity.role == "client":
                return Caller(client_id, identity)
        if self.clients is not None:
            caller = self.clients(method, request, context.invocation_metadata())
            return Caller(caller.client_id, identity) if identity is not None else caller
        return Caller(None, identity) if identity is not None else ANONYMOUS

    @property
    def needed(self) -> bool:
        """False when there is nothing to check (no TLS and no client signatures): the server skips it."""
        return self.secure or self.clients is not None


def guarded(
    service: str, policy: Policy, transport: Transport, clients: ClientCallAuthenticator | None = None
) -> Access | None:
    """The `authenticate` hook of a service, or None when there is nothing to check (no TLS, no client
    signatures): the server then skips it."""
    access = Access(service, policy, transport=transport, clients=clients)
    return access if access.needed else None
