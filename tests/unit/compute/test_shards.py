"""A sharded job on a compute node: the mounts of its shard's batch, the inputs it prepares (those the
plan lists, then only the others its batch holds), and the bad actor lying on some shards only."""

import hashlib
from pathlib import Path

import pytest

from bacalhau_grpc.common.content.archive import make_tar_gz
from bacalhau_grpc.common.content.store import ContentStore
from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.model.sharding import Atom
from bacalhau_grpc.compute.domain.executions import new_execution
from bacalhau_grpc.compute.domain.ports import StorageError
from bacalhau_grpc.compute.domain.proposals import Proposer
from bacalhau_grpc.compute.domain.runs import Mount, RunResult
from bacalhau_grpc.compute.settings import ComputeSettings
from bacalhau_grpc.compute.storage.content import ContentSource
from bacalhau_grpc.compute.storage.local_path import UnsealedPathSource
from bacalhau_grpc.compute.storage.shards import ShardPlans, listed_inputs, mounts_of, whole_inputs_in
from bacalhau_grpc.compute.storage.volumes import Volumes
from tests.unit.compute.support import make_job

IPFS = pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS
URL = pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD
UNSEALED = pb.StorageSourceType.STORAGE_SOURCE_TYPE_FILECOIN_UNSEALED
ROOT = Path("/store/bafyexample")


def test_atoms_inside_an_input_mount_their_own_file_at_their_path():
    inputs = {0: Mount(ROOT, "/inputs")}
    mounts = mounts_of([Atom(0, "a/1.txt", "/inputs/a/1.txt"), Atom(0, "b.txt", "/inputs/b.txt")], inputs)
    assert mounts == (
        Mount(ROOT / "a/1.txt", "/inputs/a/1.txt", read_only=True),
        Mount(ROOT / "b.txt", "/inputs/b.txt", read_only=True),
    )


def test_an_atom_that_is_the_input_mounts_the_input_as_prepared():
    downloaded = Mount(Path("/scratch/x.csv"), "/data/x.csv")
    assert mounts_of([Atom(1, "", "/data/x.csv")], {0: Mount(ROOT, "/inputs"), 1: downloaded}) == (
        downloaded,
    )


def test_atoms_inside_a_folder_of_the_same_batch_are_seen_through_it():
    inputs = {0: Mount(ROOT, "/inputs")}
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
    listed = {0: Mount(tmp_path, "/inputs")}
    plans = ShardPlans()
    job = sharded_job("/inputs/*.txt", batch_size=2)
    assert [a.path for a in await plans.batch(job, 0, listed)] == ["/inputs/1.txt", "/inputs/2.txt"]
    assert await plans.batch(job, 1, listed) == [Atom(0, "3.txt", "/inputs/3.txt")]
    with pytest.raises(InvalidArgumentError, match=r"shard 2 is out of range \(the job has 2\)"):
        await plans.batch(job, 2, listed)


def url_job(urls: list[str], batch_size: int) -> pb.Job:
    job = make_job(engine=pb.Engine.ENGINE_WASM)
    job.spec.inputs.extend(pb.StorageSpec(storage_source=URL, url=url, path="/inputs") for url in urls)
    job.spec.sharding.glob_pattern = "*.txt"
    job.spec.sharding.base_path = "/inputs"
    job.spec.sharding.batch_size = batch_size
    return job


async def test_url_inputs_are_planned_by_name_and_a_shard_prepares_only_those_its_glob_selected():
    urls = ["http://h/a%20b.txt", "http://h/notes.md", "http://h/redirected/c.txt", "http://h/d.txt"]
    job = url_job(urls, batch_size=2)
    assert listed_inputs(job.spec.inputs) == []  # nothing is downloaded to plan
    plans = ShardPlans()
    first, second = await plans.batch(job, 0, {}), await plans.batch(job, 1, {})
    assert first == [Atom(0, "", "/inputs/a b.txt"), Atom(2, "", "/inputs/c.txt")]
    assert whole_inputs_in(first, job.spec.inputs) == [0, 2]
    assert whole_inputs_in(second, job.spec.inputs) == [3]  # notes.md: no shard downloads it
    # As `Volumes` prepares them: each downloaded file at <Path>/<name from the URL>
    downloaded = {
        i: Mount(Path(f"/scratch/{i}") / name, f"/inputs/{name}")
        for i, name in [(0, "a b.txt"), (2, "c.txt")]
    }
    assert mounts_of(first, downloaded) == (downloaded[0], downloaded[2])


async def test_a_shard_prepares_the_listed_inputs_and_only_the_whole_inputs_its_batch_holds(tmp_path):
    """IPFS folders are fetched and listed (the plan needs them); the other inputs are one atom each and
    prepared only by the shard that holds them: here a missing unsealed path fails that shard alone,
    named by its place in Spec.inputs."""
    store = ContentStore(tmp_path / "store")
    cid = store.add_archive(make_tar_gz({"1.txt": b"one", "2.txt": b"two", "skip.md": b"no"}))
    unsealed = tmp_path / "unsealed"
    (unsealed / "u1.txt").mkdir(parents=True)

    async def fetch(cid: str) -> Path:
        raise AssertionError(f"{cid} is in the store")

    volumes = Volumes([ContentSource(store, fetch), UnsealedPathSource(str(unsealed / "{{.CID}}"))])
    job = make_job(engine=pb.Engine.ENGINE_WASM)
    job.spec.inputs.extend(
        [
            pb.StorageSpec(storage_source=UNSEALED, cid="u1.txt", path="/inputs/u1.txt"),
            pb.StorageSpec(storage_source=IPFS, cid=cid, path="/inputs/ipfs"),
            pb.StorageSpec(storage_source=UNSEALED, cid="missing.txt", path="/inputs/missing.txt"),
        ]
    )
    job.spec.sharding.glob_pattern = "/inputs/**/*.txt"
    job.spec.sharding.batch_size = 2
    assert listed_inputs(job.spec.inputs) == [1]
    plans = ShardPlans()
    first = await plans.shard_inputs(job, 0, volumes, tmp_path / "scratch-0")
    assert first == (
        Mount(unsealed / "u1.txt", "/inputs/u1.txt"),
        Mount(store.path(cid) / "1.txt", "/inputs/ipfs/1.txt"),
    )
    with pytest.raises(
        StorageError, match=r"^Spec.inputs\[2\] \(FilecoinUnsealed missing.txt\): unsealed data"
    ):
        await plans.shard_inputs(job, 1, volumes, tmp_path / "scratch-1")


async def test_a_job_s_plan_is_kept_so_its_inputs_are_listed_once(tmp_path):
    (tmp_path / "1.txt").write_text("1")
    listed = {0: Mount(tmp_path, "/inputs")}
    plans = ShardPlans(size=1)
    job = sharded_job("/inputs/*.txt")
    await plans.batch(job, 0, listed)
    (tmp_path / "2.txt").write_text("2")  # content never changes under a CID: the kept plan is used
    with pytest.raises(InvalidArgumentError, match="out of range"):
        await plans.batch(job, 1, listed)
    await plans.batch(sharded_job("/inputs/*.txt"), 0, listed)  # another job evicts it
    assert len(await plans.batch(job, 1, listed)) == 1


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
