"""The IPFS publisher of a node connected to an IPFS daemon (`--ipfs-connect`, as in Bacalhau v0.3): adds
and pins the shard's whole result folder (`stdout`, `stderr`, `exitCode`, one folder per output) and returns
`{StorageSource: IPFS, Name: "job-<job>-shard-<i>-host-<node>", CID}`.

The CID is CIDv1 (raw leaves, base32), the one `ipfs add -r --cid-version=1` and the node's content
store give the same folder. A run without a result folder (the noop engine) publishes a folder made of
its streams and exit code, as the content-store publisher does. After a restart the results are gone
(`result` is None): that is a PublisherError.
"""

from bacalhau_grpc.common.ipfs import IpfsClient, IpfsError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.executions import Execution
from bacalhau_grpc.compute.domain.runs import RunResult
from bacalhau_grpc.compute.publishers.base import PublisherError, published_spec, results_folder


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
        with results_folder(execution, result) as folder:
            try:
                cid = await self.client.add_folder(folder)
            except (IpfsError, OSError) as exc:
                raise PublisherError(
                    f"could not publish the results of {execution.id} to IPFS: {exc}"
                ) from exc
        return published_spec(execution, self.node_id, self.publisher, cid)
