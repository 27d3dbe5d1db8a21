"""Stand-ins for the requester's ports (compute nodes and the verifier) in domain tests, a harness that runs a
real `Requester` on a real store with them, and a poller."""

import asyncio
import functools
import itertools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bacalhau_grpc.common.errors import UnavailableError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain import shard_fsm as f
from bacalhau_grpc.requester.domain.lifecycle import Requester
from bacalhau_grpc.requester.domain.ports import BidAnswer, ExecutionUpdate, VerifyRequest
from bacalhau_grpc.requester.domain.shard_fsm import ProposalData, Verdict
from bacalhau_grpc.requester.store.sqlite import RequesterStore


@dataclass
class FakeCompute:
    """Answers AskForBid per node address: "bid", ("decline", reason) or an exception to raise."""

    answers: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    # One (port method, address, items) per batch call.
    batches: list[tuple[str, str, int]] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)  # method name -> error
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def executions(self, method: str) -> list[str]:
        return [args for name, _, args in self.calls if name == method]

    def _record(self, name: str, address: str, args: Any) -> None:
        self.calls.append((name, address, args))
        if name in self.fail:
            raise self.fail[name]

    async def ask_for_bids(
        self, address: str, asks: Sequence[tuple[pb.Job, int]]
    ) -> list[BidAnswer | BaseException]:
        self.batches.append(("ask_for_bids", address, len(asks)))
        return [_result_of(functools.partial(self._ask, address, job)) for job, _ in asks]

    def _ask(self, address: str, job: pb.Job) -> BidAnswer:
        self._record("ask_for_bid", address, job.id)
        answer = self.answers.get(address, "bid")
        if isinstance(answer, Exception):
            raise answer
        if answer == "bid":
            return BidAnswer(True, f"e-{next(self._ids)}-{address}")
        # ("decline", reason) or ("busy", reason): a refusal, the second for want of capacity.
        return BidAnswer(False, reason=answer[1], busy=answer[0] == "busy")

    async def update_executions(
        self, address: str, updates: Sequence[ExecutionUpdate]
    ) -> list[BaseException | None]:
        self.batches.append(("update_executions", address, len(updates)))
        results = [
            _result_of(functools.partial(self._record, _UPDATE_NAMES[type(u)], address, u.execution_id))
            for u in updates
        ]
        return [r if isinstance(r, BaseException) else None for r in results]

    async def close(self) -> None:
        pass


@dataclass
class FakeVerifier:
    """Accepts every proposal, unless `reject` names a node (with the reason) or `error` is set."""

    reject: dict[str, str] = field(default_factory=dict)
    error: Exception | None = None
    requests: list[tuple[str, int, Sequence[ProposalData]]] = field(default_factory=list)

    async def verify_shards(self, requests: Sequence[VerifyRequest]) -> list[list[Verdict] | BaseException]:
        return [_result_of(functools.partial(self._verify, *request)) for request in requests]

    def _verify(self, job: pb.Job, shard_index: int, proposals: Sequence[ProposalData]) -> list[Verdict]:
        self.requests.append((job.id, shard_index, proposals))
        if self.error is not None:
            raise self.error
        return [
            Verdict(p.execution_id, p.node_id, p.node_id not in self.reject, self.reject.get(p.node_id, ""))
            for p in proposals
        ]

    async def close(self) -> None:
        pass


UNREACHABLE = UnavailableError("connection refused")

# The name each update is recorded under (that of the single call it stands for).
_UPDATE_NAMES = {
    f.NotifyBidAccepted: "bid_accepted",
    f.NotifyBidRejected: "bid_rejected",
    f.NotifyResultAccepted: "result_accepted",
    f.NotifyResultRejected: "result_rejected",
    f.CancelExecution: "cancel_execution",
}


def _result_of(item: Callable[[], Any]) -> Any:
    """One batch item's result: its value, or the exception it raised."""
    try:
        return item()
    except Exception as exc:
        return exc


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll `predicate` until it is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.002)


class Harness:
    """A `Requester` on a real SQLite store in `tmp_path` (`store_class`: RequesterStore or a subclass), with
    `FakeCompute` and `FakeVerifier`; `options` are the requester's."""

    def __init__(self, tmp_path, store_class: type[RequesterStore] = RequesterStore, **options):
        self.path = tmp_path / "requester.db"
        self.store_class = store_class
        self.options = options
        self.compute = FakeCompute()
        self.verifier = FakeVerifier()
        self.requester: Requester | None = None
        self.store: RequesterStore | None = None

    async def start(self) -> Requester:
        self.store = self.store_class(self.path)
        await self.store.open()
        options = {"negotiation_timeout": 60.0, "default_job_timeout": 600.0, "rng": random.Random(1)}
        options.update(self.options)
        self.requester = Requester(
            node_id="requester-test",
            store=self.store,
            compute=self.compute,
            verifier=self.verifier,
            **options,
        )
        await self.requester.start()
        return self.requester

    async def stop(self) -> None:
        if self.requester is not None:
            await self.requester.stop(1.0)
            await self.store.close()
            self.requester = None

    async def restart(self) -> Requester:
        await self.stop()
        return await self.start()
