"""Opaque page tokens (of ListJobs and the event pages): base64url of a small JSON document."""

import base64
import json
from typing import Any

from bacalhau_grpc.common.errors import InvalidArgumentError


def encode_token(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str, field_name: str = "page_token") -> dict[str, Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError):
        raise InvalidArgumentError(
            "not a page token from this service: pass the next_page_token of the previous page",
            field=field_name,
        ) from None
    if not isinstance(data, dict):
        raise InvalidArgumentError(
            "not a page token from this service: pass the next_page_token of the previous page",
            field=field_name,
        )
    return data
