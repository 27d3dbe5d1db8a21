"""The Python SDK: a client of a Bacalhau-gRPC requester, taking and returning Bacalhau's types.

    from bacalhau_grpc.sdk import Client, sdk_types as m

    async with Client("127.0.0.1:1234") as client:
        job = m.Job(spec=m.Spec(engine=m.Engine.DOCKER, docker=m.JobSpecDocker(image="ubuntu",
                    entrypoint=["echo", "hello"]), publisher=m.Publisher.LOCAL), deal=m.Deal(concurrency=1))
        submitted = await client.submit(job)
        async for event in client.events(submitted.id, follow=True):
            print(event.event_name)
        await client.download(submitted.id, "results")

`SyncClient` has the same methods, blocking. Messages are the betterproto2 dataclasses generated into
`bacalhau_grpc.sdk.types` (`sdk_types` is `bacalhau_grpc.sdk.types.bacalhau.model.v1beta1`); on the
wire they travel as the same protobuf bytes the services use. Every call has a deadline (`timeout`),
and a failed call raises the typed `BacalhauError` (`NotFoundError`, `InvalidArgumentError` naming the
field, `UnavailableError` naming the requester's address, ...).

Every call is signed with the client's Ed25519 key (by default `~/.bacalhau-grpc/client_key.pem` or
`$BACALHAU_DIR/client_key.pem`, created on first use), as the CLI signs them: the call's metadata carries
the public key, a timestamp and a signature over the method, the request and the timestamp
(`common.signing`), and the requester knows the caller by it. Submissions are signed as well (the signed
payload): the key's ClientID owns the job, only that key may cancel it and, on a requester started with
`--job-visibility owner`, only that key may read it.

TLS: a requester started with certificates serves its client API over TLS. Give the cluster's CA
certificate (a path or PEM) and the client verifies the requester with it:

    async with Client("127.0.0.1:1234", ca_cert="stack/tls/ca.pem") as client: ...

Without TLS arguments the client takes them from the environment, as the CLI does: BACALHAU_TLS_CA_CERT
(setting it means TLS), BACALHAU_TLS_CLIENT_CERT and BACALHAU_TLS_CLIENT_KEY; `tls=False` is plaintext
whatever the environment says. An operator's `client` certificate (`client_cert`, `client_key`) also
works on the requester's node port (mutual TLS), where the certificate is the identity. A TLS client at
a plaintext port, a plaintext one at a TLS port, a requester certificate from another CA or for another
host name fail the first call at once with an `UnavailableError` saying so (`sdk.tls`).

Retries: a call that fails because the requester cannot be reached (UNAVAILABLE) or did not answer in
time (DEADLINE_EXCEEDED) is tried again with full-jitter exponential back-off (pauses drawn from 0 to
0.1 s, 0.2 s, ... at most 2 s; `common.retrying`) until `retry_timeout` seconds (default 30; 0: no
retries) have passed since its first attempt, then the last error is raised. Only calls that may safely
run twice are retried: the reads (get, list, events, results, version, and the start of a log or event
stream, before anything was received), cancel (cancelling a cancelled job changes nothing) and
submissions, which always carry a submission ID (a fresh one per `submit`, or yours: `submission_id=`),
so a submission the requester received before the answer was lost is not created twice. Other errors
(not found, invalid, a TLS mismatch, ...) fail at once. `on_retry(method, error, delay)` is called before
each pause, e.g. to show what the client is waiting for; the SDK itself prints nothing.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

import bacalhau_grpc.sdk.types.bacalhau.model.v1beta1 as sdk_types
import bacalhau_grpc.sdk.types.bacalhau.requester.v1 as sdk_requester
from bacalhau_grpc.common import channels
from bacalhau_grpc.common.errors import (
    BacalhauError,
    DeadlineExceededError,
    InvalidArgumentError,
    UnavailableError,
)
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.retrying import DEFAULT_BACKOFF, Backoff, RetryBudget
from bacalhau_grpc.common.signing import ClientKey, default_directory
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2_grpc as rgrpc
from bacalhau_grpc.sdk.download import MAX_DOWNLOAD_BYTES, OnProgress, Progress, download_results
from bacalhau_grpc.sdk.tls import ClientTls, PemSource, TransportMismatchError, client_tls, connection_problem

DEFAULT_API_HOST = "127.0.0.1"
DEFAULT_API_PORT = 1234
DEFAULT_TIMEOUT = 10.0
DEFAULT_DOWNLOAD_TIMEOUT = 300.0
LIST_PAGE_SIZE = 100
# How long a call is retried while the requester cannot be reached or does not answer in time (seconds).
DEFAULT_RETRY_TIMEOUT = 30.0
# The calls that may run twice with the same outcome, so are retried: reads, and cancelling (a cancelled
# job stays cancelled). SubmitJob is retried when its payload carries a submission ID (the SDK always
# sets one): the requester then answers a repeat with the job the first one created.
RETRIED_METHODS = frozenset(
    {
        "GetJob",
        "ListJobs",
        "ListJobEvents",
        "ListJobShards",
        "GetJobResults",
        "GetVersion",
        "CancelJob",
        "WatchJobEvents",
        "StreamJobLogs",
        "ListNodes",
        "GetNode",
    }
)

# `on_retry(method, error, delay)`: called before each pause between two attempts of a call.
OnRetry = Callable[[str, Exception, float], None]

SORT_BY = {"created_at": rpb.JOB_SORT_BY_CREATED_AT, "id": rpb.JOB_SORT_BY_ID}
SERVICE_NAME = "bacalhau.requester.v1.RequesterService"
# `wait` hands each event it sees to this callback (e.g. to show progress).
OnEvent = Callable[[sdk_types.JobEvent], None]


@dataclass(frozen=True)
class JobPage:
    """One page of jobs (`Client.list_page`: the wire's messages) and the token of the next (empty on the
    last page)."""

    jobs: builtins.list[pb.Job]
    next_page_token: str


class WaitTimeoutError(DeadlineExceededError):
    """`Client.wait` gave up: the job did not end within `timeout` seconds (it goes on running)."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id} did not end within {timeout:g} s; it is still running")
        self.job_id = job_id
        self.timeout = timeout


M = TypeVar("M")


def default_address(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """The requester's address from BACALHAU_API_HOST / BACALHAU_API_PORT, else 127.0.0.1:1234."""
    return api_address(None, None, environ)


def api_address(host: str | None, port: int | str | None, environ: Any = os.environ) -> str:
    """`host:port`: the arguments win over BACALHAU_API_HOST / BACALHAU_API_PORT, which win over the
    defaults (127.0.0.1:1234). InvalidArgumentError for a port that is not one."""
    host = host or environ.get("BACALHAU_API_HOST") or DEFAULT_API_HOST
    source, text = "the API port", port
    if text in (None, ""):
        source, text = "BACALHAU_API_PORT", environ.get("BACALHAU_API_PORT")
    try:
        number = int(text) if text not in (None, "") else DEFAULT_API_PORT
    except ValueError:
        raise InvalidArgumentError(
            f"{source} must be a port number, got {text!r}", field="api_port"
        ) from None
    if not 0 < number <= 65535:
        raise InvalidArgumentError(f"{source} must be between 1 and 65535, got {number}", field="api_port")
    return f"{host}:{number}"


def to_pb(message: Any, pb_class: type[M]) -> M:
    """The upb message with the same content as an SDK (betterproto2) message."""
    return pb_class.FromString(bytes(message))  # type: ignore[attr-defined]


def to_sdk(message: Any, sdk_class: type[M]) -> M:
    """The SDK (betterproto2) message with the same content as a upb message."""
    return sdk_class.parse(message.SerializeToString())  # type: ignore[attr-defined]


class Client:
    """An asyncio client of one requester (`address`, default from the environment: `default_address`).

    Use it as `async with Client(...) as client:` or call `close()`; one client may run many calls at once.

    TLS (`sdk.tls.client_tls`): `tls` True / False / None (TLS when a CA certificate is given, by argument
    or BACALHAU_TLS_CA_CERT) or a `ClientTls`; `ca_cert`, `client_cert`, `client_key` are paths or PEM.

    Retries (see the module's documentation): `retry_timeout` seconds at most per call (0: none), and
    `on_retry(method, error, delay)` called before each pause.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        key: ClientKey | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        tls: bool | ClientTls | None = None,
        ca_cert: PemSource | None = None,
        client_cert: PemSource | None = None,
        client_key: PemSource | None = None,
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT,
        on_retry: OnRetry | None = None,
    ) -> None:
        if retry_timeout < 0:
            raise InvalidArgumentError(
                f"retry_timeout must be 0 (no retries) or more seconds, got {retry_timeout:g}",
                field="retry_timeout",
            )
        self.address = address or default_address()
        self.timeout = timeout
        self.retry_timeout = retry_timeout
        self.on_retry = on_retry
        self.backoff: Backoff = DEFAULT_BACKOFF
        self.tls = tls if isinstance(tls, ClientTls) else client_tls(tls, ca_cert, client_cert, client_key)
        self._key = key
        self._channel: grpc.aio.Channel | None = None
        self._stub: rgrpc.RequesterServiceStub | None = None
        # True once a call over the current channel got an answer: the transport works, so a connection
        # closed later is the requester going away, not a TLS mismatch.
        self._reached = False

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        self._reached = False
        if channel is not None:
            await channel.close()

    @property
    def key(self) -> ClientKey:
        """The key submissions are signed with (loaded or created on first use)."""
        if self._key is None:
            self._key = ClientKey.load_or_create(default_directory())
        return self._key

    @property
    def client_id(self) -> str:
        """This client's ClientID: the SHA-256 (hex) of its public key; it owns the jobs it submits."""
        return self.key.client_id

    # -- jobs ----------------------------------------------------------------------------------------

    async def submit(
        self,
        job: sdk_types.Job,
        *,
        context: bytes = b"",
        submission_id: str | None = None,
        on_progress: OnProgress | None = None,
    ) -> sdk_types.Job:
        """Submits a job (signed with `key`) and returns it as the requester created it (ID, ClientID,
        ExecutionPlan, ...). `context`: a tar or tar.gz archive (at most 10 MiB unpacked) the job gets
        at /job, e.g. the WebAssembly module or Python program it runs.

        The submission carries `submission_id` (default: a fresh random one), inside the signed payload:
        the requester answers the same submission sent again by this client with the job it created the
        first time, so the call is retried safely (`retry_timeout`). Give your own ID to make retries of
        your own (another process, a re-run script) idempotent too; the same ID with another job is
        refused (AlreadyExistsError).

        `on_progress(done, total)`, with a context: the submission is one call, so it is called with
        (0, len(context)) before it is sent and (len(context), len(context)) once the requester took it."""
        submission_id = submission_id or uuid.uuid4().hex
        request = self.key.signed_submit_request(to_pb(job, pb.Job), context, submission_id)
        if on_progress is not None and context:
            on_progress(0, len(context))
        response = await self._call("SubmitJob", request)
        if on_progress is not None and context:
            on_progress(len(context), len(context))
        return to_sdk(response.job, sdk_types.Job)

    async def get(
        self, job_id: str, *, events: bool = True, shard_states: bool = True
    ) -> sdk_types.JobWithInfo:
        """The job with its state and events; `job_id` may be a unique prefix of the ID.

        `events=False` leaves out its events and local events (`events` pages them), `shard_states=False`
        its state rows per node and shard (`shards` pages them). A job too big to answer whole (over the
        requester's message size limit) raises the requester's FAILED_PRECONDITION error: ask it without
        both."""
        request = rpb.GetJobRequest(
            job_id=job_id, exclude_events=not events, exclude_shard_states=not shard_states
        )
        response = await self._call("GetJob", request)
        return to_sdk(response.job, sdk_types.JobWithInfo)

    async def shards(self, job_id: str) -> AsyncGenerator[sdk_types.JobShardState, None]:
        """The job's state rows, one per node and shard, ordered by node ID then shard index, read a page
        at a time (ListJobShards)."""
        async for row in self.shard_rows(job_id):
            yield to_sdk(row, sdk_types.JobShardState)

    async def shard_rows(self, job_id: str) -> AsyncGenerator[pb.JobShardState, None]:
        """`shards` as the wire's messages (`bacalhau_grpc.common.model.pb`, what `to_pb` gives), with no
        conversion to SDK types: ten times cheaper, for callers that read a job's thousands of rows (the
        dashboard's grid, `describe`)."""
        request = rpb.ListJobShardsRequest(job_id=job_id)
        while True:
            response = await self._call("ListJobShards", request)
            for row in response.shards:
                yield row
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    async def list(
        self,
        *,
        all_clients: bool = False,
        client_id: str | None = None,
        id_prefix: str = "",
        include_tags: Iterable[str] = (),
        exclude_tags: Iterable[str] = (),
        sort_by: str = "created_at",
        reverse: bool = True,
        limit: int | None = None,
        page_size: int = LIST_PAGE_SIZE,
        states: Iterable[sdk_types.JobStateType] = (),
    ) -> AsyncGenerator[sdk_types.Job, None]:
        """Jobs, newest first (`sort_by` "created_at" or "id", `reverse=False` for ascending), page by
        page: this client's own unless `all_clients` (or another `client_id`); at most `limit`.
        `states`: only jobs in one of them (the requester filters; a job's state is its summary state,
        the highest of its rows' states, `JobStateType.UNSPECIFIED` while it has none: Pending)."""
        if limit is not None and limit <= 0:
            return
        seen = 0
        token = ""
        while True:
            page = await self.list_page(
                all_clients=all_clients,
                client_id=client_id,
                id_prefix=id_prefix,
                include_tags=include_tags,
                exclude_tags=exclude_tags,
                sort_by=sort_by,
                reverse=reverse,
                page_size=min(page_size, limit) if limit else page_size,
                states=states,
                page_token=token,
            )
            for job in page.jobs:
                yield to_sdk(job, sdk_types.Job)
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if not page.next_page_token:
                return
            token = page.next_page_token

    async def list_page(
        self,
        *,
        all_clients: bool = False,
        client_id: str | None = None,
        id_prefix: str = "",
        include_tags: Iterable[str] = (),
        exclude_tags: Iterable[str] = (),
        sort_by: str = "created_at",
        reverse: bool = True,
        page_size: int = LIST_PAGE_SIZE,
        states: Iterable[sdk_types.JobStateType] = (),
        page_token: str = "",
    ) -> JobPage:
        """One page of `list` (the same filters and order) as the wire's messages (like `shard_rows`): at
        most `page_size` jobs (1 to 1000) and the token of the next page (empty on the last).
        `page_token` continues from a page's token; the requester refuses a token that is not one of its
        own with InvalidArgumentError."""
        if sort_by not in SORT_BY:
            raise InvalidArgumentError(f"sort_by must be one of {', '.join(SORT_BY)}", field="sort_by")
        request = rpb.ListJobsRequest(
            client_id="" if all_clients else (client_id or self.client_id),
            id_prefix=id_prefix,
            include_tags=list(include_tags),
            exclude_tags=list(exclude_tags),
            sort_by=SORT_BY[sort_by],
            sort_reverse=reverse,
            page_size=page_size,
            page_token=page_token,
            # The stub wants the enum wrapper type; protobuf takes any ints for enum fields.
            states=[int(state) for state in states],  # type: ignore[misc]
        )
        response = await self._call("ListJobs", request)
        return JobPage(jobs=list(response.jobs), next_page_token=response.next_page_token)

    async def wait(
        self, job_id: str, *, timeout: float | None = None, on_event: OnEvent | None = None
    ) -> sdk_types.JobWithInfo:
        """Waits until every shard of the job has ended (following its events, WatchJobEvents, resumed
        after a dropped connection as `events` does) and returns the job as it ended, with its state and
        events. The job may have ended Completed, Error or Cancelled: the caller judges (every row's state
        is in `job_state`). `on_event` is called with each event seen (those so far, then new ones).
        `timeout`: the most seconds to wait (None: no limit); past it WaitTimeoutError (a
        DeadlineExceededError) is raised and the job goes on."""
        if timeout is not None and timeout <= 0:
            raise InvalidArgumentError(
                f"timeout must be more than 0 seconds, got {timeout:g}", field="timeout"
            )
        job = (await self.get(job_id, events=False, shard_states=False)).job
        full_id = job.id if job is not None and job.id else job_id  # the stream wants the full ID
        try:
            async with asyncio.timeout(timeout):
                async for _, event in self.event_messages(full_id, follow=True, after=0):
                    if on_event is not None:
                        on_event(to_sdk(event, sdk_types.JobEvent))
        except TimeoutError:
            raise WaitTimeoutError(full_id, timeout or 0.0) from None
        return await self.get(full_id)

    # -- nodes ---------------------------------------------------------------------------------------

    async def nodes(self, *, page_size: int = LIST_PAGE_SIZE) -> AsyncGenerator[sdk_requester.Node, None]:
        """The compute nodes registered with the requester, live or lost, by node ID: each with its
        address, engines, verifiers, publishers, capacity (total and free), running and queued
        executions, last heartbeat and state."""
        request = rpb.ListNodesRequest(page_size=page_size)
        while True:
            response = await self._call("ListNodes", request)
            for node in response.nodes:
                yield to_sdk(node, sdk_requester.Node)
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    async def node(self, node_id: str) -> sdk_requester.Node:
        """One registered compute node; `node_id` may be a unique prefix of its ID (NotFoundError when
        no node has it)."""
        response = await self._call("GetNode", rpb.GetNodeRequest(node_id=node_id))
        return to_sdk(response.node, sdk_requester.Node)

    async def cancel(self, job_id: str, *, reason: str = "") -> sdk_types.Job:
        """Cancels a job this client submitted: its running executions are stopped; it ends Cancelled.
        The requester knows who is asking from the call's signature."""
        request = rpb.CancelJobRequest(job_id=job_id, reason=reason)
        response = await self._call("CancelJob", request)
        return to_sdk(response.job, sdk_types.Job)

    async def events(
        self, job_id: str, *, follow: bool = False, after: int = 0
    ) -> AsyncGenerator[sdk_types.JobEvent, None]:
        """The job's events in order (after the `after`-th); with `follow`, then new ones as they happen
        until the job ends (when the connection drops, reconnecting from the last one seen, for up to
        `retry_timeout` seconds without a new event)."""
        async for _, event in self.event_messages(job_id, follow=follow, after=after):
            yield to_sdk(event, sdk_types.JobEvent)

    async def event_messages(
        self, job_id: str, *, follow: bool = False, after: int = 0
    ) -> AsyncGenerator[tuple[int, pb.JobEvent], None]:
        """`events` as the wire's messages (like `shard_rows`), each with its position in the job's event
        list (from 1): for callers that read many (the CLI, the dashboard)."""
        if not follow:
            request = rpb.ListJobEventsRequest(job_id=job_id)
            sequence = 0
            while True:
                response = await self._call("ListJobEvents", request)
                for event in response.events:
                    sequence += 1
                    if sequence > after:
                        yield sequence, event
                if not response.next_page_token:
                    return
                request.page_token = response.next_page_token
        # WatchJobEvents resumes after a sequence number: a stream that drops after some events is opened
        # again after the last one seen (`_stream` retries its start, with back-off, within the budget).
        sequence = after
        while True:
            watch = rpb.WatchJobEventsRequest(job_id=job_id, after_sequence=sequence)
            received = False
            try:
                async for item in self._stream("WatchJobEvents", watch):
                    received = True
                    sequence = max(sequence, item.sequence)
                    yield item.sequence, item.event
                return
            except (UnavailableError, DeadlineExceededError) as err:
                if not received or not self._retryable(err) or self.retry_timeout <= 0:
                    raise

    async def logs(
        self, job_id: str, *, shard_index: int | None = None, node_id: str = "", follow: bool = False
    ) -> AsyncGenerator[sdk_requester.StreamJobLogsResponse, None]:
        """What the job's executions write to stdout and stderr (each piece names its execution, node,
        shard and stream); with `follow`, live until every execution ended. Filters: one shard, one
        node (ID or prefix)."""
        request = rpb.StreamJobLogsRequest(job_id=job_id, node_id=node_id, follow=follow)
        if shard_index is not None:
            request.shard_index = shard_index
        async for piece in self._stream("StreamJobLogs", request):
            yield to_sdk(piece, sdk_requester.StreamJobLogsResponse)

    async def results(self, job_id: str) -> builtins.list[sdk_types.PublishedResult]:
        """The job's published (verified) results: one per shard and node, with where each is stored."""
        response = await self._call("GetJobResults", rpb.GetJobResultsRequest(job_id=job_id))
        return [to_sdk(result, sdk_types.PublishedResult) for result in response.results]

    async def download(
        self,
        job_id: str,
        output_dir: str | os.PathLike[str],
        *,
        timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
        progress: Progress | None = None,
        on_progress: OnProgress | None = None,
        max_bytes: int = MAX_DOWNLOAD_BYTES,
    ) -> Path:
        """Downloads the job's published results into `output_dir` (made if missing) as Bacalhau lays
        them out: raw/<cid>/, per_shard/<shard>_node_<id8>/, combined_results/. `progress` is called
        with the archive bytes received so far; `on_progress(done, total)` with the bytes of result
        files received so far and their total size (first (0, total), last (total, total)), e.g. for a
        progress bar. DownloadTooLargeError (a ResourceExhaustedError) once more than `max_bytes` (100 GiB)
        arrived. Returns the folder."""
        folder = Path(output_dir).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        try:
            await download_results(
                self._get_channel(),
                job_id,
                folder,
                timeout=timeout,
                progress=progress,
                on_progress=on_progress,
                metadata=self.key.call_metadata,
                max_bytes=max_bytes,
            )
        except UnavailableError as err:
            raise self._unreachable(err) from None
        return folder

    async def version(self) -> sdk_types.BuildVersionInfo:
        """The requester's version."""
        response = await self._call("GetVersion", rpb.GetVersionRequest())
        return to_sdk(response.version, sdk_types.BuildVersionInfo)

    # -- transport -----------------------------------------------------------------------------------

    def _get_channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            credentials = self.tls.credentials() if self.tls is not None else None
            self._channel = channels.open_channel(self.address, credentials=credentials)
            self._stub = rgrpc.RequesterServiceStub(self._channel)
        return self._channel

    def _method(self, name: str) -> Callable[..., Any]:
        self._get_channel()
        return getattr(self._stub, name)

    def _signed(self, name: str, request: Any) -> builtins.list[tuple[str, bytes | str]]:
        """The metadata that signs this call (each call is signed anew: a signature is good once)."""
        return self.key.call_metadata(f"/{SERVICE_NAME}/{name}", request)

    def _retried(self, name: str, request: Any) -> bool:
        """Whether a failed call of this method may be sent again: it is in RETRIED_METHODS, or it is a
        submission whose signed payload carries a submission ID."""
        if name in RETRIED_METHODS:
            return True
        if name == "SubmitJob":
            return bool(submission_id_of(request))
        return False

    @staticmethod
    def _retryable(error: Exception) -> bool:
        """The requester could not be reached or did not answer in time, and nothing says that trying
        again cannot help (a TLS mismatch)."""
        if isinstance(error, TransportMismatchError):
            return False
        return isinstance(error, UnavailableError | DeadlineExceededError)

    def _budget(self, name: str, request: Any) -> RetryBudget | None:
        """The retries of one call (None: it is not retried)."""
        if self.retry_timeout <= 0 or not self._retried(name, request):
            return None
        return self.backoff.budget(self.retry_timeout)

    async def _pause(self, name: str, error: BacalhauError, budget: RetryBudget | None) -> None:
        """After a failed attempt: returns once it is time for the next one, or raises `error` when the
        call is not retried, the error is not worth another attempt or the budget is spent."""
        if budget is None or not self._retryable(error):
            raise error from None
        delay = budget.next_delay()
        if delay is None:
            raise error from None
        if self.on_retry is not None:
            self.on_retry(name, error, delay)
        await asyncio.sleep(delay)

    async def _call(self, name: str, request: Any) -> Any:
        method = self._method(name)
        budget = self._budget(name, request)
        while True:
            try:
                # Signed anew on each attempt: the requester accepts a signed call once.
                response = await channels.call(
                    method, request, timeout=self.timeout, metadata=self._signed(name, request)
                )
            except (UnavailableError, DeadlineExceededError) as err:
                error = self._unreachable(err) if isinstance(err, UnavailableError) else err
                await self._pause(name, error, budget)
                method = self._method(name)
                continue
            self._reached = True
            return response

    async def _stream(self, name: str, request: Any) -> AsyncGenerator[Any, None]:
        """The stream's messages. Its start is retried as a call is; once a message was received, a
        failure is raised (the caller decides whether it can resume: `_events` does)."""
        budget = self._budget(name, request)
        while True:
            received = False
            method = self._method(name)
            try:
                async for item in channels.stream(method, request, metadata=self._signed(name, request)):
                    received = self._reached = True
                    yield item
                return
            except (UnavailableError, DeadlineExceededError) as err:
                error = self._unreachable(err) if isinstance(err, UnavailableError) else err
                if received:
                    raise error from None
                await self._pause(name, error, budget)

    def _unreachable(self, err: BacalhauError) -> UnavailableError:
        """The requester is unreachable, or speaks another transport (TLS or not, another CA): say which.

        A connection closed or reset after this client reached the requester over the same channel is the
        requester going away (a crash, a restart), not a disagreement about TLS: it may be retried."""
        problem = connection_problem(err, self.address, self.tls)
        if isinstance(problem, TransportMismatchError) and self._reached:
            details = str(err)
            lowered = details.lower()
            if "socket closed" in lowered or "connection reset" in lowered:
                return UnavailableError(f"cannot reach the requester at {self.address}: {details}")
        return problem


def submission_id_of(request: Any) -> str:
    """The submission ID inside a SubmitJobRequest's signed payload ("" when it has none)."""
    payload = pb.JobCreatePayload()
    try:
        payload.ParseFromString(request.signed_payload)
    except Exception:  # not ours to judge here: the requester refuses it
        return ""
    return str(payload.submission_id)
