"""The gRPC server every service runs: its services plus health, reflection and the error mapping.

    SERVICE_NAME = "bacalhau.requester.v1.RequesterService"
    running = await start_server(
        component="requester",
        node_id=node_id,
        services=[ServiceBinding(rgrpc.add_RequesterServiceServicer_to_server, servicer, SERVICE_NAME)],
        host=settings.host,
        port=settings.port,
    )
    ...
    await running.stop(grace=5.0)

- Health (`grpc.health.v1.Health`): SERVING for "" and every service until `stop`, which first sets
  NOT_SERVING (so load balancers and probes drain the node) and then stops the server with a grace period.
- Reflection v1 and v1alpha, listing the services, health and reflection: `grpcurl -cacert ca.pem
  [-cert c.pem -key k.pem] ADDR list` (or `-plaintext` on an insecure server) and `... describe
  pkg.Service.Method` work.
- Errors: a servicer raises `BacalhauError`s; the call ends with the canonical status code, the error's
  message as details and a `google.rpc.ErrorInfo` (see `grpc_errors`). Any other exception ends the call
  with INTERNAL "internal error" (no internals leak) and is logged with its traceback. Unary and streaming
  handlers alike; `context.abort(...)` in a servicer still works as usual.

- Access: a binding may carry an `authenticate` hook (`common.access.Access`): it runs in the same
  wrapper before each call of that service's methods, with the full method name, the parsed request (None
  for a streamed request) and the call's context (peer certificate, metadata), and what it returns is the
  call's `caller.current_caller()`; an error it raises (UnauthenticatedError, PermissionDeniedError) ends
  the call before the servicer runs, so a refused call stores nothing. Services without a hook pay
  nothing for it.
- TLS: `credentials` (`transport.Transport.server_credentials`) makes the port a TLS one; without them
  it is plaintext. `health_port` adds a plaintext port serving health alone (for probes that cannot speak
  TLS, such as kubelet's), with the same states.

The mapping is not a per-call interceptor: each servicer method is wrapped once, when it is registered,
so a call pays one extra coroutine frame, ~0.2 µs (the same mapping as a grpc.aio.ServerInterceptor cost
~3.5 µs per call: a coroutine chain and a new handler each time). Handlers run on the event loop;
servicer methods should be `async def` (plain functions work but block the loop while they run).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from bacalhau_grpc.common import grpc_errors, reflection, telemetry
from bacalhau_grpc.common.caller import Authenticate, set_current_caller
from bacalhau_grpc.common.errors import BacalhauError, InvalidArgumentError

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
HEALTH_SERVICE = health.SERVICE_NAME
_WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}


@dataclass(frozen=True)
class ServiceBinding:
    """One service to serve: the generated `add_XServicer_to_server`, the servicer, the full service name,
    and optionally the hook that authenticates each call of it (`common.caller`)."""

    add_to_server: Callable[[Any, Any], None]
    servicer: object
    name: str
    authenticate: Authenticate | None = None


class _Stats:
    __slots__ = ("rpcs",)

    def __init__(self) -> None:
        self.rpcs = 0


# -------------------------------------------------------------------------------------- error mapping


async def _fail(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
    """Ends the call for `exc` (always raises grpc.aio.AbortError)."""
    if isinstance(exc, BacalhauError):
        status = grpc_errors.to_status(exc)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s failed: %s %s", method, status.code.name, status.details)
        await context.abort(status.code, status.details, status.trailing_metadata)
    if isinstance(exc, NotImplementedError):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "method not implemented")
    logger.error("unexpected error in %s", method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, grpc_errors.INTERNAL_MESSAGE)


def _as_coroutine_function(behavior: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(behavior):
        return behavior

    async def run(request: Any, context: Any) -> Any:
        result = behavior(request, context)
        if inspect.isawaitable(result):
            result = await result
        return result

    return run


def _before_servicer(
    method: str, authenticate: Authenticate | None, request_streaming: bool
) -> Callable[[Any, Any], None]:
    """What runs before every servicer method: a request that did not decode is INVALID_ARGUMENT, and the
    service's `authenticate` hook (if any) sets the call's caller or refuses the call."""
    if authenticate is None:
        return lambda request, context: _check_decoded(request)

    def before(request: Any, context: grpc.aio.ServicerContext) -> None:
        _check_decoded(request)
        set_current_caller(authenticate(method, None if request_streaming else request, context))

    return before


def _wrap_unary_response(
    behavior: Callable[..., Any],
    method: str,
    stats: _Stats,
    authenticate: Authenticate | None = None,
    request_streaming: bool = False,
) -> Callable[..., Any]:
    run = _as_coroutine_function(behavior)
    before = _before_servicer(method, authenticate, request_streaming)

    async def unary_response(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            before(request, context)
            return await run(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _fail(context, exc, method)
        finally:
            stats.rpcs += 1

    return unary_response


def _wrap_streaming_response(
    behavior: Callable[..., Any],
    method: str,
    stats: _Stats,
    authenticate: Authenticate | None = None,
    request_streaming: bool = False,
) -> Callable[..., Any]:
    before = _before_servicer(method, authenticate, request_streaming)

    if inspect.isasyncgenfunction(behavior):

        async def async_generator(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                before(request, context)
                async with contextlib.aclosing(behavior(request, context)) as responses:
                    async for response in responses:
                        yield response
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _fail(context, exc, method)
            finally:
                stats.rpcs += 1

        return async_generator

    async def writer(request: Any, context: grpc.aio.ServicerContext) -> None:
        # A coroutine writing with context.write, or a plain function returning an iterable.
        try:
            before(request, context)
            result = behavior(request, context)
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                if hasattr(result, "__aiter__"):
                    async for response in result:
                        await context.write(response)
                else:
                    for response in result:
                        await context.write(response)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _fail(context, exc, method)
        finally:
            stats.rpcs += 1

    return writer


class _Undecodable:
    """What a request that does not decode becomes, so that the call ends INVALID_ARGUMENT through the
    error mapping (grpc.aio would answer UNKNOWN for the deserializer's exception)."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, bad UTF-8 in a string field, ...
            return _Undecodable(str(exc) or type(exc).__name__)

    return deserialize


def _check_decoded(request: Any) -> None:
    if type(request) is _Undecodable:
        raise InvalidArgumentError(f"the request cannot be decoded: {request.error}")


def _wrap_handler(
    handler: grpc.RpcMethodHandler, method: str, stats: _Stats, authenticate: Authenticate | None = None
) -> grpc.RpcMethodHandler:
    """The same handler with its behaviour wrapped in the error mapping, the RPC counter and, when given,
    the authentication hook."""
    request_streaming, response_streaming = handler.request_streaming, handler.response_streaming
    kwargs = {
        "request_deserializer": _tolerant(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if not request_streaming and not response_streaming:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary_response(handler.unary_unary, method, stats, authenticate), **kwargs
        )
    if request_streaming and not response_streaming:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary_response(handler.stream_unary, method, stats, authenticate, True), **kwargs
        )
    if not request_streaming:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_streaming_response(handler.unary_stream, method, stats, authenticate), **kwargs
        )
    return grpc.stream_stream_rpc_method_handler(
        _wrap_streaming_response(handler.stream_stream, method, stats, authenticate, True), **kwargs
    )


class _HandlerCapture:
    """Stands in for the server while a generated `add_XServicer_to_server` registers its handlers."""

    def __init__(self) -> None:
        self.registered: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        self.generic: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.registered[service] = dict(handlers)


class _WrappingGenericHandler(grpc.GenericRpcHandler):
    """For registrations made only through a generic handler: wraps each method's handler once."""

    def __init__(
        self, inner: grpc.GenericRpcHandler, stats: _Stats, authenticate: Authenticate | None = None
    ) -> None:
        self._inner = inner
        self._stats = stats
        self._authenticate = authenticate
        self._cache: dict[str, grpc.RpcMethodHandler | None] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method not in self._cache:
            handler = self._inner.service(handler_call_details)
            self._cache[method] = (
                None if handler is None else _wrap_handler(handler, method, self._stats, self._authenticate)
            )
        return self._cache[method]


def _register(server: grpc.aio.Server, binding: ServiceBinding, stats: _Stats) -> None:
    capture = _HandlerCapture()
    binding.add_to_server(binding.servicer, capture)
    if capture.registered:
        if set(capture.registered) != {binding.name}:
            raise ValueError(f"service binding {binding.name!r} registered {sorted(capture.registered)}")
        wrapped = {
            name: _wrap_handler(handler, f"/{binding.name}/{name}", stats, binding.authenticate)
            for name, handler in capture.registered[binding.name].items()
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(binding.name, wrapped),))
        server.add_registered_method_handlers(binding.name, wrapped)
    elif capture.generic:
        server.add_generic_rpc_handlers(
            tuple(_WrappingGenericHandler(h, stats, binding.authenticate) for h in capture.generic)
        )
    else:
        raise ValueError(f"service binding {binding.name!r} registered no handlers")


# ---------------------------------------------------------------------------------------------- server


def server_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    """The server's channel options: message size, keepalive matching `channels.CHANNEL_OPTIONS`."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # One server per port: without this, a second server on a busy fixed port binds silently.
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Clients ping idle connections every 30 s: accept pings down to every 10 s.
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


def _host_port(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


class RunningServer:
    """A started server: where it listens, how many RPCs it served, and how to stop it."""

    def __init__(
        self,
        server: grpc.aio.Server,
        health_servicer: Any,
        *,
        component: str,
        node_id: str,
        host: str,
        port: int,
        service_names: Sequence[str],
        stats: _Stats,
        health_server: grpc.aio.Server | None = None,
        health_port: int = 0,
    ) -> None:
        self.server = server
        # The plaintext port serving health alone (probes that cannot speak TLS), if any.
        self.health_server = health_server
        self.health_port = health_port
        self.component = component
        self.node_id = node_id
        self.port = port
        # The address to dial this server at: a wildcard bind is reached through the loopback.
        self.address = _host_port("127.0.0.1" if host in _WILDCARD_HOSTS else host, port)
        self.service_names = tuple(service_names)
        self._health = health_servicer
        self._stats = stats
        self._stop_task: asyncio.Task[None] | None = None

    @property
    def rpc_count(self) -> int:
        """RPCs of the served services that finished (successfully or not); health and reflection excluded."""
        return self._stats.rpcs

    async def stop(self, grace: float = 5.0) -> None:
        """Health NOT_SERVING, then stop: in-flight RPCs get `grace` seconds, new ones are refused.

        Safe to call more than once (later calls wait for the first stop).
        """
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop(grace))
        await asyncio.shield(self._stop_task)

    async def _stop(self, grace: float) -> None:
        await self._health.enter_graceful_shutdown()
        if self.health_server is not None:
            await self.health_server.stop(0)
        await self.server.stop(grace)
        logger.info("%s stopped (%s, %d RPCs served)", self.component, self.address, self._stats.rpcs)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Waits until the server stopped: True once it has, False when `timeout` ran out first.

        (grpc.aio's own `wait_for_termination` returns the opposite: whether it timed out.)
        """
        timed_out = await self.server.wait_for_termination(timeout)
        return not timed_out


# ------------------------------------------------------------------------------- RPC duration metric


def _status_name(context: Any, failed: BaseException | None) -> str:
    """The name of the status code a call ended with (OK when none was set and it did not fail)."""
    code = None
    with contextlib.suppress(Exception):
        code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return status.name
    if failed is None:
        return "OK"
    if isinstance(failed, asyncio.CancelledError):
        return "CANCELLED"
    return "UNKNOWN"


@contextlib.contextmanager
def _timed(method: str, context: Any, node_id: str) -> Iterator[None]:
    """Records the served call's duration and status (`telemetry.record_rpc`) when the block ends."""
    start, failed = time.perf_counter(), None
    try:
        yield
    except BaseException as exc:
        failed = exc
        raise
    finally:
        telemetry.record_rpc(method, _status_name(context, failed), time.perf_counter() - start, node_id)


class _RpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Times every served call into `rpc.server.duration` (telemetry.record_rpc) with its method and
    status code; health and reflection calls are not measured. (OpenTelemetry's gRPC instrumentation
    records spans only.)"""

    def __init__(self, node_id: str) -> None:
        self._node_id = node_id

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if isinstance(method, bytes):
            method = method.decode()
        if handler is None or method.lstrip("/").startswith(telemetry.UNTRACED_SERVICE_PREFIXES):
            return handler
        node_id = self._node_id
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.response_streaming:
            behavior = handler.stream_stream if handler.request_streaming else handler.unary_stream

            if inspect.isasyncgenfunction(behavior):

                async def streaming(request: Any, context: Any) -> Any:
                    with _timed(method, context, node_id):
                        async for response in behavior(request, context):
                            yield response

            else:  # a coroutine writing with context.write

                async def streaming(request: Any, context: Any) -> Any:  # type: ignore[misc]
                    with _timed(method, context, node_id):
                        await behavior(request, context)

            if handler.request_streaming:
                return grpc.stream_stream_rpc_method_handler(streaming, **kwargs)
            return grpc.unary_stream_rpc_method_handler(streaming, **kwargs)

        behavior = handler.stream_unary if handler.request_streaming else handler.unary_unary

        async def unary(request: Any, context: Any) -> Any:
            with _timed(method, context, node_id):
                return await behavior(request, context)

        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(unary, **kwargs)
        return grpc.unary_unary_rpc_method_handler(unary, **kwargs)


async def start_server(
    *,
    component: str,
    node_id: str,
    services: list[ServiceBinding],
    host: str = "127.0.0.1",
    port: int = 0,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    credentials: grpc.ServerCredentials | None = None,
    health_port: int | None = None,
    max_concurrent_rpcs: int | None = None,
) -> RunningServer:
    """Starts a grpc.aio server on host:port (port 0: a free port) serving `services`, health and reflection.

    Call `telemetry.setup_telemetry` first: the tracing interceptors are picked when the server starts.
    Raises OSError when the address cannot be bound. `max_concurrent_rpcs`: the most calls served at once
    (None: no cap); beyond it gRPC itself answers RESOURCE_EXHAUSTED.
    """
    stats = _Stats()
    interceptors = telemetry.server_interceptors()
    if telemetry.metrics_enabled():
        interceptors.append(_RpcMetricsInterceptor(node_id))
    server = grpc.aio.server(
        interceptors=interceptors or None,
        options=server_options(max_message_bytes),
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    names = [binding.name for binding in services]
    if len(set(names)) != len(names):
        raise ValueError(f"a service is bound twice: {names}")
    for binding in services:
        _register(server, binding, stats)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    listed = reflection.enable_reflection(server, [*names, HEALTH_SERVICE])

    bind = _host_port(host, port)
    try:
        if credentials is None:
            bound_port = server.add_insecure_port(bind)
        else:
            bound_port = server.add_secure_port(bind, credentials)
    except RuntimeError as error:
        raise OSError(f"{component}: cannot listen on {bind}: {error}") from error
    health_server, bound_health_port = None, 0
    if health_port is not None:
        health_server, bound_health_port = await _start_health_only(
            health_servicer, host, health_port, component
        )
    for name in ("", *names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await server.start()
    running = RunningServer(
        server,
        health_servicer,
        component=component,
        node_id=node_id,
        host=host,
        port=bound_port,
        service_names=listed,
        stats=stats,
        health_server=health_server,
        health_port=bound_health_port,
    )
    logger.info(
        "%s serving on %s (%s): %s",
        component,
        running.address,
        "plaintext" if credentials is None else "TLS",
        ", ".join(names),
        extra={"node_id": node_id},
    )
    return running


async def _start_health_only(
    health_servicer: Any, host: str, port: int, component: str
) -> tuple[grpc.aio.Server, int]:
    """A plaintext server on host:port (0: a free port) serving `grpc.health.v1` alone, with the main
    server's health states: what Kubernetes' gRPC probes call, as they cannot speak TLS. Nothing else is
    on it."""
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bind = _host_port(host, port)
    try:
        bound = server.add_insecure_port(bind)
    except RuntimeError as error:
        raise OSError(f"{component}: cannot listen on {bind} (health): {error}") from error
    await server.start()
    return server, bound


@dataclass
class RunningNode:
    """A started node (requester, compute or verifier): its ID and its server; `address` and `port` are
    where it listens. Each service's app extends it with its parts and its own `stop`."""

    node_id: str
    server: RunningServer

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float = 5.0) -> None:
        await self.server.stop(grace)
