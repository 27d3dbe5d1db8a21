"""The compute node: bids on shards, runs accepted executions, proposes and publishes their results.

Transport-free: the requester is reached through the `RequesterCallbacks` protocol (implemented over
gRPC in `compute.clients`), and requests arrive as plain method calls (from `compute.api`). Executors,
volumes and publishers are the ports of `domain/ports.py`, given by `compute/app.py`.

Lifecycle of one execution (see "The node protocol" in docs/architecture.md):

    ask_for_bid      -> Created (or a refusal with its reason; no execution is kept)
    bid_accepted     -> BidAccepted; the run starts in the background: it waits for capacity (FIFO),
                        Running, the executor runs it (bounded by Spec.Timeout, 600 s by default),
                        WaitingVerification + on_run_complete(proposal, run output) - a non-zero exit
                        code is a result - or Failed + on_compute_failure(error)
    bid_rejected     -> Cancelled
    result_accepted  -> ResultAccepted -> Publishing -> Completed + on_publish_complete
                        (a publish failure: Failed + on_compute_failure)
    result_rejected  -> Failed, nothing published
    cancel_execution -> Cancelled (the run is stopped) + on_cancel_complete

Repeated requests are harmless: AskForBid for a shard that has an active execution here answers with
that execution; a second BidAccepted, ResultAccepted, ResultRejected or a cancel of an
ended execution changes nothing and succeeds (a second BidAccepted after the run ended, or ResultAccepted
after the publication, reports the outcome again: a restarted requester repeats its calls to recover
reports it lost). A request that does not fit the execution's state raises
`FailedPreconditionError`; an unknown execution `NotFoundError`.
"""

import asyncio
import dataclasses
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bacalhau_grpc.common import failpoints
from bacalhau_grpc.common.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
)
from bacalhau_grpc.common.metrics import NO_METRICS, Metrics
from bacalhau_grpc.common.model import enums, jobs, pb
from bacalhau_grpc.common.telemetry import no_span
from bacalhau_grpc.compute.domain.bidding import (
    DEFAULT_BID_POLICY,
    BidPolicy,
    IsLocal,
    default_bidder,
    nothing_is_local,
    publisher_of,
)
from bacalhau_grpc.compute.domain.capacity import CapacityTracker, Limits
from bacalhau_grpc.compute.domain.executions import (
    ACTIVE_STATES,
    Execution,
    ExecutionState,
    ExecutionStore,
    new_execution,
)
from bacalhau_grpc.compute.domain.ports import (
    Executor,
    NoVolumes,
    Publisher,
    StorageError,
    VolumesPort,
    run_with_timeout,
)
from bacalhau_grpc.compute.domain.proposals import Proposer
from bacalhau_grpc.compute.domain.publishing import Publishers
from bacalhau_grpc.compute.domain.runs import (
    ExecutorError,
    Mount,
    RunContext,
    RunResult,
    prepare_outputs,
    run_timeout,
    without_links,
)

log = logging.getLogger(__name__)
S = ExecutionState

RESTARTED_DURING_EXECUTION = "compute node restarted during execution"


class RequesterCallbacks(Protocol):
    """How the node tells the requester what happened to an execution."""

    async def on_run_complete(self, execution: Execution) -> None: ...

    async def on_compute_failure(self, execution: Execution, error: str) -> None: ...

    async def on_publish_complete(self, execution: Execution) -> None: ...

    async def on_cancel_complete(self, execution: Execution) -> None: ...


SpanFactory = Callable[..., AbstractContextManager[Any]]


@dataclass(frozen=True, slots=True)
class BidResult:
    accepted: bool
    execution_id: str = ""
    reason: str = ""
    # Refused only for want of free capacity now (see `ComputeNode.room_freed`).
    busy: bool = False


# The status of an execution whose bid expired (`expire_bids`) starts with this.
BID_EXPIRED = "bid expired"


class ComputeNode:
    def __init__(
        self,
        *,
        node_id: str,
        store: ExecutionStore,
        executors: Sequence[Executor],
        publishers: Sequence[Publisher],
        verifiers: Collection[int],
        limits: Limits,
        proposer: Proposer,
        callbacks: RequesterCallbacks,
        bid_policy: BidPolicy = DEFAULT_BID_POLICY,
        is_local: IsLocal = nothing_is_local,
        address: str = "",
        version: str = "",
        span: SpanFactory = no_span,
        volumes: VolumesPort | None = None,
        work_root: Path | None = None,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.node_id = node_id
        # Bids and run durations (common/metrics.py; the app reads the gauges).
        self.metrics = metrics
        self.address = address
        self.version = version
        self.store = store
        # Every executor given (closed with the node), and those installed here, by engine.
        self.all_executors = tuple(executors)
        self.executors = {e.engine: e for e in executors if e.is_installed()}
        self.publishers = Publishers(publishers)
        self.verifiers = frozenset(verifiers)
        self.limits = limits
        self.proposer = proposer
        self.callbacks = callbacks
        self.tracker = CapacityTracker(limits.total)
        self.tracker.on_freed = self._capacity_freed
        # Set once capacity frees after a refusal for want of it: the heartbeat loop then heartbeats at
        # once, and the requester asks this node again for the shards it refused as busy.
        self.room_freed = asyncio.Event()
        self._room_wanted = False
        self.bidder = default_bidder(
            is_installed=self.executors.__contains__,
            verifiers=self.verifiers,
            publishers=self.publishers.kinds(),
            per_job=limits.per_job,
            tracker=self.tracker,
            policy=bid_policy,
            node_id=node_id,
            is_local=is_local,
        )
        self._span = span
        # How the job's volumes get onto this node, and where each execution keeps its files while it
        # lasts: `work_root/<execution id>/results` (the result folder) and `.../scratch` (downloads).
        self.volumes: VolumesPort = volumes or NoVolumes()
        self.work_root = work_root or Path(tempfile.gettempdir()) / "bacalhau-grpc" / node_id
        # The active execution of each shard, so a repeated AskForBid gets the same execution.
        self._by_shard: dict[str, str] = {}
        # Run results kept between the run and the publication (the publisher may need the folder).
        self._results: dict[str, RunResult] = {}
        # The run or publish task of each execution, cancelled by cancel_execution.
        self._work: dict[str, asyncio.Task[None]] = {}
        # Every background task (work and callback deliveries), so none is garbage-collected.
        self._tasks: set[asyncio.Task[Any]] = set()
        # The active executions a previous process left, settled by `recover`.
        self._left_over: list[str] = []
        self.bids_accepted = 0
        self.bids_refused = 0

    # -------------------------------------------------------------------------------------------
    # Start and stop
    # -------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Indexes the stored active executions (call once after the store is opened, before serving)."""
        self._left_over = []
        for execution in self.store.active():
            self._by_shard[execution.shard_id] = execution.id
            self._left_over.append(execution.id)
        if self.work_root.exists():
            active = set(self._left_over)
            for folder in self.work_root.iterdir():
                if folder.name not in active:  # an ended execution's, left by a crash
                    shutil.rmtree(folder, ignore_errors=True)

    def recover(self) -> None:
        """Settles the executions a previous process left mid-way (call once the requester is reachable):
        interrupted runs fail ("compute node restarted during execution", reported to the requester);
        interrupted publications are done again; bids and results awaiting the requester stay as they
        are. Executions this process started are not touched."""
        left_over, self._left_over = self._left_over, []
        for execution_id in left_over:
            execution = self.store.get(execution_id)
            if execution.state in (S.BID_ACCEPTED, S.RUNNING) and execution.id not in self._work:
                self._fail(execution, RESTARTED_DURING_EXECUTION, expected=(S.BID_ACCEPTED, S.RUNNING))
            elif execution.state in (S.RESULT_ACCEPTED, S.PUBLISHING) and execution.id not in self._work:
                self._start_work(execution, self._publish(execution))

    async def stop(self, grace: float = 1.0) -> None:
        """Stops runs and publications (they stay in their state: a restart settles them), then waits up
        to `grace` seconds for callback deliveries in flight."""
        for task in list(self._work.values()):
            task.cancel()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)

    # -------------------------------------------------------------------------------------------
    # Requests from the requester
    # -------------------------------------------------------------------------------------------

    async def ask_for_bid(self, job: pb.Job, shard_index: int) -> BidResult:
        """Bids on one shard (an execution in state Created) or refuses with the reason."""
        if not job.id:
            raise InvalidArgumentError("the job has no ID", field="job.id")
        total = job.execution_plan.total_shards
        if shard_index < 0 or (total > 0 and shard_index >= total):
            raise InvalidArgumentError(
                f"{shard_index} is not a shard of a job with {max(total, 1)} shard(s)", field="shard_index"
            )
        with self._span("compute.ask_for_bid", job_id=job.id, node_id=self.node_id, shard_index=shard_index):
            existing = self._by_shard.get(jobs.get_shard_id(job.id, shard_index))
            if existing is not None:
                return BidResult(True, existing)
            decision = await self.bidder.decide(job, shard_index)
            if not decision.accepted:
                self.bids_refused += 1
                self.metrics.bid("refused", decision.refused_by)
                log.debug(
                    "refused to bid on %s:%d: %s",
                    job.id,
                    shard_index,
                    decision.reason,
                    extra=self._extra(job.id),
                )
                self._room_wanted = self._room_wanted or decision.busy
                return BidResult(False, "", decision.reason, busy=decision.busy)
            assert decision.usage is not None
            execution = new_execution(job, shard_index, decision.usage)
            self.store.create(execution)
            self._by_shard[execution.shard_id] = execution.id
            self.bids_accepted += 1
            self.metrics.bid("bid")
            return BidResult(True, execution.id)

    def bid_accepted(self, execution_id: str) -> None:
        """Starts the run in the background. A second call for an accepted execution starts nothing; when
        the run has ended meanwhile, its outcome is reported again (the requester that repeats the call
        after a restart may have lost the first report; it takes a repeated report as the same one)."""
        execution = self._get(execution_id)
        if execution.state == S.CREATED:
            self._update(execution, S.BID_ACCEPTED, expected=S.CREATED, reason="bid accepted")
            self._start_work(execution, self._run(execution))
            return
        if self._was(execution, S.BID_ACCEPTED):
            if execution.state == S.WAITING_VERIFICATION:
                self._deliver(self.callbacks.on_run_complete, execution)
            elif execution.state == S.FAILED and execution.id not in self._work:
                self._deliver(self.callbacks.on_compute_failure, execution, execution.status or "failed")
            elif execution.state == S.CANCELLED and execution.id not in self._work:
                self._deliver(self.callbacks.on_cancel_complete, execution)
            return
        if execution.state == S.CANCELLED and execution.status.startswith(BID_EXPIRED):
            raise FailedPreconditionError(
                f"{execution.describe()}: its bid expired ({execution.status}), it can no longer be accepted"
            )
        raise FailedPreconditionError(f"{execution.describe()}: its bid can no longer be accepted")

    def expire_bids(self, now: float, bid_expiry: float) -> list[Execution]:
        """Cancel the bids (executions still Created) made more than `bid_expiry` seconds before `now` and
        neither accepted nor rejected since (retention, `domain/retention.py`): the requester gave up on
        them after its negotiation timeout. A later BidAccepted for one fails, naming the expiry."""
        reason = f"{BID_EXPIRED}: neither accepted nor rejected within {bid_expiry:g}s (bid_expiry)"
        expired = []
        for execution in self.store.active():
            if execution.state != S.CREATED or now - execution.created_at <= bid_expiry:
                continue
            try:
                self._update(execution, S.CANCELLED, expected=S.CREATED, reason=reason)
            except FailedPreconditionError:
                continue
            if self.tracker.holding(execution.id):
                self.tracker.release(execution.id)
            log.info("execution %s: %s", execution.id, reason, extra=self._extra(execution.job_id))
            expired.append(execution)
        return expired

    def bid_rejected(self, execution_id: str, reason: str = "") -> None:
        """Cancels the bid's execution."""
        execution = self._get(execution_id)
        if execution.state == S.CANCELLED:
            return
        if execution.state != S.CREATED:
            raise FailedPreconditionError(f"{execution.describe()}: its bid can no longer be rejected")
        self._update(execution, S.CANCELLED, expected=S.CREATED, reason=_because("bid rejected", reason))

    def result_accepted(self, execution_id: str) -> None:
        """Publishes the execution's results in the background; repeated calls do nothing."""
        failpoints.hit("compute-result-accepted")
        execution = self._get(execution_id)
        if execution.state == S.WAITING_VERIFICATION:
            self._update(
                execution, S.RESULT_ACCEPTED, expected=S.WAITING_VERIFICATION, reason="result accepted"
            )
            self._start_work(execution, self._publish(execution))
            return
        if execution.state == S.COMPLETED:
            # Published already: report it again (the requester repeating the call may have lost it).
            self._deliver(self.callbacks.on_publish_complete, execution)
            return
        if execution.state in (S.RESULT_ACCEPTED, S.PUBLISHING):
            return
        if execution.state in (S.CREATED, S.BID_ACCEPTED, S.RUNNING):
            raise FailedPreconditionError(f"{execution.describe()}: it has no results yet")
        raise FailedPreconditionError(f"{execution.describe()}: its results can no longer be accepted")

    def result_rejected(self, execution_id: str, reason: str = "") -> None:
        """Fails the execution; nothing is published."""
        execution = self._get(execution_id)
        if execution.state == S.WAITING_VERIFICATION:
            self._update(
                execution,
                S.FAILED,
                expected=S.WAITING_VERIFICATION,
                reason=_because("results rejected", reason),
            )
            return
        last = execution.history[-1] if execution.history else None
        if execution.state == S.FAILED and last and last.from_state == S.WAITING_VERIFICATION:
            return
        if execution.state in (S.CREATED, S.BID_ACCEPTED, S.RUNNING):
            raise FailedPreconditionError(f"{execution.describe()}: it has no results yet")
        raise FailedPreconditionError(f"{execution.describe()}: its results can no longer be rejected")

    def cancel_execution(self, execution_id: str, reason: str = "") -> None:
        """Cancels an active execution (stopping its run) and tells the requester once it stopped.
        Cancelling an execution that has ended already does nothing."""
        execution = self._get(execution_id)
        if execution.is_terminal:
            return
        self._update(execution, S.CANCELLED, expected=ACTIVE_STATES, reason=_because("cancelled", reason))
        work = self._work.get(execution.id)
        if work is not None:
            work.cancel()
        self._spawn(self._finish_cancel(execution, work))

    # -------------------------------------------------------------------------------------------
    # What the node tells about itself
    # -------------------------------------------------------------------------------------------

    def node_info(self) -> pb.NodeInfo:
        return pb.NodeInfo(
            node_id=self.node_id,
            address=self.address,
            # The stub wants the enum wrapper types; protobuf takes any ints for enum fields.
            engines=sorted(self.executors),  # type: ignore[arg-type]
            verifiers=sorted(self.verifiers),  # type: ignore[arg-type]
            publishers=sorted(self.publishers.kinds()),  # type: ignore[arg-type]
            total_capacity=self.limits.total,
            max_job_capacity=self.limits.per_job,
            version=self.version,
        )

    def available_capacity(self) -> pb.ResourceUsageData:
        return self.tracker.available()

    def execution_load(self) -> tuple[int, int]:
        """(running, queued): executions holding capacity and waiting for it, for the heartbeat."""
        return self.tracker.running_count(), self.tracker.queue_length()

    def _capacity_freed(self) -> None:
        if self._room_wanted:
            self._room_wanted = False
            self.room_freed.set()

    def active_executions(self) -> int:
        counts = self.store.counts_by_state()
        return sum(counts.get(state, 0) for state in ACTIVE_STATES)

    def debug_info(self) -> dict[str, Any]:
        """Counters for GetNodeInfo's debug_info: executions by state, bids, capacity in use."""
        counts = self.store.counts_by_state()
        return {
            "executions": {state.label: counts.get(state, 0) for state in S},
            "bids": {"accepted": self.bids_accepted, "refused": self.bids_refused},
            "capacity": {
                "running": _usage_dict(self.tracker.running),
                "queued": _usage_dict(self.tracker.queued),
                "queue_length": self.tracker.queue_length(),
            },
            "tasks": {"work": len(self._work), "background": len(self._tasks)},
        }

    # -------------------------------------------------------------------------------------------
    # Background work
    # -------------------------------------------------------------------------------------------

    async def _run(self, execution: Execution) -> None:
        job_id = execution.job_id
        executor = self.executors.get(execution.job.spec.engine)
        try:
            if executor is None:
                raise ExecutorError(f"executor {enums.ENGINE.name(execution.job.spec.engine)} not installed")
            await self.tracker.reserve(execution.id, execution.usage)
            started: float | None = None
            outcome = "failed"
            try:
                self._update(execution, S.RUNNING, expected=S.BID_ACCEPTED)
                started = time.monotonic()
                with self._span(
                    "compute.run", job_id=job_id, node_id=self.node_id, shard_index=execution.shard_index
                ):
                    context = await self._prepare_run(execution)
                    result = await run_with_timeout(executor, context)
                    if result.result_dir is not None:  # noop runs have none: no thread hop
                        result = await asyncio.to_thread(without_links, result)
                proposal = self.proposer.propose(execution, result)
                outcome = "completed"
            finally:
                self.tracker.release(execution.id)
                if started is not None:  # it ran: completed, failed or cancelled (by the requester, a stop)
                    if isinstance(sys.exc_info()[1], asyncio.CancelledError):
                        outcome = "cancelled"
                    engine = enums.ENGINE.name(execution.job.spec.engine)
                    self.metrics.execution_ended(engine, time.monotonic() - started, outcome)
        except asyncio.CancelledError:
            raise
        except FailedPreconditionError as exc:  # someone else moved it on (a cancellation)
            log.info("run of %s stopped: %s", execution.id, exc, extra=self._extra(job_id))
            return
        except (ExecutorError, ResourceExhaustedError) as exc:
            self._fail(execution, str(exc), expected=(S.BID_ACCEPTED, S.RUNNING))
            return
        except Exception as exc:
            log.exception("run of %s failed", execution.id, extra=self._extra(job_id))
            self._fail(execution, f"execution failed: {exc}", expected=(S.BID_ACCEPTED, S.RUNNING))
            return
        try:
            self._update(
                execution,
                S.WAITING_VERIFICATION,
                expected=S.RUNNING,
                run_output=result.summary(),
                proposal=proposal,
                status=result.note,
            )
        except FailedPreconditionError:
            return
        self._results[execution.id] = result
        self._deliver(self.callbacks.on_run_complete, execution)

    async def _prepare_run(self, execution: Execution) -> RunContext:
        """The run's volumes on this node and its fresh result folder (ExecutorError when they cannot be
        had). Noop jobs get neither: nothing would read them."""
        spec = execution.job.spec
        context = RunContext(execution, self.node_id, timeout=run_timeout(spec))
        if spec.engine == pb.Engine.ENGINE_NOOP:
            return context
        scratch = self.work_root / execution.id / "scratch"
        try:
            contexts, inputs, import_modules = await asyncio.gather(
                self.volumes.prepare(spec.contexts, field="Spec.Contexts", scratch=scratch),
                self._prepare_inputs(execution, scratch),
                self.volumes.prepare(
                    spec.wasm.import_modules, field="Spec.Wasm.ImportModules", scratch=scratch
                ),
            )
            result_dir = self.work_root / execution.id / "results"
            await asyncio.to_thread(shutil.rmtree, result_dir, ignore_errors=True)
            outputs = await asyncio.to_thread(prepare_outputs, result_dir, spec.outputs)
        except (StorageError, InvalidArgumentError) as exc:
            raise ExecutorError(str(exc)) from exc
        return dataclasses.replace(
            context,
            contexts=contexts,
            inputs=inputs,
            import_modules=import_modules,
            outputs=outputs,
            result_dir=result_dir,
        )

    async def _prepare_inputs(self, execution: Execution, scratch: Path) -> tuple[Mount, ...]:
        """The run's inputs: every input of an unsharded job. A sharded job's are its shard's batch, each
        item mounted at its own path, planned before the URL inputs are fetched so that only those the
        batch holds are downloaded (the `VolumesPort`; on a node, `compute.storage.shards`)."""
        job = execution.job
        if job.spec.sharding.glob_pattern:
            return await self.volumes.prepare_shard(job, execution.shard_index, scratch)
        return await self.volumes.prepare(job.spec.inputs, field="Spec.inputs", scratch=scratch)

    async def _publish(self, execution: Execution) -> None:
        job_id = execution.job_id
        try:
            if execution.state == S.RESULT_ACCEPTED:
                self._update(execution, S.PUBLISHING, expected=S.RESULT_ACCEPTED)
            kind = publisher_of(execution.job.spec)
            resolved = self.publishers.resolve(kind)
            if resolved is None:
                raise RuntimeError(f"publisher {enums.PUBLISHER.name(kind)} not installed")
            publisher, note = resolved
            with self._span(
                "compute.publish", job_id=job_id, node_id=self.node_id, shard_index=execution.shard_index
            ):
                published = await publisher.publish(execution, self._result_of(execution))
            self._update(
                execution, S.COMPLETED, expected=S.PUBLISHING, published_result=published, status=note
            )
        except asyncio.CancelledError:
            raise
        except FailedPreconditionError as exc:
            log.info("publication of %s stopped: %s", execution.id, exc, extra=self._extra(job_id))
            return
        except Exception as exc:
            log.warning("publication of %s failed: %s", execution.id, exc, extra=self._extra(job_id))
            self._fail(execution, f"publish failed: {exc}", expected=(S.RESULT_ACCEPTED, S.PUBLISHING))
            return
        self._deliver(self.callbacks.on_publish_complete, execution)

    def _result_of(self, execution: Execution) -> RunResult | None:
        """The run's result: kept since the run, else (after a restart) its result folder, if any."""
        result = self._results.get(execution.id)
        if result is not None:
            return result
        result_dir = self.work_root / execution.id / "results"
        if not result_dir.is_dir():
            return None
        output = execution.run_output or pb.RunCommandResult()
        exit_code = output.exit_code if output.HasField("exit_code") else -1
        return RunResult(b"", b"", exit_code, result_dir=result_dir)

    async def _finish_cancel(self, execution: Execution, work: asyncio.Task[None] | None) -> None:
        if work is not None:
            await asyncio.gather(work, return_exceptions=True)
            executor = self.executors.get(execution.job.spec.engine)
            if executor is not None:
                await executor.cancel(execution.id)
        await self._call(self.callbacks.on_cancel_complete, execution)

    def _start_work(self, execution: Execution, coro: Awaitable[None]) -> None:
        task = self._spawn(coro)
        self._work[execution.id] = task

        def forget(done: asyncio.Task[Any]) -> None:
            if self._work.get(execution.id) is done:
                del self._work[execution.id]

        task.add_done_callback(forget)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _deliver(self, callback: Callable[..., Awaitable[None]], execution: Execution, *args: Any) -> None:
        self._spawn(self._call(callback, execution, *args))

    async def _call(self, callback: Callable[..., Awaitable[None]], execution: Execution, *args: Any) -> None:
        try:
            # Write-ahead: what the report tells is committed before the requester hears it, so a crash
            # right after cannot take the node back to an earlier state (e.g. Running) than the one the
            # requester recorded.
            await self.store.flush()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store is closing: the report goes out all the same
            log.warning(
                "could not commit before reporting %s: %s",
                execution.id,
                exc,
                extra=self._extra(execution.job_id),
            )
        try:
            await callback(execution, *args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "could not tell the requester about %s (%s): %s",
                execution.id,
                getattr(callback, "__name__", "callback"),
                exc,
                extra=self._extra(execution.job_id),
            )

    # -------------------------------------------------------------------------------------------
    # Helpers
    # -------------------------------------------------------------------------------------------

    def _get(self, execution_id: str) -> Execution:
        if not execution_id:
            raise InvalidArgumentError("the execution ID is empty", field="execution_id")
        return self.store.get(execution_id)

    def _update(
        self,
        execution: Execution,
        to: ExecutionState,
        *,
        expected: ExecutionState | Iterable[ExecutionState],
        reason: str = "",
        **changes: Any,
    ) -> Execution:
        updated = self.store.update(execution.id, to, expected=expected, reason=reason, **changes)
        if updated.is_terminal:
            if self._by_shard.get(updated.shard_id) == updated.id:
                del self._by_shard[updated.shard_id]
            self._results.pop(updated.id, None)
            self._discard_results(updated.id)
        return updated

    def _discard_results(self, execution_id: str) -> None:
        """Removes an ended execution's folders, once its run (if any) has stopped writing to them."""
        if not (self.work_root / execution_id).exists():
            return
        work = self._work.get(execution_id)
        if work is asyncio.current_task():
            work = None  # the run or publication ending it is done with the folder
        self._spawn(self._remove_results(execution_id, work))

    async def _remove_results(self, execution_id: str, work: asyncio.Task[None] | None) -> None:
        if work is not None:
            await asyncio.gather(work, return_exceptions=True)
        await asyncio.to_thread(shutil.rmtree, self.work_root / execution_id, ignore_errors=True)

    def _fail(self, execution: Execution, error: str, *, expected: Iterable[ExecutionState]) -> None:
        try:
            self._update(execution, S.FAILED, expected=expected, reason=error)
        except FailedPreconditionError:
            return
        log.info("execution %s failed: %s", execution.id, error, extra=self._extra(execution.job_id))
        self._deliver(self.callbacks.on_compute_failure, execution, error)

    @staticmethod
    def _was(execution: Execution, state: ExecutionState) -> bool:
        return any(t.to_state == state for t in execution.history)

    def _extra(self, job_id: str) -> dict[str, str]:
        return {"job_id": job_id, "node_id": self.node_id}


def _because(what: str, reason: str) -> str:
    return f"{what}: {reason}" if reason else what


def _usage_dict(usage: pb.ResourceUsageData) -> dict[str, float | int]:
    return {"cpu": usage.cpu, "memory": usage.memory, "disk": usage.disk, "gpu": usage.gpu}
