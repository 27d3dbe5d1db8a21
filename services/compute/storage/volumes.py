"""Preparing a job's volumes on this node: each volume through the provider of its source, all of one
list in parallel, each to a read-only `Mount` where the job sees it (`checks.mount_path`: its path, or
`<path>/<file name>` for a URL's file), the same for every engine."""

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path

from bacalhau_grpc.common.model import checks, enums, pb
from bacalhau_grpc.compute.domain.ports import StorageError
from bacalhau_grpc.compute.domain.runs import Mount
from bacalhau_grpc.compute.storage.base import StorageProvider


class Volumes:
    def __init__(self, providers: Iterable[StorageProvider]) -> None:
        self.providers = {provider.source: provider for provider in providers}

    async def close(self) -> None:
        """Closes the providers that hold resources (those with an `async close()`: URL downloads)."""
        for provider in self.providers.values():
            close = getattr(provider, "close", None)
            if close is not None:
                await close()

    def sources(self) -> list[int]:
        return sorted(self.providers)

    async def is_local(self, volume: pb.StorageSpec) -> bool:
        provider = self.providers.get(volume.storage_source)
        return provider is not None and await provider.is_local(volume)

    async def prepare(
        self, volumes: Sequence[pb.StorageSpec], *, field: str, scratch: Path
    ) -> tuple[Mount, ...]:
        """The volumes as read-only mounts, in order, prepared in parallel. StorageError names the first
        that failed, e.g. "Spec.inputs[1] (IPFS Qm…): could not fetch …". Each volume gets its own empty
        folder under `scratch` (the execution's scratch folder) for files it downloads."""
        prepared = await self.prepare_some(volumes, range(len(volumes)), field=field, scratch=scratch)
        return tuple(prepared.values())

    async def prepare_some(
        self, volumes: Sequence[pb.StorageSpec], indexes: Iterable[int], *, field: str, scratch: Path
    ) -> dict[int, Mount]:
        """Only the volumes at `indexes`, as `prepare` does, by index: errors and scratch folders name
        each by its place in the whole list (`Spec.inputs[3]`), whichever others are left out."""
        chosen = list(indexes)
        results = await asyncio.gather(
            *(self._prepare_one(volumes[i], f"{field}[{i}]", scratch / f"{field}[{i}]") for i in chosen),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return dict(zip(chosen, results, strict=True))  # type: ignore[arg-type]

    async def _prepare_one(self, volume: pb.StorageSpec, where: str, scratch: Path) -> Mount:
        source = enums.STORAGE_SOURCE_TYPE.name(volume.storage_source)
        what = f"{where} ({source} {volume.cid or volume.url})"
        provider = self.providers.get(volume.storage_source)
        if provider is None:
            raise StorageError(f"{what}: this node has no storage provider for {source}")
        try:
            target = checks.mount_path(volume)  # ValueError: a URL naming no file
            await asyncio.to_thread(scratch.mkdir, parents=True, exist_ok=True)
            path = await provider.prepare(volume, scratch)
        except (StorageError, ValueError) as exc:
            raise StorageError(f"{what}: {exc}") from exc
        return Mount(source=path, target=target, read_only=True)
