"""Publishing into the node's own content store: the Local publisher, and the IPFS publisher of a node
that runs without an IPFS daemon (the CID is the one IPFS gives the same folder, and the content is
downloaded from the node over ContentService).

The published folder is the shard's result folder (`stdout`, `stderr`, `exitCode`, one folder per
output). A run without one (the noop engine) publishes a folder made of its streams and exit code.
"""

import asyncio

from bacalhau_grpc.common.content.store import ContentError, ContentStore
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.executions import Execution
from bacalhau_grpc.compute.domain.runs import RunResult
from bacalhau_grpc.compute.publishers.base import PublisherError, published_spec, results_folder


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
        with results_folder(execution, result) as folder:
            try:
                cid = await asyncio.to_thread(self.store.add_folder, folder)
            except (ContentError, OSError) as exc:
                raise PublisherError(f"could not keep the results of {execution.id}: {exc}") from exc
        return published_spec(execution, self.node_id, self.publisher, cid)
