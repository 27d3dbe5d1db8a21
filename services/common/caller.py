"""Who is calling: the identity a server verified for the call being served, and the check that verifies it.

The server (`common.server`) runs a service's `authenticate` hook once per call, before the servicer
method, and keeps what it returns for the rest of the call; servicers read it with `current_caller()` and
hand the ClientID to the domain. A request field never decides who the caller is.

    ServiceBinding(add_servicer, servicer, NAME, authenticate=ClientCallAuthenticator(skip=NODE_METHODS))
    ...
    caller = current_caller()   # in the servicer: Caller(client_id="3f2a..."), or ANONYMOUS

`ClientCallAuthenticator` checks clients' signed calls (`common.signing`): a call without any signature
metadata is anonymous (what it may do is the service's decision); a call with a signature that does not
check out (incomplete, malformed, expired, from the future, over another method or request, replayed) is
refused, UNAUTHENTICATED, whatever it asks for: a bad signature is never taken for no signature.

Every call runs in its own asyncio task (grpc.aio), so the caller set for one call is never seen by
another. Nothing here imports gRPC: the hook gets the method name, the parsed request and the metadata
as plain (key, value) pairs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from bacalhau_grpc.common.certs import Identity
from bacalhau_grpc.common.signing import ReplayGuard, call_credentials, request_bytes, verify_call


@dataclass(frozen=True, slots=True)
class Caller:
    """The verified identity of the call's client: its ClientID, or None for an anonymous call; with
    TLS, also the identity in the peer's certificate (a node, or an operator's client certificate)."""

    client_id: str | None = None
    identity: Identity | None = None

    @property
    def anonymous(self) -> bool:
        return self.client_id is None


ANONYMOUS = Caller()

# An authentication hook: (full method name, parsed request or None for a streamed request, the call's
# ServicerContext) → the caller; raises UnauthenticatedError or PermissionDeniedError to refuse the call
# (`common.access.Access`).
Authenticate = Callable[[str, Any, Any], Caller]

_CURRENT: ContextVar[Caller] = ContextVar("bacalhau_caller", default=ANONYMOUS)


def current_caller() -> Caller:
    """The verified caller of the call being served (ANONYMOUS outside a call, or for a service with
    no authentication hook)."""
    return _CURRENT.get()


def set_current_caller(caller: Caller) -> None:
    """For the server: the caller of the call being served, until the call ends."""
    _CURRENT.set(caller)


class ClientCallAuthenticator:
    """The `authenticate` hook for a client API: signed calls give their ClientID, unsigned ones are
    anonymous, badly signed ones are refused. Methods in `skip` (full names: "/pkg.Service/Method") are
    not looked at: anonymous, free (e.g. the node protocol sharing the service, whose callers are nodes,
    not clients). `clock` (unix seconds) and `replay_guard` can be given for tests."""

    def __init__(
        self,
        *,
        skip: Collection[str] = (),
        replay_guard: ReplayGuard | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.skip = frozenset(skip)
        self.replay_guard = replay_guard if replay_guard is not None else ReplayGuard()
        self.clock = clock

    def __call__(self, method: str, request: Any, metadata: Iterable[tuple[str, Any]] | None) -> Caller:
        if method in self.skip:
            return ANONYMOUS
        credentials = call_credentials(metadata)
        if not credentials:
            return ANONYMOUS
        data = b"" if request is None else request_bytes(request)
        client_id = verify_call(method, data, credentials, self.clock(), replay_guard=self.replay_guard)
        return Caller(client_id)
