"""Storage providers: how a compute node gets a job's volumes onto its disk (Bacalhau v0.3's storage
providers).

A provider serves one `StorageSourceType`. `is_local` says whether the node has the data without
fetching it (the input-locality bid strategy asks); `prepare` returns the local file or folder to mount
where the job sees the volume (`checks.mount_path`), fetching it when needed, or raises `StorageError`
(the compute domain's, `compute/domain/ports.py`) saying why it cannot. `scratch` is an empty folder of
the execution's own, removed when the execution ends: a provider that downloads for one run only (URLs)
puts its files there; one that keeps content for later runs (a content store) ignores it.
"""

from pathlib import Path
from typing import Protocol

from bacalhau_grpc.common.model import pb


class StorageProvider(Protocol):
    @property
    def source(self) -> int:
        """The `pb.StorageSourceType` this provider serves."""
        ...

    async def is_local(self, volume: pb.StorageSpec) -> bool: ...

    async def prepare(self, volume: pb.StorageSpec, scratch: Path) -> Path: ...
