"""One storage source served by two providers in turn: IPFS volumes on a node connected to an IPFS
daemon are looked for in the network's own content first (contexts uploaded to the requester, results
other nodes published locally), then on IPFS."""

from pathlib import Path

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.ports import StorageError
from bacalhau_grpc.compute.storage.base import StorageProvider


class EitherSource:
    def __init__(self, first: StorageProvider, then: StorageProvider) -> None:
        if first.source != then.source:
            raise ValueError("both providers must serve the same storage source")
        self.source = first.source
        self.first = first
        self.then = then

    async def is_local(self, volume: pb.StorageSpec) -> bool:
        return await self.first.is_local(volume) or await self.then.is_local(volume)

    async def prepare(self, volume: pb.StorageSpec, scratch: Path) -> Path:
        try:
            return await self.first.prepare(volume, scratch)
        except StorageError as first_error:
            try:
                return await self.then.prepare(volume, scratch)
            except StorageError as then_error:
                raise StorageError(f"{first_error}; {then_error}") from then_error

    async def close(self) -> None:
        for provider in (self.first, self.then):
            close = getattr(provider, "close", None)
            if close is not None:
                await close()
