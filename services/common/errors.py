"""Errors raised by domain code; the transport layer maps each to a gRPC status code."""


class BacalhauError(Exception):
    """Base of every error this project raises on purpose."""


class InvalidArgumentError(BacalhauError, ValueError):
    """Input that cannot be accepted. `field` names what is wrong, when one field is to blame."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


class LimitExceededError(InvalidArgumentError):
    """Input over one of the model's size limits. `limit` names the limit."""

    def __init__(self, message: str, *, limit: str, field: str = "") -> None:
        super().__init__(message, field=field)
        self.limit = limit
