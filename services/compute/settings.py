"""The compute node's settings: defaults, then `BACALHAU_<FIELD>` environment variables, then overrides
(CLI flags). Every value is checked when the settings are made; an error names the setting."""

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import resources as res

ENV_PREFIX = "BACALHAU_"
DEFAULT_DATA_DIR = Path.home() / ".bacalhau-grpc" / "compute"
_HEX = re.compile(r"[0-9a-fA-F]+")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass
class ComputeSettings:
    # The address to listen on.
    host: str = "127.0.0.1"
    # The port to listen on; 0 picks a free one.
    port: int = 0
    # Where the node keeps its SQLite file (compute.db) and its node_id.
    data_dir: Path = field(default_factory=lambda: DEFAULT_DATA_DIR)
    # The node's ID; when empty, the one saved in data_dir, else a new "node-" + 12 hex characters.
    node_id: str = ""
    # The requester's host:port (required).
    requester_address: str = ""
    # The address the requester dials this node at; empty: the address the server listens on.
    advertise_address: str = ""
    # Noop executor knobs: what every run outputs, its exit code, and how long it takes (seconds).
    noop_stdout: str = ""
    noop_stderr: str = ""
    noop_exit_code: int = 0
    noop_delay: float = 0.0
    # When set, every noop run fails with this message (a compute failure, not a result; tests).
    noop_error: str = ""
    # Hex hash proposed to the deterministic verifier instead of the computed one (tests).
    noop_result_hash: str = ""
    # Propose a hash no other node proposes (tests of the deterministic verifier).
    bad_actor: bool = False
    # What the node offers in total (resource strings); empty: 80 % of the machine (GPU 0).
    total_cpu: str = ""
    total_memory: str = ""
    total_disk: str = ""
    total_gpu: str = ""
    # The most one job may ask for; empty: the total.
    job_cpu: str = ""
    job_memory: str = ""
    job_disk: str = ""
    job_gpu: str = ""
    # The range of job timeouts (seconds) the node bids on; a job without a timeout always passes.
    min_job_timeout: float = 0.5
    max_job_timeout: float = 3600.0
    # The deadline of every call to the requester (seconds).
    call_timeout: float = 10.0

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser()
        for f in dataclasses.fields(self):
            kind = _kind(f.type)
            value = getattr(self, f.name)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, f.name, float(value))
        self.validate()

    def validate(self) -> None:
        """Raises InvalidArgumentError (field = the setting's name) for a value that cannot work."""
        if not self.requester_address.strip():
            raise InvalidArgumentError("the requester's host:port is required", field="requester_address")
        if not 0 <= self.port <= 65535:
            raise InvalidArgumentError(f"{self.port} is not a port number (0-65535)", field="port")
        for name in ("noop_delay", "min_job_timeout", "max_job_timeout"):
            _non_negative(name, getattr(self, name))
        _positive("call_timeout", self.call_timeout)
        if self.max_job_timeout < self.min_job_timeout:
            raise InvalidArgumentError(
                f"{self.max_job_timeout:g} is below min_job_timeout {self.min_job_timeout:g}",
                field="max_job_timeout",
            )
        if self.noop_result_hash and not _HEX.fullmatch(self.noop_result_hash):
            raise InvalidArgumentError(
                f"{self.noop_result_hash!r} is not hexadecimal", field="noop_result_hash"
            )
        for prefix in ("total_", "job_"):
            res.parse_cpu(getattr(self, f"{prefix}cpu"), field=f"{prefix}cpu")
            res.parse_bytes(getattr(self, f"{prefix}memory"), field=f"{prefix}memory")
            res.parse_bytes(getattr(self, f"{prefix}disk"), field=f"{prefix}disk")
            res.parse_gpu(getattr(self, f"{prefix}gpu"), field=f"{prefix}gpu")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "compute.db"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> "ComputeSettings":
        """Defaults, overridden by `BACALHAU_<FIELD>` variables (e.g. `BACALHAU_NOOP_DELAY=2`), then by
        `overrides`; overrides whose value is None are ignored (a flag that was not given)."""
        values: dict[str, Any] = {}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name, f in fields.items():
            env_name = ENV_PREFIX + name.upper()
            if env_name in environ:
                values[name] = _convert(environ[env_name], _kind(f.type), env_name)
        for name, value in overrides.items():
            if name not in fields:
                raise TypeError(f"unknown compute setting {name!r}")
            if value is not None:
                values[name] = value
        return cls(**values)


def _kind(annotation: Any) -> Any:
    return {"int": int, "float": float, "bool": bool, "str": str, "Path": Path}.get(annotation, annotation)


def _convert(text: str, kind: Any, env_name: str) -> Any:
    if kind is bool:
        folded = text.strip().lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
        raise InvalidArgumentError(f"expected true or false, got {text!r}", field=env_name)
    if kind in (int, float):
        try:
            return kind(text.strip())
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise InvalidArgumentError(f"expected {what}, got {text!r}", field=env_name) from None
    if kind is Path:
        return Path(text)
    return text


def _non_negative(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"{value!r} is not a number of seconds >= 0", field=name)


def _positive(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgumentError(f"{value!r} is not a number of seconds > 0", field=name)
