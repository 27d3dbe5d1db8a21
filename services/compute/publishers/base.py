"""Publishers: where an accepted execution's results go. The `Publisher` protocol and the Noop one.

A publisher returns the StorageSpec the requester records as the published result, or raises
`PublisherError` (the execution fails and the requester is told, instead of v0.3's silent log line).
"""

from typing import Protocol

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.executions import Execution
from bacalhau_grpc.compute.executors.base import RunResult


class PublisherError(Exception):
    """Publishing failed; the text is what the requester is told."""


class Publisher(Protocol):
    @property
    def publisher(self) -> int:
        """The `pb.Publisher` this implements."""
        ...

    def is_installed(self) -> bool: ...

    async def publish(self, execution: Execution, result: RunResult | None) -> pb.StorageSpec:
        """Publishes the execution's results (`result` is None when they are known only from the
        stored summary, e.g. after a restart)."""
        ...


class NoopPublisher:
    """Publishes nothing: returns StorageSpec{name "noop", metadata {"publisher": "Noop"}}."""

    publisher = pb.Publisher.PUBLISHER_NOOP

    def is_installed(self) -> bool:
        return True

    async def publish(self, execution: Execution, result: RunResult | None) -> pb.StorageSpec:
        return pb.StorageSpec(name="noop", metadata={"publisher": "Noop"})
