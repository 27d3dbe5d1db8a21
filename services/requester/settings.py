"""The requester's settings: defaults, then a config file, `BACALHAU_<SETTING>` environment variables and
flags (`common.settings`)."""

import math
from dataclasses import dataclass, field
from pathlib import Path

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.ipfs.client import parse_api_address
from bacalhau_grpc.common.server import DEFAULT_MAX_MESSAGE_BYTES
from bacalhau_grpc.common.settings import Settings, check_observability
from bacalhau_grpc.common.settings import setting_error as _invalid
from bacalhau_grpc.requester.domain.validation import SubmissionLimits
from bacalhau_grpc.requester.domain.visibility import JOB_VISIBILITIES, PUBLIC

DB_FILE_NAME = "requester.db"


def default_data_dir() -> Path:
    return Path.home() / ".bacalhau-grpc" / "requester"


@dataclass(frozen=True)
class RequesterSettings(Settings):
    # The address to listen on.
    host: str = "127.0.0.1"
    # The port of the client API (submit, get, list, ...); 0 picks a free one. With TLS it is server-only
    # TLS; without, it serves the node protocol too.
    port: int = 0
    # With TLS, the port of the node protocol (compute nodes register and report here) and of operators'
    # client certificates, mutual TLS only; 0 picks a free one.
    node_port: int = 0
    # A plaintext port serving gRPC health alone, for probes that cannot speak TLS (Kubernetes'); -1:
    # none, 0: a free one.
    health_port: int = -1
    # The port of the Prometheus `/metrics` endpoint (HTTP, plaintext, on `host`); -1: none, 0: a free one.
    metrics_port: int = -1
    # How log lines are written: text (one line per record) or json (one JSON object per line).
    log_format: str = "text"
    # TLS: this node's certificate and key and the cluster CA (PEM files; `bacalhau-grpc certs`). With
    # them the node protocol is mutual TLS; without them the node serves only with insecure set.
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    # Serve and call in plaintext, without certificates: development only (logged; a warning off
    # loopback).
    insecure: bool = False
    # Where the requester keeps its SQLite database (requester.db) and its node ID.
    data_dir: Path = field(default_factory=default_data_dir)
    # The requester's node ID; when empty, one is generated once and kept in data_dir/node_id.
    node_id: str = ""
    # host:port of the verifier service (required).
    verifier_address: str = ""
    # Seconds a shard may spend finding its bids, from the job's creation.
    negotiation_timeout: float = 120.0
    # Seconds a shard may run (and be verified and published) when the job sets no Spec.Timeout.
    default_job_timeout: float = 1800.0
    # How often compute nodes are told to send a heartbeat, in seconds.
    heartbeat_interval: float = 2.0
    # A node silent for this many seconds is not offered jobs.
    node_timeout: float = 10.0
    # The deadline of every call to a compute node or the verifier, in seconds.
    call_timeout: float = 10.0
    # Jobs in progress at once; a submission beyond this waits for one to end (back-pressure that keeps
    # the requester's latency bounded under load; the client's deadline applies while it waits).
    max_active_jobs: int = 256
    # Fair share. Jobs in progress one client may have at once: a client at it is refused at once,
    # RESOURCE_EXHAUSTED with a retry hint, never made to wait, so a client flooding jobs no node bids on
    # cannot keep other clients' jobs out. Anonymous/unsigned submitters share one bucket. At or above
    # max_active_jobs it is off (one client may fill the requester; its submissions then wait for room).
    max_active_jobs_per_client: int = 64
    # Streams one client may have following jobs at once (WatchJobEvents, StreamJobLogs with follow);
    # beyond it, RESOURCE_EXHAUSTED with a retry hint. Anonymous callers share one bucket.
    max_followers_per_client: int = 32
    # RPCs each of the requester's listeners serves at once (every method, health checks included);
    # beyond it gRPC itself answers RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int = 1000
    # The largest message the requester's servers send or receive, in bytes (16 MiB). A GetJob answer
    # over it is refused with FAILED_PRECONDITION (ask without events and shard states, and page them).
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Accept unsigned submissions (a bare JobCreatePayload): development only. Off, every submission must
    # be signed by its client's key.
    allow_unsigned: bool = False
    # The IPFS daemon's API the requester lists sharded jobs' IPFS inputs from when its own content store
    # does not hold them, as a URL (http://127.0.0.1:5001) or a multiaddr (/ip4/127.0.0.1/tcp/5001);
    # empty: none (such inputs then come from the requester's own content store only).
    ipfs_connect: str = ""
    # Who may read a job (get, list, events, logs, results): "public", anyone (as in Bacalhau), or "owner",
    # only the client whose key submitted it (signed calls; anonymous reads are refused). Cancelling is the
    # owner's alone either way.
    job_visibility: str = PUBLIC
    # How big one submission may be (a job past one is refused at once, naming the field and the limit):
    # shards (ExecutionPlan.ShardsTotal), inputs (with contexts and import modules), outputs, environment
    # variables, annotations, entrypoint words or parameters, bytes of any one text, Spec.Timeout seconds.
    max_shards_per_job: int = 10_000
    max_inputs_per_job: int = 10_000
    max_outputs_per_job: int = 100
    max_env_vars_per_job: int = 1_000
    max_annotations_per_job: int = 100
    max_arguments_per_job: int = 1_000
    max_string_bytes: int = 16_384
    max_job_timeout: float = 86_400.0
    # Retention (seconds; 0 = forever). Finished jobs (every shard ended) are removed this long after
    # their last event, with their events, state rows, tags and submission IDs, and the uploaded contexts
    # and cached content no kept job names; a read of a removed job answers NOT_FOUND saying it expired
    # (that note is itself kept for another job_retention). Running jobs are never removed.
    job_retention: float = 7 * 86_400.0
    # Compute nodes lost (no heartbeat) for this long past node_timeout leave the node table.
    node_retention: float = 86_400.0
    # How often the retention collector runs (seconds).
    retention_interval: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        if not self.host:
            raise _invalid("host", "must not be empty")
        check_observability(self)
        for name in ("port", "node_port", "health_port"):
            value = getattr(self, name)
            lowest = -1 if name == "health_port" else 0
            if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= 65535:
                raise _invalid(name, f"{value!r} is not a TCP port ({lowest} to 65535)")
        for name in (
            "negotiation_timeout",
            "default_job_timeout",
            "heartbeat_interval",
            "node_timeout",
            "call_timeout",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise _invalid(name, f"{value!r} is not a number of seconds above 0")
        for name in ("job_retention", "node_retention"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise _invalid(name, f"{value!r} is not a number of seconds >= 0 (0 keeps forever)")
        value = self.retention_interval
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise _invalid("retention_interval", f"{value!r} is not a number of seconds above 0")
        if self.node_timeout <= self.heartbeat_interval:
            raise _invalid(
                "node_timeout",
                f"{self.node_timeout!r} must be longer than heartbeat_interval "
                f"({self.heartbeat_interval!r}), "
                "or live nodes would be taken for dead between two heartbeats",
            )
        if not isinstance(self.max_active_jobs, int) or self.max_active_jobs < 1:
            raise _invalid("max_active_jobs", f"{self.max_active_jobs!r} is not a whole number above 0")
        for name in (
            "max_active_jobs_per_client",
            "max_followers_per_client",
            "max_concurrent_rpcs",
            "max_message_bytes",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _invalid(name, f"{value!r} is not a whole number above 0")
        for name in (
            "max_shards_per_job",
            "max_inputs_per_job",
            "max_outputs_per_job",
            "max_env_vars_per_job",
            "max_annotations_per_job",
            "max_arguments_per_job",
            "max_string_bytes",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _invalid(name, f"{value!r} is not a whole number above 0")
        if not math.isfinite(self.max_job_timeout) or self.max_job_timeout < self.default_job_timeout:
            raise _invalid(
                "max_job_timeout",
                f"{self.max_job_timeout!r} must be at least default_job_timeout "
                f"({self.default_job_timeout!r})",
            )
        if not isinstance(self.allow_unsigned, bool):
            raise _invalid("allow_unsigned", f"{self.allow_unsigned!r} is not true or false")
        if self.job_visibility not in JOB_VISIBILITIES:
            raise _invalid(
                "job_visibility", f"{self.job_visibility!r} is not one of {', '.join(JOB_VISIBILITIES)}"
            )
        if not self.verifier_address:
            raise _invalid("verifier_address", "is required: the host:port of the verifier service")
        if self.ipfs_connect:
            try:
                parse_api_address(self.ipfs_connect)
            except InvalidArgumentError as exc:
                raise _invalid("ipfs_connect", exc.reason) from None

    @property
    def submission_limits(self) -> SubmissionLimits:
        return SubmissionLimits(
            max_inputs=self.max_inputs_per_job,
            max_outputs=self.max_outputs_per_job,
            max_env_vars=self.max_env_vars_per_job,
            max_annotations=self.max_annotations_per_job,
            max_arguments=self.max_arguments_per_job,
            max_string_bytes=self.max_string_bytes,
            max_job_timeout=self.max_job_timeout,
            max_shards=self.max_shards_per_job,
        )

    @property
    def client_job_limit(self) -> int | None:
        """The per-client limit of jobs in progress the requester enforces: None (off) when it would not be
        below max_active_jobs."""
        limit = self.max_active_jobs_per_client
        return limit if limit < self.max_active_jobs else None

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_FILE_NAME
