"""Publishing and downloading results through a whole network: the Local and IPFS publishers keep a
shard's result folder in the compute node's content store, Estuary falls back to IPFS and says so, and
`bacalhau-grpc get` (a real subprocess) lays the results out as Bacalhau does, fetching them through the
requester."""

import asyncio
import sys
from pathlib import Path

import pytest

from bacalhau_grpc.common.content.archive import make_tar_gz
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.sdk import Client, DownloadTooLargeError
from tests.integration.network import E, Network, of_type
from tests.wasm.hostile import PYTHON_LINKS

P = pb.Publisher


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    yield net
    await net.stop()


def noop_job(publisher: int, *, concurrency: int = 1, verifier: int = pb.Verifier.VERIFIER_NOOP) -> pb.Job:
    job = pb.Job(api_version="V1beta1")
    job.spec.engine = pb.Engine.ENGINE_NOOP
    job.spec.verifier = verifier
    job.spec.publisher = publisher
    job.spec.outputs.append(pb.StorageSpec(name="outputs", path="/outputs"))
    job.deal.concurrency = concurrency
    return job


async def get(network: Network, job_id: str, output_dir: Path) -> tuple[int, str, str]:
    host, port = network.requester.address.rsplit(":", 1)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bacalhau_grpc.cli.main",
        "get",
        job_id,
        "--output-dir",
        str(output_dir),
        "--api-host",
        host,
        "--api-port",
        port,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode, out.decode(), err.decode()


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


async def test_local_results_are_downloaded_with_bacalhaus_layout(network, tmp_path):
    await network.start(compute=[{"noop_stdout": "hello\n", "noop_stderr": "warn\n", "noop_exit_code": 3}])
    job = await network.submit(noop_job(P.PUBLISHER_LOCAL))
    events = await network.wait_for_end(job.id)
    (published,) = of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)
    cid = published.published_result.cid
    assert cid.startswith("bafy") and published.published_result.metadata["publisher"] == "Local"
    rc, out, err = await get(network, job.id[:8], tmp_path / "results")
    assert rc == 0, err
    assert out.strip() == str(tmp_path / "results")
    assert f"Fetching results of job '{job.id}'..." in err
    node = network.computes[0].node_id
    expected = {"stdout": b"hello\n", "stderr": b"warn\n", "exitCode": b"3"}
    assert files(tmp_path / "results" / "raw" / cid) == expected
    assert files(tmp_path / "results" / "per_shard" / f"0_node_{node[:8]}") == expected
    combined = tmp_path / "results" / "combined_results"
    assert files(combined) == {"stdout": b"hello\n", "stderr": b"warn\n"}  # exitCode left out
    assert (combined / "outputs").is_dir()  # every declared output, even an empty one


async def test_a_download_stops_as_soon_as_it_passes_its_byte_limit(network, tmp_path):
    await network.start(compute=[{"noop_stdout": "x" * 300_000}])
    job = await network.submit(noop_job(P.PUBLISHER_LOCAL))
    await network.wait_for_end(job.id)
    async with Client(network.requester.address, key=ClientKey.load_or_create(tmp_path / "key")) as client:
        with pytest.raises(
            DownloadTooLargeError, match=f"the results of job {job.id} are more than the 100,000"
        ):
            await client.download(job.id, tmp_path / "small", max_bytes=100_000)
        assert not (tmp_path / "small" / "raw").exists() or not any((tmp_path / "small" / "raw").iterdir())
        done = await client.download(job.id, tmp_path / "whole", max_bytes=1_000_000)
    assert (done / "combined_results" / "stdout").read_bytes() == b"x" * 300_000


async def test_three_verified_results_are_combined_in_order(network, tmp_path):
    await network.start(3, compute=[{"noop_stdout": "same\n"}] * 3)
    job = await network.submit(
        noop_job(P.PUBLISHER_IPFS, concurrency=3, verifier=pb.Verifier.VERIFIER_DETERMINISTIC)
    )
    events = await network.wait_for_end(job.id)
    published = of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)
    assert len(published) == 3 and len({e.published_result.cid for e in published}) == 1  # same folder
    rc, _, err = await get(network, job.id, tmp_path / "out")
    assert rc == 0, err
    assert len(list((tmp_path / "out" / "raw").iterdir())) == 1
    assert len(list((tmp_path / "out" / "per_shard").iterdir())) == 3
    assert (tmp_path / "out" / "combined_results" / "stdout").read_bytes() == b"same\n" * 3


async def test_estuary_without_credentials_publishes_to_ipfs_and_says_so(network, tmp_path):
    await network.start(compute=[{"noop_stdout": "x"}])
    job = await network.submit(noop_job(P.PUBLISHER_ESTUARY))
    events = await network.wait_for_end(job.id)
    (published,) = of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)
    assert "Estuary is not configured on this node" in published.status
    assert published.published_result.metadata["publisher"] == "Ipfs"
    rc, _, err = await get(network, job.id, tmp_path / "out")
    assert rc == 0, err


async def test_a_job_without_published_results_has_none_to_get(network, tmp_path):
    await network.start()
    job = await network.submit(noop_job(P.PUBLISHER_NOOP))
    await network.wait_for_end(job.id)
    rc, out, err = await get(network, job.id, tmp_path / "out")
    assert rc == 1 and out == ""
    assert err.strip().endswith(f"no results found for job {job.id}")


async def test_results_corrupted_on_the_node_are_refused(network, tmp_path):
    await network.start(compute=[{"noop_stdout": "original\n"}])
    job = await network.submit(noop_job(P.PUBLISHER_LOCAL))
    events = await network.wait_for_end(job.id)
    (published,) = of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)
    cid = published.published_result.cid
    stored = network.computes[0].settings.content_dir / cid / "stdout"
    stored.unlink()
    stored.write_bytes(b"tampered\n")
    rc, _, err = await get(network, job.id, tmp_path / "out")
    assert rc == 1
    assert "corrupted" in err, err
    assert not (tmp_path / "out" / "raw" / cid).exists()


async def test_docker_outputs_are_published_and_combined(network, docker_engine, tmp_path):
    await network.start()
    job = noop_job(P.PUBLISHER_LOCAL)
    job.spec.engine = pb.Engine.ENGINE_DOCKER
    job.spec.docker.image = docker_engine
    job.spec.docker.entrypoint.extend(["sh", "-c", "echo result > /outputs/out.txt; echo done"])
    submitted = await network.submit(job)
    await network.wait_for_end(submitted.id, timeout=60)
    rc, _, err = await get(network, submitted.id, tmp_path / "out")
    assert rc == 0, err
    combined = tmp_path / "out" / "combined_results"
    assert (combined / "outputs" / "out.txt").read_text() == "result\n"
    assert (combined / "stdout").read_text() == "done\n"


async def test_links_hard_links_and_fifos_never_leave_a_docker_job(network, docker_engine, tmp_path):
    """A container links its own /etc and /etc/passwd into its outputs, hard-links two
    files there (a hard link to an image file cannot cross into the bind mount: EXDEV) and makes a fifo:
    both nodes' results hold the plain file only (their hashes agree), and each ResultsProposed event names
    what was left out."""
    await network.start(2)
    job = noop_job(P.PUBLISHER_LOCAL, concurrency=2, verifier=pb.Verifier.VERIFIER_DETERMINISTIC)
    job.spec.engine = pb.Engine.ENGINE_DOCKER
    job.spec.docker.image = docker_engine
    script = (
        "echo ok > /outputs/ok.txt; ln -s /etc /outputs/etc; ln -s /etc/passwd /outputs/passwd;"
        " echo a > /outputs/a; ln /outputs/a /outputs/hard; ln /etc/passwd /outputs/image-hard 2>/dev/null;"
        " mkfifo /outputs/fifo; ls /outputs"
    )
    job.spec.docker.entrypoint.extend(["sh", "-c", script])
    submitted = await network.submit(job)
    events = await network.wait_for_end(submitted.id, timeout=60)
    rc, _, err = await get(network, submitted.id, tmp_path / "out")
    assert rc == 0, err
    combined = tmp_path / "out" / "combined_results"
    assert sorted(p.name for p in (combined / "outputs").iterdir()) == ["ok.txt"]
    assert (combined / "outputs" / "ok.txt").read_text() == "ok\n"
    assert "fifo" in (combined / "stdout").read_text()  # the container did make them
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_symlink()]
    assert len(of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)) == 2  # both hashes agreed
    proposals = of_type(events, E.JOB_EVENT_TYPE_RESULTS_PROPOSED)
    assert len(proposals) == 2
    for proposed in proposals:
        assert "left out of the results" in proposed.status
        for name in ("outputs/etc", "outputs/passwd", "outputs/a", "outputs/hard", "outputs/fifo"):
            assert name in proposed.status
        assert "outputs/ok.txt" not in proposed.status


async def test_links_made_under_wasi_never_leave_a_python_job(network, tmp_path):
    """WASI (wasmtime) lets a guest make a relative symbolic link inside its preopened outputs (one to
    an absolute path like /etc is refused, EPERM): it is left out of the results too, and the
    ResultsProposed event names it."""
    await network.start()
    job = noop_job(P.PUBLISHER_LOCAL)
    job.spec.engine = pb.Engine.ENGINE_LANGUAGE
    job.spec.language.language = "python"
    job.spec.language.language_version = "3.10"
    job.spec.language.deterministic = True
    job.spec.language.program_path = "main.py"
    job.spec.timeout = 120
    submitted = await network.submit(job, context=make_tar_gz({"main.py": PYTHON_LINKS.encode()}))
    events = await network.wait_for_end(submitted.id, timeout=120)
    (proposed,) = of_type(events, E.JOB_EVENT_TYPE_RESULTS_PROPOSED)
    stdout = proposed.run_output.stdout
    made = stdout.split("made", 1)[1].split()
    if not made:
        pytest.skip(f"WASI made no symbolic link here: {stdout}")
    rc, _, err = await get(network, submitted.id, tmp_path / "out")
    assert rc == 0, err
    combined = tmp_path / "out" / "combined_results"
    assert sorted(p.name for p in (combined / "outputs").iterdir()) == ["ok.txt"], stdout
    for name in made:
        assert name.removeprefix("/") in proposed.status, (name, proposed.status)
