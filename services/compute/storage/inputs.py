"""A run's volumes on this node: the compute domain's `VolumesPort` (`compute/domain/ports.py`) over the
node's storage providers (`Volumes`) and, for a sharded job, the shard plans (`ShardPlans`)."""

from collections.abc import Sequence
from pathlib import Path

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.runs import Mount
from bacalhau_grpc.compute.storage.shards import ShardPlans
from bacalhau_grpc.compute.storage.volumes import Volumes


class RunInputs:
    def __init__(self, volumes: Volumes, shard_plans: ShardPlans | None = None) -> None:
        self.volumes = volumes
        # Each sharded job's plan, derived once per job from its inputs on this node's disk.
        self.shard_plans = shard_plans or ShardPlans()

    async def prepare(
        self, volumes: Sequence[pb.StorageSpec], *, field: str, scratch: Path
    ) -> tuple[Mount, ...]:
        return await self.volumes.prepare(volumes, field=field, scratch=scratch)

    async def prepare_shard(self, job: pb.Job, shard_index: int, scratch: Path) -> tuple[Mount, ...]:
        return await self.shard_plans.shard_inputs(job, shard_index, self.volumes, scratch)
