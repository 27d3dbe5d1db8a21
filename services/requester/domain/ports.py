"""What the requester's domain needs from the outside, as interfaces (implemented in clients/ over gRPC).

Every method raises a BacalhauError (UnavailableError, DeadlineExceededError, ...) when the call fails.
"""

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.shard_fsm import ProposalData, Verdict


@dataclass(frozen=True)
class BidAnswer:
    accepted: bool
    execution_id: str = ""
    reason: str = ""
    node_id: str = ""
    # Refused only for want of free capacity now: ask again after the node's next heartbeat.
    busy: bool = False


class ComputePort(Protocol):
    """Calls to one compute node, addressed by its `host:port`."""

    async def ask_for_bid(self, address: str, job: pb.Job, shard_index: int) -> BidAnswer: ...

    async def bid_accepted(self, address: str, execution_id: str) -> None: ...

    async def bid_rejected(self, address: str, execution_id: str, reason: str) -> None: ...

    async def result_accepted(self, address: str, execution_id: str) -> None: ...

    async def result_rejected(self, address: str, execution_id: str, reason: str) -> None: ...

    async def cancel_execution(self, address: str, execution_id: str, reason: str) -> None: ...

    def stream_logs(
        self, address: str, execution_id: str, follow: bool
    ) -> AsyncGenerator[tuple[bool, bytes], None]:
        """The execution's output on its node as (is_stderr, bytes) chunks: what it wrote so far, then
        (with `follow`) what it writes until its run is over. Failures raise while iterating."""
        ...

    async def close(self) -> None: ...


class VerifierPort(Protocol):
    async def verify(
        self, job: pb.Job, shard_index: int, proposals: Sequence[ProposalData]
    ) -> list[Verdict]: ...

    async def close(self) -> None: ...
