"""A sharded job on a compute node: the mounts of its shard's batch, and the bad actor lying on some
shards only."""

import hashlib
from pathlib import Path

import pytest

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.model.sharding import Atom
from bacalhau_grpc.compute.domain.executions import new_execution
from bacalhau_grpc.compute.domain.proposals import Proposer
from bacalhau_grpc.compute.executors.base import Mount, RunResult
from bacalhau_grpc.compute.settings import ComputeSettings
from bacalhau_grpc.compute.storage.shards import ShardPlans, mounts_of
from tests.unit.compute.support import make_job

IPFS = pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS
URL = pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD
ROOT = Path("/store/bafyexample")


def test_atoms_inside_an_input_mount_their_own_file_at_their_path():
    inputs = (Mount(ROOT, "/inputs"),)
    mounts = mounts_of([Atom(0, "a/1.txt", "/inputs/a/1.txt"), Atom(0, "b.txt", "/inputs/b.txt")], inputs)
    assert mounts == (
        Mount(ROOT / "a/1.txt", "/inputs/a/1.txt", read_only=True),
        Mount(ROOT / "b.txt", "/inputs/b.txt", read_only=True),
    )


def test_an_atom_that_is_the_input_mounts_the_input_as_prepared():
    downloaded = Mount(Path("/scratch/x.csv"), "/data/x.csv")
    assert mounts_of([Atom(1, "", "/data/x.csv")], (Mount(ROOT, "/inputs"), downloaded)) == (downloaded,)


def test_atoms_inside_a_folder_of_the_same_batch_are_seen_through_it():
    inputs = (Mount(ROOT, "/inputs"),)
    batch = [
        Atom(0, "a", "/inputs/a"),
        Atom(0, "a/1.txt", "/inputs/a/1.txt"),
        Atom(0, "ab.txt", "/inputs/ab.txt"),
    ]
    assert [m.target for m in mounts_of(batch, inputs)] == ["/inputs/a", "/inputs/ab.txt"]
    with_root = [Atom(0, "", "/inputs"), *batch]
    assert mounts_of(with_root, inputs) == (inputs[0],)


def sharded_job(pattern: str, batch_size: int = 1) -> pb.Job:
    job = make_job(engine=pb.Engine.ENGINE_WASM)
    job.spec.inputs.append(pb.StorageSpec(storage_source=IPFS, cid="bafyexample", path="/inputs"))
    job.spec.sharding.glob_pattern = pattern
    job.spec.sharding.batch_size = batch_size
    return job


async def test_the_shard_is_planned_from_the_prepared_content_on_disk(tmp_path):
    for name in ("1.txt", "2.txt", "3.txt", "skip.md"):
        (tmp_path / name).write_text(name)
    inputs = (Mount(tmp_path, "/inputs"),)
    plans = ShardPlans()
    job = sharded_job("/inputs/*.txt", batch_size=2)
    assert [m.target for m in await plans.shard_inputs(job, 0, inputs)] == ["/inputs/1.txt", "/inputs/2.txt"]
    assert await plans.shard_inputs(job, 1, inputs) == (Mount(tmp_path / "3.txt", "/inputs/3.txt"),)
    with pytest.raises(InvalidArgumentError, match=r"shard 2 is out of range \(the job has 2\)"):
        await plans.shard_inputs(job, 2, inputs)


async def test_a_job_s_plan_is_kept_so_its_inputs_are_listed_once(tmp_path):
    (tmp_path / "1.txt").write_text("1")
    inputs = (Mount(tmp_path, "/inputs"),)
    plans = ShardPlans(size=1)
    job = sharded_job("/inputs/*.txt")
    await plans.shard_inputs(job, 0, inputs)
    (tmp_path / "2.txt").write_text("2")  # content never changes under a CID: the kept plan is used
    with pytest.raises(InvalidArgumentError, match="out of range"):
        await plans.shard_inputs(job, 1, inputs)
    await plans.shard_inputs(sharded_job("/inputs/*.txt"), 0, inputs)  # another job evicts it
    assert len(await plans.shard_inputs(job, 1, inputs)) == 1


def test_a_bad_actor_with_shards_lies_on_those_shards_only():
    job = make_job(verifier=pb.Verifier.VERIFIER_DETERMINISTIC)
    job.execution_plan.total_shards = 3
    result = RunResult(stdout=b"same\n", stderr=b"", exit_code=0)
    honest = Proposer("node-a")
    liar = Proposer("node-b", bad_actor=True, bad_actor_shards={2})
    for shard in range(3):
        execution = new_execution(job, shard, pb.ResourceUsageData())
        lie = hashlib.sha256(f"node-b{execution.id}".encode()).hexdigest().encode()
        expected = lie if shard == 2 else honest.propose(execution, result)
        assert liar.propose(execution, result) == expected
    assert Proposer("node-c", bad_actor=False, bad_actor_shards={2}).lies_on(2) is False
    assert Proposer("node-c", bad_actor=True).lies_on(7) is True


def test_bad_actor_shards_is_a_comma_list_of_indexes():
    settings = ComputeSettings(requester_address="127.0.0.1:1", bad_actor=True, bad_actor_shards="2, 0")
    assert settings.bad_actor_shard_indexes == frozenset({0, 2})
    assert ComputeSettings(requester_address="127.0.0.1:1").bad_actor_shard_indexes == frozenset()
    with pytest.raises(InvalidArgumentError) as caught:
        ComputeSettings(requester_address="127.0.0.1:1", bad_actor_shards="two")
    assert caught.value.field == "bad_actor_shards"
    env = {"BACALHAU_REQUESTER_ADDRESS": "127.0.0.1:1", "BACALHAU_BAD_ACTOR_SHARDS": "1,3"}
    assert ComputeSettings.from_env(env).bad_actor_shard_indexes == frozenset({1, 3})
