"""The verifier's settings: defaults, then `BACALHAU_<FIELD>` environment variables, then flags."""

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bacalhau_grpc.common.errors import InvalidArgumentError

ENV_PREFIX = "BACALHAU_"


@dataclass(frozen=True)
class VerifierSettings:
    # The address to listen on.
    host: str = "127.0.0.1"
    # The port to listen on; 0 picks a free one.
    port: int = 0
    # A plaintext port serving gRPC health alone, for probes that cannot speak TLS (Kubernetes'); -1:
    # none, 0: a free one.
    health_port: int = -1
    # The verifier's node ID; generated at each start when empty ("verifier-" + 12 hex characters).
    node_id: str = ""
    # TLS: this node's certificate and key and the cluster CA (PEM files; `bacalhau-grpc certs`). With
    # them the node protocol is mutual TLS; without them the node serves only with insecure set.
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    # Serve and call in plaintext, without certificates: development only (logged; a warning off
    # loopback).
    insecure: bool = False

    def __post_init__(self) -> None:
        if not self.host:
            raise _invalid("host", "must not be empty")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise _invalid("port", f"{self.port!r} is not a TCP port (0 to 65535)")
        health = self.health_port
        if isinstance(health, bool) or not isinstance(health, int) or not -1 <= health <= 65535:
            raise _invalid("health_port", f"{health!r} is not a TCP port (-1 for none, 0 to 65535)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> "VerifierSettings":
        """Defaults, overridden by `BACALHAU_HOST`, `BACALHAU_PORT` and `BACALHAU_NODE_ID`, then by
        `overrides` (command-line flags). Overrides whose value is None are ignored (a flag not given).
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for name, f in fields.items():
            env_name = ENV_PREFIX + name.upper()
            if env_name in environ:
                values[name] = _convert(environ[env_name], f.type, name, env_name)
        for name, value in overrides.items():
            if name not in fields:
                raise TypeError(f"unknown verifier setting {name!r}")
            if value is not None:
                values[name] = value
        return cls(**values)


def _invalid(name: str, message: str) -> InvalidArgumentError:
    env_name = ENV_PREFIX + name.upper()
    flag = "--" + name.replace("_", "-")
    return InvalidArgumentError(f"{message} (setting {name}: {env_name} or {flag})", field=name)


def _convert(text: str, kind: Any, name: str, env_name: str) -> Any:
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    if kind_name == "int":
        try:
            return int(text)
        except ValueError:
            raise InvalidArgumentError(
                f"expected a whole number, got {text!r} (from {env_name})", field=name
            ) from None
    if kind_name == "bool":
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
            return lowered in ("1", "true", "yes", "on")
        raise InvalidArgumentError(f"expected true or false, got {text!r} (from {env_name})", field=name)
    return text
