"""The verifier's settings: defaults, then a config file, `BACALHAU_<SETTING>` environment variables and flags
(`common.settings`)."""

from dataclasses import dataclass

from bacalhau_grpc.common.settings import Settings, check_observability
from bacalhau_grpc.common.settings import setting_error as _invalid


@dataclass(frozen=True)
class VerifierSettings(Settings):
    # The address to listen on.
    host: str = "127.0.0.1"
    # The port to listen on; 0 picks a free one.
    port: int = 0
    # A plaintext port serving gRPC health alone, for probes that cannot speak TLS (Kubernetes'); -1:
    # none, 0: a free one.
    health_port: int = -1
    # The port of the Prometheus `/metrics` endpoint (HTTP, plaintext, on `host`); -1: none, 0: a free one.
    metrics_port: int = -1
    # How log lines are written: text (one line per record) or json (one JSON object per line).
    log_format: str = "text"
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
        check_observability(self)
