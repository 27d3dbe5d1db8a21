"""The one mapping between our typed errors and gRPC statuses, used by servers and clients alike.

Server side: a `BacalhauError` becomes a canonical status code, its message the status details, and a
`google.rpc.Status` carrying a `google.rpc.ErrorInfo` in the `grpc-status-details-bin` trailer
(grpcio-status' rich status): reason = the class name in UPPER_SNAKE without `_ERROR`
(`InvalidArgumentError` → `INVALID_ARGUMENT`, `LimitExceededError` → `LIMIT_EXCEEDED`), domain
`bacalhau-grpc`, metadata `field`/`limit` when the error names them; an input with several problems
also carries a `google.rpc.BadRequest` with one field violation per problem (at most MAX_VIOLATIONS); a
ResourceExhaustedError with a `retry_after` carries a `google.rpc.RetryInfo` (restored on the client).

Client side: a failed call becomes the matching `BacalhauError` again, with `str(exc)` equal to the
server's details (`str()` of the server's error, cut to 1 KiB), `field`/`limit` restored from the
ErrorInfo, and an InvalidArgumentError's `problems` from the BadRequest. Every mapped exception also
carries `code` (the `grpc.StatusCode`) and `error_info` (the `ErrorInfo`, or None when the peer sent none).
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from bacalhau_grpc.common.errors import (
    AlreadyExistsError,
    BacalhauError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from bacalhau_grpc.pb.batch.v1 import outcome_pb2

M = TypeVar("M", bound=Message)

DOMAIN = "bacalhau-grpc"
DETAILS_METADATA_KEY = "grpc-status-details-bin"
INTERNAL_MESSAGE = "internal error"
# Longest status details and ErrorInfo metadata value sent, in UTF-8 bytes (see `to_status`).
MAX_DETAILS_BYTES = 1024
MAX_METADATA_BYTES = 256
# Most field violations sent for one invalid input, and the longest description of each: with the
# details they stay well inside gRPC's 8 KiB default metadata limit (binary trailers travel in base64).
MAX_VIOLATIONS = 16
MAX_VIOLATION_BYTES = 160

# The canonical code of each error family; a subclass gets the code of its nearest listed ancestor.
CODE_BY_ERROR: dict[type[BacalhauError], grpc.StatusCode] = {
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    LimitExceededError: grpc.StatusCode.INVALID_ARGUMENT,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UnavailableError: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceededError: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class RemoteError(BacalhauError):
    """A peer failed with a status no typed error stands for (INTERNAL, UNKNOWN, UNIMPLEMENTED, ...)."""


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def reason_for(cls: type[BaseException]) -> str:
    """`InvalidArgumentError` → `INVALID_ARGUMENT`; `JobNotFoundError` → `JOB_NOT_FOUND`."""
    snake = _CAMEL_BOUNDARY.sub("_", cls.__name__).upper()
    return snake.removesuffix("_ERROR") or snake


def _code_of(cls: type[BaseException]) -> grpc.StatusCode:
    for base in cls.__mro__:
        code = CODE_BY_ERROR.get(base)
        if code is not None:
            return code
    # A BacalhauError outside every family: raised on purpose, so its message may be shown.
    return grpc.StatusCode.INTERNAL


_CLASS_INFO: dict[type[BaseException], tuple[grpc.StatusCode, str]] = {}


def _class_info(cls: type[BaseException]) -> tuple[grpc.StatusCode, str]:
    info = _CLASS_INFO.get(cls)
    if info is None:
        info = _CLASS_INFO[cls] = (_code_of(cls), reason_for(cls))
    return info


def code_for(exc: BacalhauError) -> grpc.StatusCode:
    """The canonical status code of an error."""
    return _class_info(type(exc))[0]


def error_info_for(exc: BacalhauError) -> error_details_pb2.ErrorInfo:
    """The `google.rpc.ErrorInfo` describing an error (reason, domain, field/limit metadata)."""
    info = error_details_pb2.ErrorInfo(reason=_class_info(type(exc))[1], domain=DOMAIN)
    field = getattr(exc, "field", "")
    if field:
        info.metadata["field"] = truncate(str(field), MAX_METADATA_BYTES)
    limit = getattr(exc, "limit", "")
    if limit:
        info.metadata["limit"] = truncate(str(limit), MAX_METADATA_BYTES)
    return info


def truncate(text: str, max_bytes: int = MAX_DETAILS_BYTES) -> str:
    """`text` cut to at most `max_bytes` of UTF-8 (ending in "..." when cut), on a character boundary."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    return data[: max_bytes - 3].decode(errors="ignore") + "..."


def to_status(exc: BacalhauError) -> grpc.Status:
    """The rich status a server ends a call with: code, details = str(exc), ErrorInfo in the trailer.

    Details longer than MAX_DETAILS_BYTES are cut: gRPC refuses trailers over 16 KiB (and may refuse
    them over 8 KiB), and the message travels twice (grpc-message, percent-encoded, and in the Status).
    """
    code = code_for(exc)
    status = status_pb2.Status(code=code.value[0], message=truncate(str(exc)))
    status.details.add().Pack(error_info_for(exc))
    if isinstance(exc, InvalidArgumentError) and len(exc.problems) > 1:
        status.details.add().Pack(bad_request_for(exc))
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None and retry_after >= 0:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(int(retry_after * 1e9))
        status.details.add().Pack(retry)
    return rpc_status.to_status(status)


def bad_request_for(exc: InvalidArgumentError) -> error_details_pb2.BadRequest:
    """One field violation per problem of an invalid input (the first MAX_VIOLATIONS; a last one says
    how many more were left out)."""
    request = error_details_pb2.BadRequest()
    problems = exc.problems
    for problem in problems[:MAX_VIOLATIONS]:
        request.field_violations.add(
            field=truncate(problem.field, MAX_VIOLATION_BYTES),
            description=truncate(problem.reason, MAX_VIOLATION_BYTES),
        )
    if len(problems) > MAX_VIOLATIONS:
        request.field_violations.add(description=f"and {len(problems) - MAX_VIOLATIONS} more problems")
    return request


# ---------------------------------------------------------------------------------------------- client


def _known_reasons() -> dict[str, type[BacalhauError]]:
    return {reason_for(cls): cls for cls in CODE_BY_ERROR}


_ERROR_BY_REASON = _known_reasons()

_ERROR_BY_CODE: dict[grpc.StatusCode, type[BacalhauError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def rich_status(trailing_metadata: Any) -> status_pb2.Status | None:
    """The `google.rpc.Status` in a call's trailing metadata, or None (also when it is malformed)."""
    if not trailing_metadata:
        return None
    for key, value in trailing_metadata:
        if key == DETAILS_METADATA_KEY:
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a peer's garbage must not hide the status code itself
                return None
    return None


def _detail(status: status_pb2.Status | None, kind: type[M]) -> M | None:
    """The first detail of this kind among a rich status' details."""
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(kind.DESCRIPTOR):
            found = kind()
            detail.Unpack(found)
            return found
    return None


def error_info_from(status: status_pb2.Status | None) -> error_details_pb2.ErrorInfo | None:
    """The first ErrorInfo among a rich status' details."""
    return _detail(status, error_details_pb2.ErrorInfo)


def _error_class(code: grpc.StatusCode, info: error_details_pb2.ErrorInfo | None) -> type[BacalhauError]:
    if info is not None and info.domain == DOMAIN:
        cls = _ERROR_BY_REASON.get(info.reason)
        if cls is not None and CODE_BY_ERROR[cls] == code:
            return cls
    return _ERROR_BY_CODE.get(code, RemoteError)


def error_from_status(
    code: grpc.StatusCode, details: str | None, trailing_metadata: Any = None
) -> BacalhauError:
    """The typed error for a failed call's status; `str()` of it is exactly the server's details."""
    details = details or ""
    status = rich_status(trailing_metadata)
    info = error_info_from(status)
    cls = _error_class(code, info)
    exc = cls.__new__(cls)
    BaseException.__init__(exc, details)  # bypasses subclass __init__ so str(exc) == details
    exc.code = code  # type: ignore[attr-defined]
    exc.error_info = info  # type: ignore[attr-defined]
    if issubclass(cls, ResourceExhaustedError):
        retry = _detail(status, error_details_pb2.RetryInfo)
        exc.retry_after = retry.retry_delay.ToNanoseconds() / 1e9 if retry is not None else None  # type: ignore[attr-defined]
    if issubclass(cls, InvalidArgumentError):
        field = info.metadata.get("field", "") if info is not None else ""
        exc.field = field  # type: ignore[attr-defined]
        prefix = f"{field}: "
        exc.reason = details[len(prefix) :] if field and details.startswith(prefix) else details  # type: ignore[attr-defined]
        if issubclass(cls, LimitExceededError):
            exc.limit = info.metadata.get("limit", "") if info is not None else ""  # type: ignore[attr-defined]
        request = _detail(status, error_details_pb2.BadRequest)
        if request is not None and len(request.field_violations) > 1:
            exc._problems = [  # type: ignore[attr-defined]
                InvalidArgumentError(v.description, field=v.field) for v in request.field_violations
            ]
    return exc


def from_rpc_error(error: grpc.RpcError) -> BacalhauError:
    """The typed error for a failed call (`grpc.aio.AioRpcError` or a sync `grpc.Call` error)."""
    return error_from_status(error.code(), error.details(), error.trailing_metadata())


# ------------------------------------------------------------------------------------- batch items


async def outcome_of(action: Callable[[], Any], *, logger: logging.Logger, what: str) -> outcome_pb2.Outcome:
    """Runs one item of a batch call (`action()`, awaited when it returns an awaitable): an empty Outcome
    when it succeeds, else the code and message a call of its own would have failed with (an unexpected
    error is logged and reported as INTERNAL)."""
    try:
        result = action()
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        return outcome_for(exc, logger=logger, what=what)
    return outcome_pb2.Outcome()


def outcome_for(error: Exception | None, *, logger: logging.Logger, what: str) -> outcome_pb2.Outcome:
    """The Outcome of one batch item that ended with `error` (None: it succeeded); see `outcome_of`."""
    if error is None:
        return outcome_pb2.Outcome()
    if isinstance(error, BacalhauError):
        return outcome_pb2.Outcome(code=code_for(error).name, message=truncate(str(error)))
    logger.error("unexpected error in %s", what, exc_info=error)
    return outcome_pb2.Outcome(code=grpc.StatusCode.INTERNAL.name, message=INTERNAL_MESSAGE)


def error_from_outcome(outcome: outcome_pb2.Outcome) -> BacalhauError | None:
    """The typed error of a failed batch item, or None when it succeeded."""
    if not outcome.code:
        return None
    code = getattr(grpc.StatusCode, outcome.code, grpc.StatusCode.UNKNOWN)
    return error_from_status(code, outcome.message)
