"""Errors raised by domain code; the transport layer maps each to a gRPC status code."""


class BacalhauError(Exception):
    """Base of every error this project raises on purpose."""


class InvalidArgumentError(BacalhauError, ValueError):
    """Input that cannot be accepted. `field` names what is wrong, when one field is to blame.

    `problems` lists every problem found, each an InvalidArgumentError naming its own field: just this
    error for a single problem, or the problems an error made by `invalid_argument` stands for."""

    _problems: list["InvalidArgumentError"]  # set by `invalid_argument` only

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message

    @property
    def problems(self) -> list["InvalidArgumentError"]:
        return getattr(self, "_problems", None) or [self]


def invalid_argument(problems: "list[InvalidArgumentError]") -> InvalidArgumentError:
    """One error for every problem found in an input: the problem itself when there is one; else an
    error whose message lists them all ("3 problems: A: ...; B: ...") and whose `problems` are they."""
    if not problems:
        raise ValueError("invalid_argument needs at least one problem")
    if len(problems) == 1:
        return problems[0]
    error = InvalidArgumentError(f"{len(problems)} problems: " + "; ".join(str(p) for p in problems))
    error._problems = list(problems)
    return error


class LimitExceededError(InvalidArgumentError):
    """Input over one of the model's size limits. `limit` names the limit."""

    def __init__(self, message: str, *, limit: str, field: str = "") -> None:
        super().__init__(message, field=field)
        self.limit = limit


class NotFoundError(BacalhauError):
    """Something asked for by ID does not exist (a job, an execution, a node)."""


class AlreadyExistsError(BacalhauError):
    """Something to be created exists already."""


class FailedPreconditionError(BacalhauError):
    """The request is valid but the thing it acts on is in the wrong state for it."""


class PermissionDeniedError(BacalhauError):
    """The caller is known but may not do this (e.g. cancel another client's job)."""


class UnauthenticatedError(BacalhauError):
    """The caller's identity could not be established (bad key, ClientID or signature)."""


class ResourceExhaustedError(BacalhauError):
    """A limit of the service was reached (capacity, queue length). `retry_after`: seconds after which a
    retry may succeed, when the service can tell (sent as a `google.rpc.RetryInfo`), else None."""

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnavailableError(BacalhauError):
    """A service this one depends on cannot be reached now; retrying later may work."""


class DeadlineExceededError(BacalhauError):
    """A call to another service ran out of time."""
