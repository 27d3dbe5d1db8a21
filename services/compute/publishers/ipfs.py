"""The IPFS publisher of a node connected to an IPFS daemon (`--ipfs-connect`; v0.3 §3.7): adds and pins
the shard's whole result folder (`stdout`, `stderr`, `exitCode`, one folder per output) and returns
`{StorageSource: IPFS, Name: "job-<job>-shard-<i>-host-<node>", CID}`.

The CID is CIDv1 (raw leaves, base32), the one `ipfs add -r --cid-version=1` and the node's content
store give the same folder. A run without a result folder (the noop engine) publishes a folder made of
its streams and exit code, as the content-store publisher does. After a restart the results are gone
(`result` is None): that is a PublisherError.
"""

import tempfile
from pathlib import Path

from bacalhau_grpc.common.ipfs import IpfsClient, IpfsError
from bacalhau_grpc.common.model import enums, pb
from bacalhau_grpc.compute.domain.executions import Execution
from bacalhau_grpc.compute.executors.base import RunResult
from bacalhau_grpc.compute.executors.results import EXIT_CODE, STDERR, STDOUT
from bacalhau_grpc.compute.publishers.base import PublisherError
from bacalhau_grpc.compute.publishers.content import published_name


class IpfsPublisher:
    publisher = pb.Publisher.PUBLISHER_IPFS

    def __init__(self, client: IpfsClient, node_id: str) -> None:
        self.client = client
        self.node_id = node_id

    def is_installed(self) -> bool:
        """A node has this publisher only when it is connected to a daemon; whether the daemon answers
        is found out when publishing."""
        return True

    async def publish(self, execution: Execution, result: RunResult | None) -> pb.StorageSpec:
        if result is None:
            raise PublisherError(f"the results of {execution.id} are gone: the node lost them in a restart")
        if result.result_dir is not None and not result.result_dir.is_dir():
            raise PublisherError(
                f"the results of {execution.id} are gone: {result.result_dir} does not exist"
            )
        try:
            cid = await self._add(result)
        except (IpfsError, OSError) as exc:
            raise PublisherError(f"could not publish the results of {execution.id} to IPFS: {exc}") from exc
        return pb.StorageSpec(
            storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS,
            name=published_name(execution, self.node_id),
            cid=cid,
            metadata={"publisher": enums.PUBLISHER.name(self.publisher), "node_id": self.node_id},
        )

    async def _add(self, result: RunResult) -> str:
        if result.result_dir is not None:
            return await self.client.add_folder(result.result_dir)
        with tempfile.TemporaryDirectory(prefix="bacalhau-results-") as temp:
            folder = Path(temp)
            (folder / STDOUT).write_bytes(result.stdout)
            (folder / STDERR).write_bytes(result.stderr)
            (folder / EXIT_CODE).write_text(str(result.exit_code))
            return await self.client.add_folder(folder)
