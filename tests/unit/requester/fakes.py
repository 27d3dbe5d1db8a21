"""Stand-ins for the requester's ports (compute nodes and the verifier) in domain tests, and a poller."""

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bacalhau_grpc.common.errors import UnavailableError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.ports import BidAnswer
from bacalhau_grpc.requester.domain.shard_fsm import ProposalData, Verdict


@dataclass
class FakeCompute:
    """Answers AskForBid per node address: "bid", ("decline", reason) or an exception to raise."""

    answers: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)  # method name -> error
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def executions(self, method: str) -> list[str]:
        return [args for name, _, args in self.calls if name == method]

    def _record(self, name: str, address: str, args: Any) -> None:
        self.calls.append((name, address, args))
        if name in self.fail:
            raise self.fail[name]

    async def ask_for_bid(self, address: str, job: pb.Job, shard_index: int) -> BidAnswer:
        self._record("ask_for_bid", address, job.id)
        answer = self.answers.get(address, "bid")
        if isinstance(answer, Exception):
            raise answer
        if answer == "bid":
            return BidAnswer(True, f"e-{next(self._ids)}-{address}")
        # ("decline", reason) or ("busy", reason): a refusal, the second for want of capacity.
        return BidAnswer(False, reason=answer[1], busy=answer[0] == "busy")

    async def bid_accepted(self, address: str, execution_id: str) -> None:
        self._record("bid_accepted", address, execution_id)

    async def bid_rejected(self, address: str, execution_id: str, reason: str) -> None:
        self._record("bid_rejected", address, execution_id)

    async def result_accepted(self, address: str, execution_id: str) -> None:
        self._record("result_accepted", address, execution_id)

    async def result_rejected(self, address: str, execution_id: str, reason: str) -> None:
        self._record("result_rejected", address, execution_id)

    async def cancel_execution(self, address: str, execution_id: str, reason: str) -> None:
        self._record("cancel_execution", address, execution_id)

    async def close(self) -> None:
        pass


@dataclass
class FakeVerifier:
    """Accepts every proposal, unless `reject` names a node (with the reason) or `error` is set."""

    reject: dict[str, str] = field(default_factory=dict)
    error: Exception | None = None
    requests: list[tuple[str, int, Sequence[ProposalData]]] = field(default_factory=list)

    async def verify(self, job: pb.Job, shard_index: int, proposals: Sequence[ProposalData]) -> list[Verdict]:
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
