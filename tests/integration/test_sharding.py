"""Sharded jobs through a whole network (Bacalhau v0.3's sharding): the requester plans the shards from
the content it holds, each shard is bid on, run, verified and published on its own, and each run sees only its
batch, mounted at the batch's full paths; a shard of URL inputs downloads only the URLs of its batch."""

from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from bacalhau_grpc.common.content.archive import make_tar_gz
from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from tests.integration.network import E, Network, names, noop_job, of_type

WASM = Path(__file__).resolve().parent.parent / "wasm"
IPFS = pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS
FIVE_FILES = {f"{i}.txt": f"file {i}\n".encode() for i in range(1, 6)} | {"notes.md": b"not matched\n"}
URL_DOWNLOAD = pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    yield net
    await net.stop()


def hold(network: Network, files: dict[str, bytes]) -> str:
    """Puts the files in the requester's content store, as a folder; returns its CID."""
    return network.requester.requester.content.add_archive(make_tar_gz(files))


def shard(job: pb.Job, cid: str, pattern: str, *, batch_size: int = 1, base_path: str = "") -> pb.Job:
    """The job with the folder `cid` as its input at /inputs, sharded by `pattern`."""
    job.spec.inputs.append(pb.StorageSpec(storage_source=IPFS, cid=cid, path="/inputs"))
    job.spec.sharding.glob_pattern = pattern
    job.spec.sharding.batch_size = batch_size
    job.spec.sharding.base_path = base_path
    return job


def by_shard(events: list[pb.JobEvent], event_type: int) -> dict[int, list[pb.JobEvent]]:
    found: dict[int, list[pb.JobEvent]] = {}
    for event in of_type(events, event_type):
        found.setdefault(event.shard_index, []).append(event)
    return found


async def test_each_docker_shard_sees_only_its_batch_at_the_full_paths(network, docker_engine):
    await network.start(1)
    cid = hold(network, FIVE_FILES)
    job = noop_job(timeout=60)
    job.spec.engine = pb.Engine.ENGINE_DOCKER
    job.spec.docker.image = docker_engine
    job.spec.docker.entrypoint.extend(["sh", "-c", "ls -R /inputs; cat /inputs/*.txt"])
    submitted = await network.submit(shard(job, cid, "*.txt", batch_size=2, base_path="/inputs"))
    assert submitted.execution_plan.total_shards == 3
    events = await network.wait_for_end(submitted.id, timeout=90)
    proposed = by_shard(events, E.JOB_EVENT_TYPE_RESULTS_PROPOSED)
    stdout = {index: results[0].run_output.stdout for index, results in proposed.items()}
    assert stdout == {
        0: "/inputs:\n1.txt\n2.txt\nfile 1\nfile 2\n",
        1: "/inputs:\n3.txt\n4.txt\nfile 3\nfile 4\n",
        2: "/inputs:\n5.txt\nfile 5\n",
    }
    assert sorted(by_shard(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)) == [0, 1, 2]


async def test_each_wasm_shard_mounts_its_batch_and_a_missing_file_is_a_result(network):
    await network.start(1)
    cid = hold(network, {"a.txt": b"shard zero\n", "b.txt": b"shard one\n"})
    job = noop_job(timeout=60)
    job.spec.engine = pb.Engine.ENGINE_WASM
    job.spec.wasm.parameters.extend(["/inputs/a.txt", "/outputs/out.txt"])
    job.spec.outputs.append(pb.StorageSpec(name="outputs", path="/outputs"))
    context = make_tar_gz({"files.wasm": (WASM / "files.wasm").read_bytes()})
    submitted = await network.submit(shard(job, cid, "/inputs/*.txt"), context=context)
    assert submitted.execution_plan.total_shards == 2
    events = await network.wait_for_end(submitted.id, timeout=60)
    proposed = {i: r[0].run_output for i, r in by_shard(events, E.JOB_EVENT_TYPE_RESULTS_PROPOSED).items()}
    assert proposed[0].exit_code == 0
    assert proposed[0].stdout == "read 11 bytes from /inputs/a.txt\nwrote /outputs/out.txt\n"
    assert proposed[1].exit_code == 1 and "cannot read /inputs/a.txt" in proposed[1].stderr


async def test_a_thousand_shards_run_end_to_end_with_concurrency_one(network):
    # A generous node timeout: on a loaded 2-core machine the node's heartbeats may come late, and a node
    # taken for lost would fail the shards it holds (no other node to replace it).
    await network.start(1, node_timeout=60.0)
    cid = hold(network, {f"d{i // 100}/{i:04d}.dat": b"%d" % i for i in range(1000)})
    submitted = await network.submit(shard(noop_job(), cid, "/inputs/**/*.dat"))
    assert submitted.execution_plan.total_shards == 1000
    events = await network.wait_for_end(submitted.id, timeout=120)
    published = of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)
    assert sorted(e.shard_index for e in published) == list(range(1000))
    assert Counter(names(events))["BID_ACCEPTED"] == 1000


async def test_a_node_lying_on_one_shard_is_rejected_on_that_shard_only(network):
    await network.start(compute=[{}, {}, {"bad_actor": True, "bad_actor_shards": "2"}])
    liar = network.computes[2].node_id
    cid = hold(network, {f"{i}.txt": b"x" for i in range(4)})
    job = noop_job(concurrency=3, verifier=pb.Verifier.VERIFIER_DETERMINISTIC)
    submitted = await network.submit(shard(job, cid, "/inputs/*.txt"))
    assert submitted.execution_plan.total_shards == 4
    events = await network.wait_for_end(submitted.id, timeout=60)
    rejected = of_type(events, E.JOB_EVENT_TYPE_RESULTS_REJECTED)
    assert [(e.shard_index, e.target_node_id) for e in rejected] == [(2, liar)]
    accepted = by_shard(events, E.JOB_EVENT_TYPE_RESULTS_ACCEPTED)
    assert {i: len(found) for i, found in accepted.items()} == {0: 3, 1: 3, 2: 2, 3: 3}
    assert liar not in {e.target_node_id for e in accepted[2]}
    assert len(of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)) == 11


async def test_a_batch_size_of_zero_means_one(network):
    await network.start(1)
    cid = hold(network, FIVE_FILES)
    submitted = await network.submit(shard(noop_job(), cid, "/inputs/*.txt", batch_size=0))
    assert submitted.execution_plan.total_shards == 5
    events = await network.wait_for_end(submitted.id)
    assert len(of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)) == 5


async def test_an_unsharded_job_is_one_shard(network):
    await network.start(1)
    cid = hold(network, FIVE_FILES)
    submitted = await network.submit(shard(noop_job(), cid, ""))
    assert submitted.execution_plan.total_shards == 1


async def test_a_pattern_matching_nothing_is_refused_at_submission(network):
    await network.start(1)
    cid = hold(network, FIVE_FILES)
    with pytest.raises(InvalidArgumentError) as caught:
        await network.submit(shard(noop_job(), cid, "/nothing/*.txt"))
    assert "no sharding atoms found for glob pattern /nothing/*.txt" in str(caught.value)
    assert caught.value.field == "Spec.Sharding.GlobPattern"


async def test_a_malformed_pattern_is_refused_at_submission(network):
    await network.start(1)
    cid = hold(network, FIVE_FILES)
    with pytest.raises(InvalidArgumentError, match="bad glob pattern") as caught:
        await network.submit(shard(noop_job(), cid, "/inputs/[*.txt"))
    assert caught.value.field == "Spec.Sharding.GlobPattern"


async def test_content_the_requester_does_not_hold_cannot_be_sharded(network):
    await network.start(1)
    cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
    with pytest.raises(InvalidArgumentError) as caught:
        await network.submit(shard(noop_job(), cid, "/inputs/*"))
    expected = f"cannot shard input Spec.inputs[0]: content {cid} is not held by the requester"
    assert expected in str(caught.value)
    assert caught.value.field == "Spec.inputs[0].CID"


@pytest.fixture
async def file_server():
    """A real HTTP server on 127.0.0.1:0 serving FIVE_FILES at /files/<name>: (its base URL, the number
    of GETs each path got)."""
    hits: Counter[str] = Counter()

    async def serve(request: web.Request) -> web.Response:
        hits[request.path] += 1
        body = FIVE_FILES.get(request.match_info["name"])
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body)

    app = web.Application()
    app.router.add_get("/files/{name}", serve)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}", hits
    await runner.cleanup()


def url_shards_job(base: str, *, concurrency: int) -> pb.Job:
    """A WASM job (files.wasm) copying every file of /inputs to /outputs/batch.txt, over one URL input
    per file of FIVE_FILES (notes.md included), sharded by `*.txt` in batches of 2."""
    job = noop_job(concurrency=concurrency, timeout=60)
    job.spec.engine = pb.Engine.ENGINE_WASM
    job.spec.wasm.parameters.extend(["/inputs", "/outputs/batch.txt"])
    job.spec.outputs.append(pb.StorageSpec(name="outputs", path="/outputs"))
    job.spec.inputs.extend(
        pb.StorageSpec(storage_source=URL_DOWNLOAD, url=f"{base}/files/{name}", path="/inputs")
        for name in FIVE_FILES
    )
    job.spec.sharding.glob_pattern = "*.txt"
    job.spec.sharding.base_path = "/inputs"
    job.spec.sharding.batch_size = 2
    return job


@pytest.mark.parametrize("nodes", [1, 2])
async def test_each_shard_downloads_only_the_urls_of_its_batch(network, file_server, nodes):
    """5 matching URLs in batches of 2 on `nodes` nodes at concurrency `nodes`: each URL is fetched once
    per node running the shard that holds it, the unmatched one never, and each run reads its batch."""
    base, hits = file_server
    # The file server is on 127.0.0.1, which URL inputs reach only when its network is allowed.
    await network.start(compute=[{"url_download_allow_networks": "127.0.0.0/8"}] * nodes)
    context = make_tar_gz({"files.wasm": (WASM / "files.wasm").read_bytes()})
    submitted = await network.submit(url_shards_job(base, concurrency=nodes), context=context)
    assert submitted.execution_plan.total_shards == 3
    events = await network.wait_for_end(submitted.id, timeout=90)
    assert sorted(by_shard(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)) == [0, 1, 2]

    proposed = by_shard(events, E.JOB_EVENT_TYPE_RESULTS_PROPOSED)
    batches = {0: ["1.txt", "2.txt"], 1: ["3.txt", "4.txt"], 2: ["5.txt"]}
    for index, names_read in batches.items():
        reads = "".join(f"read {len(FIVE_FILES[n])} bytes from /inputs/{n}\n" for n in names_read)
        expected = reads + "wrote /outputs/batch.txt\n"
        assert [e.run_output.stdout for e in proposed[index]] == [expected] * nodes, index
        assert {e.run_output.exit_code for e in proposed[index]} == {0}
    assert hits == Counter({f"/files/{i}.txt": nodes for i in range(1, 6)})
