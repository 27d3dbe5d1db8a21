"""Publishing into the node's own content store: the Local publisher, and the IPFS publisher of a node
that runs without an IPFS daemon (the CID is the one IPFS gives the same folder, and the content is
downloaded from the node over ContentService).

The published folder is the shard's result folder (`stdout`, `stderr`, `exitCode`, one folder per
output). A run without one (the noop engine) publishes a folder made of its streams and exit code.
"""

import asyncio
import tempfile
from pathlib import Path

from bacalhau_grpc.common.content.store import ContentError, ContentStore
from bacalhau_grpc.common.model import enums, pb
from bacalhau_grpc.compute.domain.executions import Execution
from bacalhau_grpc.compute.executors.base import RunResult
from bacalhau_grpc.compute.executors.results import EXIT_CODE, STDERR, STDOUT
from bacalhau_grpc.compute.publishers.base import PublisherError


def published_name(execution: Execution, node_id: str) -> str:
    """v0.3's name of a shard's published results."""
    return f"job-{execution.job_id}-shard-{execution.shard_index}-host-{node_id}"


class ContentPublisher:
    def __init__(
        self, store: ContentStore, node_id: str, publisher: int = pb.Publisher.PUBLISHER_LOCAL
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.publisher = publisher

    def is_installed(self) -> bool:
        return True

    async def publish(self, execution: Execution, result: RunResult | None) -> pb.StorageSpec:
        if result is None:
            raise PublisherError(f"the results of {execution.id} are gone: the node lost them in a restart")
        try:
            cid = await asyncio.to_thread(self._add, result)
        except (ContentError, OSError) as exc:
            raise PublisherError(f"could not keep the results of {execution.id}: {exc}") from exc
        return pb.StorageSpec(
            storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS,
            name=published_name(execution, self.node_id),
            cid=cid,
            metadata={"publisher": enums.PUBLISHER.name(self.publisher), "node_id": self.node_id},
        )

    def _add(self, result: RunResult) -> str:
        if result.result_dir is not None and result.result_dir.is_dir():
            return self.store.add_folder(result.result_dir)
        with tempfile.TemporaryDirectory(dir=self.store.root / ".staging") as temp:
            folder = Path(temp)
            (folder / STDOUT).write_bytes(result.stdout)
            (folder / STDERR).write_bytes(result.stderr)
            (folder / EXIT_CODE).write_text(str(result.exit_code))
            return self.store.add_folder(folder)
