"""Publishers: where an accepted execution's results go. They implement the compute domain's
`Publisher` port (`compute/domain/ports.py`); here are their shared helpers and the Noop one.

A publisher returns the StorageSpec the requester records as the published result, or raises
`PublisherError` (the execution fails and the requester is told, instead of v0.3's silent log line).
"""

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bacalhau_grpc.common.model import enums, pb
from bacalhau_grpc.compute.domain.executions import Execution
from bacalhau_grpc.compute.domain.runs import EXIT_CODE, STDERR, STDOUT, RunResult


class PublisherError(Exception):
    """Publishing failed; the text is what the requester is told."""


def published_name(execution: Execution, node_id: str) -> str:
    """v0.3's name of a shard's published results."""
    return f"job-{execution.job_id}-shard-{execution.shard_index}-host-{node_id}"


def published_spec(execution: Execution, node_id: str, publisher: int, cid: str) -> pb.StorageSpec:
    """The StorageSpec a publisher returns for a shard's results published under `cid`."""
    return pb.StorageSpec(
        storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS,
        name=published_name(execution, node_id),
        cid=cid,
        metadata={"publisher": enums.PUBLISHER.name(publisher), "node_id": node_id},
    )


@contextlib.contextmanager
def results_folder(execution: Execution, result: RunResult | None) -> Iterator[Path]:
    """The folder to publish: the run's result folder, or - for a run without one (the noop engine) - a
    temporary folder made of its streams and exit code. PublisherError when the results are gone."""
    if result is None:
        raise PublisherError(f"the results of {execution.id} are gone: the node lost them in a restart")
    if result.result_dir is not None:
        if not result.result_dir.is_dir():
            raise PublisherError(
                f"the results of {execution.id} are gone: {result.result_dir} does not exist"
            )
        yield result.result_dir
        return
    with tempfile.TemporaryDirectory(prefix="bacalhau-results-") as temp:
        folder = Path(temp)
        (folder / STDOUT).write_bytes(result.stdout)
        (folder / STDERR).write_bytes(result.stderr)
        (folder / EXIT_CODE).write_text(str(result.exit_code))
        yield folder


class NoopPublisher:
    """Publishes nothing: returns StorageSpec{name "noop", metadata {"publisher": "Noop"}}."""

    publisher = pb.Publisher.PUBLISHER_NOOP

    def is_installed(self) -> bool:
        return True

    async def publish(self, execution: Execution, result: RunResult | None) -> pb.StorageSpec:
        return pb.StorageSpec(name="noop", metadata={"publisher": "Noop"})
