"""A sharded job's inputs on a compute node: the mounts of one shard's batch (Bacalhau v0.3's
sharding).

The node plans the shard before it prepares the inputs that are one atom each, so that of those it fetches
only the ones its batch holds:

1. it prepares the inputs the plan has to list (IPFS: `sharding.needs_listing`) and lists each on its
   disk the way the requester listed it at submission (`common.content.listing`);
2. it derives the same plan (`common.model.sharding.plan`) and takes its shard's batch; every other
   input (a URL, an unsealed path) is one atom whose path comes from the spec alone, so no content of
   theirs is needed to plan;
3. it prepares only the other inputs the batch holds: a URL input that the batch does not select is
   never downloaded (1,000 URL inputs in batches of 1: one download per shard run, not 1,000);
4. it mounts the atoms of the batch:

* an atom that is an input itself mounts that input as prepared;
* an atom inside an input mounts `<prepared input>/<sub path>` at the atom's path (`/inputs/a/3.txt`);
* an atom inside a folder that the same batch mounts already is left out: the job sees it through the
  folder, at the same path (so no mount lies inside another one).

Plans are kept per job (a few recent ones), so a node running many shards of one job lists its inputs
once instead of once per shard: 10,000 shards do not mean 10,000 walks of 10,000 entries.
"""

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

from bacalhau_grpc.common.content.listing import list_tree
from bacalhau_grpc.common.model import pb, sharding
from bacalhau_grpc.compute.domain.runs import Mount
from bacalhau_grpc.compute.storage.volumes import Volumes

RECENT_PLANS = 16
FIELD = "Spec.inputs"

Plan = list[list[sharding.Atom]]


class ShardPlans:
    """The plans of the sharded jobs a node ran recently, by job."""

    def __init__(self, size: int = RECENT_PLANS) -> None:
        self.size = size
        self._plans: OrderedDict[tuple[str, bytes], Plan] = OrderedDict()
        self._lock = threading.Lock()

    async def shard_inputs(
        self, job: pb.Job, shard_index: int, volumes: Volumes, scratch: Path
    ) -> tuple[Mount, ...]:
        """The mounts of the shard's batch, preparing (through `volumes`, into `scratch`) the inputs the
        plan lists and then only the other inputs the batch holds (see the module docstring).
        StorageError naming the input that could not be prepared; InvalidArgumentError when no atom
        matches or the plan has no such shard ("shard N is out of range (the job has M)")."""
        inputs = job.spec.inputs
        listed = await volumes.prepare_some(inputs, listed_inputs(inputs), field=FIELD, scratch=scratch)
        atoms = await self.batch(job, shard_index, listed)
        held = await volumes.prepare_some(
            inputs, whole_inputs_in(atoms, inputs), field=FIELD, scratch=scratch
        )
        return mounts_of(atoms, {**listed, **held})

    async def batch(
        self, job: pb.Job, shard_index: int, listed: Mapping[int, Mount]
    ) -> Sequence[sharding.Atom]:
        """The atoms of the shard, from the job's plan; `listed` holds the prepared inputs the plan lists,
        by index in Spec.inputs."""
        shards = await asyncio.to_thread(self._plan, job, listed)
        return sharding.shard_of(shards, shard_index)

    def _plan(self, job: pb.Job, listed: Mapping[int, Mount]) -> Plan:
        key = (job.id, _fingerprint(job.spec))
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
        # Computed outside the lock: two shards starting together may both compute it (same result).
        plan = plan_on_disk(job.spec, listed)
        with self._lock:
            self._plans[key] = plan
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)
        return plan


def listed_inputs(inputs: Sequence[pb.StorageSpec]) -> list[int]:
    """The indexes of the inputs the plan lists (IPFS): they are prepared before planning."""
    return [index for index, volume in enumerate(inputs) if sharding.needs_listing(volume)]


def whole_inputs_in(atoms: Sequence[sharding.Atom], inputs: Sequence[pb.StorageSpec]) -> list[int]:
    """The indexes of the inputs that are one atom each (URLs, unsealed paths) and that the batch
    `atoms` holds, in order: the only ones of them the shard prepares."""
    held = {atom.volume_index for atom in atoms}
    return [index for index in sorted(held) if not sharding.needs_listing(inputs[index])]


def plan_on_disk(spec: pb.Spec, listed: Mapping[int, Mount]) -> Plan:
    """The job's plan: the inputs it lists (prepared, in `listed` by index) listed on this disk, the
    others one atom each, named from the spec."""
    listings = [
        list_tree(listed[index].source) if sharding.needs_listing(volume) else None
        for index, volume in enumerate(spec.inputs)
    ]
    return sharding.plan(spec, listings)


def mounts_of(atoms: Sequence[sharding.Atom], inputs: Mapping[int, Mount]) -> tuple[Mount, ...]:
    """The batch's atoms as read-only mounts (see the module docstring), from the prepared `inputs` by
    index in Spec.inputs (each input an atom of the batch comes from is there)."""
    in_batch = {(atom.volume_index, atom.sub_path) for atom in atoms}
    mounts = []
    for atom in atoms:
        root = inputs[atom.volume_index]
        if not atom.sub_path:
            mounts.append(root)
        elif not _inside_mounted_folder(atom, in_batch):
            mounts.append(Mount(source=root.source / atom.sub_path, target=atom.path, read_only=True))
    return tuple(mounts)


def _inside_mounted_folder(atom: sharding.Atom, in_batch: set[tuple[int, str]]) -> bool:
    """Whether a folder holding the atom (its input's root included) is an atom of the same batch."""
    parts = atom.sub_path.split("/")
    return any((atom.volume_index, "/".join(parts[:depth])) in in_batch for depth in range(len(parts)))


def _fingerprint(spec: pb.Spec) -> bytes:
    """What the plan depends on besides the content: the sharding config and the inputs."""
    return pb.Spec(sharding=spec.sharding, inputs=spec.inputs).SerializeToString(deterministic=True)
