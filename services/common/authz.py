"""Who may call what: each served gRPC service has one policy, checked in the server's wrapper of every
method before the servicer runs (see "Trust and security" in docs/architecture.md), never in the handlers.

A policy names the certificate roles that may call the service's methods and, for the node protocol, which
node a request speaks for: a compute node may register, heartbeat and report only as the node ID in its
certificate. The identity comes from the peer's certificate, verified by gRPC's mutual TLS against the
cluster CA (`common.tls.peer_identity`), never from a request field. A refused call reaches no handler, so
it stores nothing.

    POLICY = Policy(roles={"compute"}, speaks_for=lambda method, request: [request.node_id])

`Policy.OPEN` lets anyone call (the client API, whose callers are authenticated by their signatures
instead, and health and reflection). Without TLS (`--insecure`, development only) there are no
identities and no policy is enforced: the server says so when it starts.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bacalhau_grpc.common.certs import Identity
from bacalhau_grpc.common.errors import PermissionDeniedError, UnauthenticatedError

# The node IDs a request claims to speak for (the caller must be each of them), given the method's short
# name ("Heartbeat") and the request.
SpeaksFor = Callable[[str, Any], Iterable[str]]


@dataclass(frozen=True)
class Policy:
    """Who may call a service: peers whose certificate has one of `roles` (empty: anyone, with or without
    a certificate), or for a method named in `method_roles`, one of its roles; `speaks_for` the node IDs
    each request claims, which must all be the caller's own."""

    roles: Collection[str] = field(default_factory=frozenset)
    speaks_for: SpeaksFor | None = None
    method_roles: Mapping[str, Collection[str]] = field(default_factory=dict)

    def check(self, service: str, method: str, request: Any, caller: Identity | None) -> None:
        """Allow the call, or raise UnauthenticatedError (no certificate where one is needed) or
        PermissionDeniedError (the wrong role, or a request speaking for another node)."""
        roles = self.method_roles.get(method, self.roles)
        if not roles:
            return
        allowed = " or ".join(sorted(roles))
        if caller is None:
            raise UnauthenticatedError(
                f"{service}/{method} needs a {allowed} certificate of this cluster (mutual TLS); "
                "the call came without one"
            )
        if caller.role not in roles:
            raise PermissionDeniedError(
                f"{service}/{method} is for {allowed} nodes; the caller's certificate is a {caller.role} "
                f"one ({caller.node_id})"
            )
        if self.speaks_for is None:
            return
        for node_id in self.speaks_for(method, request):
            if node_id != caller.node_id:
                raise PermissionDeniedError(
                    f"{caller.role} node {caller.node_id} may act only as itself, not as node "
                    f"{node_id[:80]!r}"
                )


OPEN = Policy()
