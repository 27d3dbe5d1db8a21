"""The compute node's settings: defaults, then a config file, `BACALHAU_<SETTING>` environment variables and
flags (`common.settings`). Every value is checked when the settings are made; an error names the setting."""

import ipaddress
import math
import re
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.ipfs.client import parse_api_address
from bacalhau_grpc.common.model import resources as res
from bacalhau_grpc.common.settings import Settings, check_observability

UNSEALED_PLACEHOLDER = "{{.CID}}"
DEFAULT_DATA_DIR = Path.home() / ".bacalhau-grpc" / "compute"
DEFAULT_WASM_CACHE_DIR = Path.home() / ".cache" / "bacalhau-grpc" / "wasm"
_HEX = re.compile(r"[0-9a-fA-F]+")
# The values of job_selection_data_locality.
DATA_LOCALITIES = ("local", "anywhere")


@dataclass
class ComputeSettings(Settings):
    # The address to listen on.
    host: str = "127.0.0.1"
    # The port to listen on; 0 picks a free one.
    port: int = 0
    # Where the node keeps its SQLite file (compute.db) and its node_id.
    data_dir: Path = field(default_factory=lambda: DEFAULT_DATA_DIR)
    # The node's ID; when empty, the one saved in data_dir, else a new "node-" + 12 hex characters.
    node_id: str = ""
    # A plaintext port serving gRPC health alone, for probes that cannot speak TLS (Kubernetes'); -1:
    # none, 0: a free one.
    health_port: int = -1
    # The port of the Prometheus `/metrics` endpoint (HTTP, plaintext, on `host`); -1: none, 0: a free one.
    metrics_port: int = -1
    # How log lines are written: text (one line per record) or json (one JSON object per line).
    log_format: str = "text"
    # The requester's host:port (required): with TLS, its node port.
    requester_address: str = ""
    # TLS: this node's certificate and key and the cluster CA (PEM files; `bacalhau-grpc certs`). With
    # them the node protocol is mutual TLS; without them the node serves only with insecure set.
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    # Serve and call in plaintext, without certificates: development only (logged; a warning off
    # loopback).
    insecure: bool = False
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
    # With bad_actor: the shard indexes to lie on, comma-separated (e.g. "2" or "0,3"); empty: every shard.
    bad_actor_shards: str = ""
    # What the node offers in total (resource strings); empty: 80 % of the machine's CPU, memory and
    # free disk under data_dir, and the GPUs `nvidia-smi` lists.
    limit_total_cpu: str = ""
    limit_total_memory: str = ""
    limit_total_disk: str = ""
    limit_total_gpu: str = ""
    # The most one job may ask for; empty: the total. Not below the default job usage (100m, 100Mb).
    limit_job_cpu: str = ""
    limit_job_memory: str = ""
    limit_job_disk: str = ""
    limit_job_gpu: str = ""
    # The node bids while running + queued executions and the job stay within this many times its
    # total; the excess waits in the run queue (>= 1; 1 = no over-commit; v0.3: 2).
    over_commit_factor: float = 2.0
    # The range of job timeouts (seconds) the node bids on; a job without a timeout always passes.
    min_job_timeout: float = 0.5
    max_job_timeout: float = 3600.0
    # "local": bid only on jobs whose inputs are all on this node; "anywhere": wherever they are.
    # v0.3's flag defaulted to "local" but treated both as "anywhere"; here "local" means local, and
    # the default is "anywhere" so a fresh node takes jobs.
    job_selection_data_locality: str = "anywhere"
    # Refuse jobs without inputs.
    job_selection_reject_stateless: bool = False
    # An http(s) URL asked about each job (POST of the job as JSON); any answer but 200 refuses it.
    job_selection_probe_http: str = ""
    # A command run with `bash -c` for each job (the job as JSON on stdin and in
    # $BACALHAU_JOB_SELECTION_PROBE_DATA); a non-zero exit code refuses it.
    job_selection_probe_exec: str = ""
    # How long a probe may take (seconds) before the job is refused; keep it below the requester's
    # call timeout.
    job_selection_probe_timeout: float = 5.0
    # The deadline of every call to the requester (seconds).
    call_timeout: float = 10.0
    # Where unsealed Filecoin data lies on this machine, a template with {{.CID}} such as
    # /data/unsealed/{{.CID}}; empty: FilecoinUnsealed volumes are not served.
    filecoin_unsealed_path: str = ""
    # URLDownload inputs: how long one download may take (seconds, retries included) and the largest
    # file it may bring (a size such as 10Gb).
    url_download_timeout: float = 300.0
    url_download_max_bytes: str = "10Gb"
    # The IPFS daemon's API this node uses for IPFS inputs and the IPFS publisher, as a URL
    # (http://127.0.0.1:5001) or a multiaddr (/ip4/127.0.0.1/tcp/5001); empty: none (IPFS content then
    # comes from the node's own content store).
    ipfs_connect: str = ""
    # The Docker engine to run Docker jobs on (e.g. unix:///var/run/docker.sock); empty: DOCKER_HOST, else
    # the default socket. Without a reachable engine the node does not bid on Docker jobs.
    docker_host: str = ""
    # Where compiled WebAssembly modules (the Python interpreter among them) are cached; shared by the
    # nodes of one machine, so the interpreter is compiled once (seconds), then loaded (milliseconds).
    wasm_cache_dir: Path = field(default_factory=lambda: DEFAULT_WASM_CACHE_DIR)
    # The user every Docker job's container runs as, UID or UID:GID (numbers); empty: the image's user.
    docker_user: str = ""
    # URLDownload inputs never reach loopback, private, link-local, multicast, reserved or metadata
    # addresses, except in these networks (comma-separated CIDRs, e.g. 127.0.0.0/8 for a local file
    # server); and a job whose runs would download more than url_download_max_inputs URLs is refused.
    url_download_allow_networks: str = ""
    url_download_max_inputs: int = 100
    # Retention (seconds; 0 = forever). Ended executions (Completed, Failed, Cancelled) are removed this
    # long after their last change: their rows and history, any folder left under data_dir/executions,
    # and the content (published results, fetched contexts) no kept execution needs.
    execution_retention: float = 7 * 86_400.0
    # A bid neither accepted nor rejected this long after it was made expires (Cancelled, "bid expired");
    # keep it equal to the requester's negotiation_timeout (120 s by default). 0: bids never expire.
    bid_expiry: float = 120.0
    # How often the retention collector runs (seconds).
    retention_interval: float = 60.0

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser()
        self.wasm_cache_dir = Path(self.wasm_cache_dir).expanduser()
        for name, kind in typing.get_type_hints(type(self)).items():
            value = getattr(self, name)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, float(value))
        self.validate()

    def validate(self) -> None:
        """Raises InvalidArgumentError (field = the setting's name) for a value that cannot work."""
        if not self.requester_address.strip():
            raise InvalidArgumentError("the requester's host:port is required", field="requester_address")
        if not 0 <= self.port <= 65535:
            raise InvalidArgumentError(f"{self.port} is not a port number (0-65535)", field="port")
        if not -1 <= self.health_port <= 65535:
            raise InvalidArgumentError(
                f"{self.health_port} is not a port number (-1 for none, 0-65535)", field="health_port"
            )
        check_observability(self)
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
        for prefix in ("limit_total_", "limit_job_"):
            res.parse_cpu(getattr(self, f"{prefix}cpu"), field=f"{prefix}cpu")
            res.parse_bytes(getattr(self, f"{prefix}memory"), field=f"{prefix}memory")
            res.parse_bytes(getattr(self, f"{prefix}disk"), field=f"{prefix}disk")
            res.parse_gpu(getattr(self, f"{prefix}gpu"), field=f"{prefix}gpu")
        if not math.isfinite(self.over_commit_factor) or self.over_commit_factor < 1:
            raise InvalidArgumentError(
                f"{self.over_commit_factor!r} is not a number >= 1", field="over_commit_factor"
            )
        self.bad_actor_shard_indexes  # noqa: B018 - raises InvalidArgumentError naming the setting
        for name in ("execution_retention", "bid_expiry"):
            _non_negative(name, getattr(self, name))
        _positive("retention_interval", self.retention_interval)
        self._validate_job_selection()
        self._validate_storage()

    def _validate_job_selection(self) -> None:
        locality = self.job_selection_data_locality.strip().lower()
        if locality not in DATA_LOCALITIES:
            raise InvalidArgumentError(
                f"{self.job_selection_data_locality!r} is not one of {', '.join(DATA_LOCALITIES)}",
                field="job_selection_data_locality",
            )
        self.job_selection_data_locality = locality
        url = self.job_selection_probe_http
        if url and not _is_http_url(url):
            raise InvalidArgumentError(
                f"{url!r} is not an http:// or https:// URL with a host", field="job_selection_probe_http"
            )
        if self.job_selection_probe_exec and not self.job_selection_probe_exec.strip():
            raise InvalidArgumentError("the command is blank", field="job_selection_probe_exec")
        _positive("job_selection_probe_timeout", self.job_selection_probe_timeout)

    def _validate_storage(self) -> None:
        if self.filecoin_unsealed_path and UNSEALED_PLACEHOLDER not in self.filecoin_unsealed_path:
            raise InvalidArgumentError(
                f"{self.filecoin_unsealed_path!r} has no {UNSEALED_PLACEHOLDER} to put the CID in",
                field="filecoin_unsealed_path",
            )
        _positive("url_download_timeout", self.url_download_timeout)
        if self.url_download_max_size <= 0:
            raise InvalidArgumentError(
                f"{self.url_download_max_bytes!r} is not a size above 0", field="url_download_max_bytes"
            )
        self.url_download_networks  # noqa: B018 - raises InvalidArgumentError naming the setting
        if self.url_download_max_inputs < 1:
            raise InvalidArgumentError(
                f"{self.url_download_max_inputs} is not a number of inputs above 0",
                field="url_download_max_inputs",
            )
        if self.ipfs_connect:
            try:
                parse_api_address(self.ipfs_connect)
            except InvalidArgumentError as exc:
                raise InvalidArgumentError(exc.reason, field="ipfs_connect") from None

    @property
    def url_download_max_size(self) -> int:
        """url_download_max_bytes in bytes (InvalidArgumentError naming the setting when unreadable)."""
        return res.parse_bytes(self.url_download_max_bytes, field="url_download_max_bytes")

    @property
    def url_download_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """url_download_allow_networks as networks (InvalidArgumentError naming the setting when one
        cannot be read)."""
        items = [item.strip() for item in self.url_download_allow_networks.split(",") if item.strip()]
        try:
            return tuple(ipaddress.ip_network(item, strict=False) for item in items)
        except ValueError as exc:
            raise InvalidArgumentError(
                f"{self.url_download_allow_networks!r} is not a comma-separated list of networks such as "
                f"127.0.0.0/8: {exc}",
                field="url_download_allow_networks",
            ) from None

    @property
    def bad_actor_shard_indexes(self) -> frozenset[int]:
        """bad_actor_shards as shard indexes (empty: every shard); InvalidArgumentError when unreadable."""
        items = [item.strip() for item in self.bad_actor_shards.split(",") if item.strip()]
        if not all(item.isdigit() for item in items):
            raise InvalidArgumentError(
                f"{self.bad_actor_shards!r} is not a comma-separated list of shard indexes (0, 1, ...)",
                field="bad_actor_shards",
            )
        return frozenset(int(item) for item in items)

    @property
    def executions_dir(self) -> Path:
        """Each execution's folders while it lasts: `executions/<execution id>/{results,scratch}`."""
        return self.data_dir / "executions"

    @property
    def content_dir(self) -> Path:
        """The node's content store (uploaded contexts it fetched, by CID)."""
        return self.data_dir / "content"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "compute.db"


def _is_http_url(text: str) -> bool:
    try:
        parsed = urllib.parse.urlsplit(text)
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.hostname) and text == text.strip()


def _non_negative(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"{value!r} is not a number of seconds >= 0", field=name)


def _positive(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgumentError(f"{value!r} is not a number of seconds > 0", field=name)
