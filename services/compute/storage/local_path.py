"""FilecoinUnsealed volumes: data a storage provider already holds unsealed on this machine, found by a
path template such as `/data/unsealed/{{.CID}}` (v0.3's `--filecoin-unsealed-path`). Local by
definition: the volume is there or it is not."""

from pathlib import Path

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.ports import StorageError
from bacalhau_grpc.compute.settings import UNSEALED_PLACEHOLDER as PLACEHOLDER


class UnsealedPathSource:
    source = pb.StorageSourceType.STORAGE_SOURCE_TYPE_FILECOIN_UNSEALED

    def __init__(self, template: str) -> None:
        if PLACEHOLDER not in template:
            raise ValueError(f"the unsealed path template {template!r} has no {PLACEHOLDER}")
        self.template = template

    def path_of(self, volume: pb.StorageSpec) -> Path:
        if not volume.cid or "/" in volume.cid or volume.cid in (".", ".."):
            raise StorageError(f"{volume.cid!r} cannot name an unsealed path")
        return Path(self.template.replace(PLACEHOLDER, volume.cid))

    async def is_local(self, volume: pb.StorageSpec) -> bool:
        try:
            return self.path_of(volume).exists()
        except StorageError:
            return False

    async def prepare(self, volume: pb.StorageSpec, scratch: Path) -> Path:
        path = self.path_of(volume)
        if not path.exists():
            raise StorageError(f"unsealed data for {volume.cid} is not at {path}")
        return path
