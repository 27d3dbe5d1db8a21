"""A sharded job's inputs on a compute node: the mounts of one shard's batch (v0.3 §3.9).

The node prepares the job's inputs as for any job, lists each prepared IPFS input on its disk the way
the requester listed it at submission (`common.content.listing`), derives the same plan
(`common.model.sharding.plan`) and mounts the atoms of its shard:

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
from collections.abc import Sequence

from bacalhau_grpc.common.content.listing import list_tree
from bacalhau_grpc.common.model import pb, sharding
from bacalhau_grpc.compute.executors.base import Mount

RECENT_PLANS = 16

Plan = list[list[sharding.Atom]]


class ShardPlans:
    """The plans of the sharded jobs a node ran recently, by job."""

    def __init__(self, size: int = RECENT_PLANS) -> None:
        self.size = size
        self._plans: OrderedDict[tuple[str, bytes], Plan] = OrderedDict()
        self._lock = threading.Lock()

    async def shard_inputs(self, job: pb.Job, shard_index: int, inputs: Sequence[Mount]) -> tuple[Mount, ...]:
        """The mounts of the shard's batch, from the job's prepared `inputs` (in Spec.inputs order).
        InvalidArgumentError when no atom matches or the plan has no such shard ("shard N is out of range
        (the job has M)")."""
        shards = await asyncio.to_thread(self._plan, job, inputs)
        return mounts_of(sharding.shard_of(shards, shard_index), inputs)

    def _plan(self, job: pb.Job, inputs: Sequence[Mount]) -> Plan:
        key = (job.id, _fingerprint(job.spec))
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
        # Computed outside the lock: two shards starting together may both compute it (same result).
        plan = plan_on_disk(job.spec, inputs)
        with self._lock:
            self._plans[key] = plan
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)
        return plan


def plan_on_disk(spec: pb.Spec, inputs: Sequence[Mount]) -> Plan:
    """The job's plan from its prepared inputs: IPFS inputs listed on this disk, the others one item."""
    listings = [
        list_tree(mount.source) if sharding.needs_listing(volume) else None
        for volume, mount in zip(spec.inputs, inputs, strict=True)
    ]
    return sharding.plan(spec, listings)


def mounts_of(atoms: Sequence[sharding.Atom], inputs: Sequence[Mount]) -> tuple[Mount, ...]:
    """The batch's atoms as read-only mounts (see the module docstring)."""
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
