"""Outbound gRPC: channels with the project's options, and calls that raise our typed errors.

    channel = open_channel("127.0.0.1:50051")
    stub = rngrpc.RequesterNodeServiceStub(channel)
    response = await call(stub.RegisterNode, request, timeout=settings.call_timeout)

`call` always sets a deadline and turns a failed call into the matching `BacalhauError` (see
`grpc_errors`): INVALID_ARGUMENT → InvalidArgumentError (with `field`), NOT_FOUND → NotFoundError,
UNAVAILABLE → UnavailableError, DEADLINE_EXCEEDED → DeadlineExceededError, ...; statuses no typed error
stands for → `grpc_errors.RemoteError`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

import grpc

from bacalhau_grpc.common import telemetry
from bacalhau_grpc.common.grpc_errors import from_rpc_error

DEFAULT_TIMEOUT = 10.0
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# Keepalive: ping an idle connection every 30 s (the servers accept pings every 10 s), give up on a dead
# peer after 10 s. Reconnect back-off capped at 5 s (gRPC's default cap is 120 s), so a restarted
# service is found again quickly.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
)


def open_channel(
    address: str,
    *,
    options: tuple[tuple[str, Any], ...] = (),
    credentials: grpc.ChannelCredentials | None = None,
) -> grpc.aio.Channel:
    """A grpc.aio channel to `address` ("host:port"): TLS with `credentials` (`transport.Transport`), else
    plaintext; `options` add to or override the defaults.

    When tracing is on, the channel carries the trace context of the current span to the peer.
    """
    merged = dict(CHANNEL_OPTIONS)
    merged.update(options)
    interceptors = telemetry.client_interceptors() or None
    if credentials is not None:
        return grpc.aio.secure_channel(
            address, credentials, options=list(merged.items()), interceptors=interceptors
        )
    return grpc.aio.insecure_channel(address, options=list(merged.items()), interceptors=interceptors)


async def call(
    method: Callable[..., Any],
    request: Any,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    metadata: Any = None,
) -> Any:
    """Awaits a unary call `method(request)` with a deadline; a failed call raises the typed error."""
    try:
        return await method(request, timeout=timeout, metadata=metadata)
    except grpc.aio.AioRpcError as error:
        raise from_rpc_error(error) from None


async def stream(
    method: Callable[..., Any],
    request: Any,
    *,
    timeout: float | None = None,
    metadata: Any = None,
) -> AsyncGenerator[Any, None]:
    """The messages of a server-streaming call; a failed call raises the typed error.

    `timeout` bounds the whole stream (None: a stream that lives as long as the caller reads it).
    Leaving the loop early cancels the call.
    """
    responses = method(request, timeout=timeout, metadata=metadata)
    try:
        async for response in responses:
            yield response
    except grpc.aio.AioRpcError as error:
        raise from_rpc_error(error) from None
    finally:
        responses.cancel()
