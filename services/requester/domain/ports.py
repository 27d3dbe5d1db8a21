"""What the requester's domain needs from the outside, as interfaces: the compute nodes and the verifier
(implemented in clients/ over gRPC) and the job store (implemented in store/sqlite.py), with the records
the store keeps and reads back.

ComputePort and VerifierPort take batches and give one result per item: a failed item's result is a
BacalhauError (UnavailableError, DeadlineExceededError, ...).
"""

from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.shard_fsm import (
    CancelExecution,
    NotifyBidAccepted,
    NotifyBidRejected,
    NotifyResultAccepted,
    NotifyResultRejected,
    ProposalData,
    ShardFSM,
    Verdict,
)


@dataclass(frozen=True)
class BidAnswer:
    accepted: bool
    execution_id: str = ""
    reason: str = ""
    node_id: str = ""
    # Refused only for want of free capacity now: ask again after the node's next heartbeat.
    busy: bool = False


# What the requester tells a node about one of its executions (UpdateExecutions).
ExecutionUpdate = (
    NotifyBidAccepted | NotifyBidRejected | NotifyResultAccepted | NotifyResultRejected | CancelExecution
)


class ComputePort(Protocol):
    """Calls to one compute node, addressed by its `host:port`, a batch at a time: one result per item,
    in order (a value, or the item's error; when the whole call fails, each item gets its error)."""

    async def ask_for_bids(
        self, address: str, asks: Sequence[tuple[pb.Job, int]]
    ) -> list[BidAnswer | BaseException]:
        """Ask the node to bid on each (job, shard index)."""
        ...

    async def update_executions(
        self, address: str, updates: Sequence[ExecutionUpdate]
    ) -> list[BaseException | None]:
        """Tell the node what became of its executions (bids and results accepted or rejected, cancels)."""
        ...

    def stream_logs(
        self, address: str, execution_id: str, follow: bool
    ) -> AsyncGenerator[tuple[bool, bytes], None]:
        """The execution's output on its node as (is_stderr, bytes) chunks: what it wrote so far, then
        (with `follow`) what it writes until its run is over. Failures raise while iterating."""
        ...

    async def close(self) -> None: ...


# One shard's results to verify: the job, the shard's index and the proposals of its executions.
VerifyRequest = tuple[pb.Job, int, Sequence[ProposalData]]


class VerifierPort(Protocol):
    async def verify_shards(self, requests: Sequence[VerifyRequest]) -> list[list[Verdict] | BaseException]:
        """The verdicts on each shard's proposals (one result per request, in order)."""
        ...

    async def close(self) -> None: ...


class JobTrace(NamedTuple):
    """Where a job's one trace is (OpenTelemetry IDs, lowercase hex): the trace ID users see (32 digits)
    and the span ID (16 digits) of the job's first span, the parent of its spans started elsewhere."""

    trace_id: str
    span_id: str


class JobTracing(Protocol):
    """The job traces of the requester's span factory (`common.telemetry.JobTraces`): which trace a job
    is in, and putting a job back in its trace after a restart."""

    def trace_ids(self, job_id: str) -> tuple[str, str] | None:
        """(trace ID, span ID) of the job's trace once its first span started; None when not traced."""
        ...

    def restore(self, job_id: str, trace_id: str, span_id: str) -> None:
        """Makes this the job's trace again: its later spans join it."""
        ...


@dataclass
class StoredJob:
    """Everything kept about one job."""

    job: pb.Job
    events: list[pb.JobEvent]
    local_events: list[pb.JobLocalEvent]
    rows: list[pb.JobShardState]
    fsms: dict[int, dict[str, Any]]
    # The job's trace when it was traced at creation (a job stored before trace IDs were kept: None).
    trace: JobTrace | None = None


@dataclass(frozen=True)
class SubmissionRecord:
    """What a client-chosen submission ID made: the job, and the digest of the payload that made it
    (`domain/submissions.py`, `submission_digest`)."""

    job_id: str
    digest: str


@dataclass
class JobQuery:
    client_id: str = ""
    id_prefix: str = ""
    include_tags: Sequence[str] = ()
    exclude_tags: Sequence[str] = ()
    sort_by: str = "created_at"  # or "id"
    reverse: bool = False
    page_size: int = 100
    # The key of the last job of the previous page: (created_at_us, id) or (id,).
    after: tuple[Any, ...] | None = None
    # Only jobs whose summary state (`summary_state`) is one of these, when set.
    states: Sequence[int] = ()


def summary_state(state: pb.JobState) -> int:
    """A job's summary state, as `bacalhau-grpc list` shows it (Go's `list`): the highest state of its
    (node, shard) rows; 0 (UNSPECIFIED, shown as Pending) while it has none."""
    return max((row.state for node in state.nodes.values() for row in node.shards.values()), default=0)


class JobStore(Protocol):
    """Where the requester keeps its jobs and nodes.

    Writes are queued by cheap synchronous calls and committed later in batches: each queued write
    raises `generation`, each commit raises `committed_generation` to the generation it wrote, and
    `flush()` waits until everything queued so far is committed (RuntimeError once the store is
    closing). Reads see committed data only.
    """

    @property
    def generation(self) -> int:
        """The generation of the last queued write."""
        ...

    @property
    def committed_generation(self) -> int:
        """The generation of the last committed write."""
        ...

    async def flush(self) -> None: ...

    def when_committed(self, callback: Callable[[], None]) -> None:
        """Call `callback()` once every write queued so far is committed (or the store stopped)."""
        ...

    # queued writes
    def add_job(self, job: pb.Job, trace: JobTrace | None = None) -> None:
        """A new job (without state or events); its annotations become its tags; `trace`: the trace it
        was created in, kept with it."""
        ...

    def add_submission(self, client_id: str, submission_id: str, record: SubmissionRecord) -> None:
        """The client's submission ID and what it made (queued right after its job's `add_job`, so both
        are committed in one transaction)."""
        ...

    def add_event(self, job_id: str, seq: int, event: pb.JobEvent) -> None: ...

    def add_local_event(self, job_id: str, seq: int, event: pb.JobLocalEvent) -> None: ...

    def put_row(self, job_id: str, row: pb.JobShardState) -> None: ...

    def put_fsm(self, job_id: str, shard_index: int, machine: ShardFSM) -> None:
        """A shard's state machine, stored as it is when its batch is committed."""
        ...

    def put_node(self, info: pb.NodeInfo, registered_at: float) -> None: ...

    # reads (committed data)
    def load_job(self, job_id: str) -> StoredJob | None: ...

    def find_submission(self, client_id: str, submission_id: str) -> SubmissionRecord | None:
        """What the client's submission with this ID made (committed data), or None."""
        ...

    def active_job_ids(self) -> list[str]:
        """Jobs with a shard whose state machine has not ended."""
        ...

    def find_job_ids(self, prefix: str, limit: int, client_id: str = "") -> list[str]:
        """IDs of the jobs starting with `prefix` (only `client_id`'s, when given), at most `limit`."""
        ...

    def load_nodes(self) -> list[tuple[pb.NodeInfo, float]]:
        """Every registered node with the time it registered."""
        ...

    def list_jobs(self, query: JobQuery) -> list[tuple[pb.Job, tuple[Any, ...]]]:
        """One page of jobs (with their state rows, without events), each with its sort key
        (raises InvalidArgumentError for an unknown `sort_by`)."""
        ...


class RetentionStore(Protocol):
    """What retention (`domain/retention.py`) needs of the job store: each call waits for the writes
    queued before it and runs as one transaction."""

    async def expire_finished_jobs(
        self, ended_before: float, now: float, kept_for: float, limit: int
    ) -> list[str]:
        """Remove up to `limit` finished jobs whose last event is before `ended_before` (epoch seconds)
        with everything kept about them, recording each as expired at `now`; expiry records older than
        `kept_for` seconds are pruned. Returns the IDs removed."""
        ...

    async def referenced_cids(self) -> set[str]:
        """The CIDs the kept jobs name (contexts and inputs)."""
        ...

    async def remove_nodes(self, node_ids: Iterable[str]) -> None: ...

    def expired_job(self, job_id: str) -> tuple[float, float] | None:
        """(expired at, how long finished jobs were kept then) for a job retention removed, else None."""
        ...
