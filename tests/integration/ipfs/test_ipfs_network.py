"""A network whose compute node is connected to a real IPFS daemon (js-ipfs): a WASM job reads its input
by CID from IPFS, and its results are published to IPFS and fetched back by CID."""

from pathlib import Path

import pytest

from bacalhau_grpc.common.content.archive import make_tar_gz
from bacalhau_grpc.common.ipfs import IpfsClient
from bacalhau_grpc.common.model import pb
from tests.integration.network import E, Network, names, of_type

WASM = Path(__file__).resolve().parents[2] / "wasm"


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    yield net
    await net.stop()


async def test_a_job_reads_a_cid_from_ipfs_and_publishes_its_results_there(network, ipfs_daemon, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "words.txt").write_text("compute over data\n")
    async with IpfsClient(ipfs_daemon) as ipfs:
        input_cid = await ipfs.add_folder(data)
        await network.start(1, compute=[{"ipfs_connect": ipfs_daemon}])
        job = pb.Job(api_version="V1beta1")
        job.spec.engine = pb.Engine.ENGINE_WASM
        job.spec.verifier = pb.Verifier.VERIFIER_NOOP
        job.spec.publisher = pb.Publisher.PUBLISHER_IPFS
        job.spec.timeout = 60
        job.deal.concurrency = 1
        job.spec.wasm.parameters.extend(["/inputs/words.txt", "/outputs/shout.txt"])
        job.spec.inputs.append(
            pb.StorageSpec(
                storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS, cid=input_cid, path="/inputs"
            )
        )
        job.spec.outputs.append(pb.StorageSpec(name="outputs", path="/outputs"))
        context = make_tar_gz({"files.wasm": (WASM / "files.wasm").read_bytes()})
        submitted = await network.submit(job, context=context)
        events = await network.wait_for_end(submitted.id, timeout=90)
        assert names(events)[-1] == "RESULTS_PUBLISHED", [(e.event_name, e.status) for e in events]
        (published,) = of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)
        assert published.published_result.metadata["publisher"] == "Ipfs"
        fetched = tmp_path / "fetched"
        await ipfs.get(published.published_result.cid, fetched)
    assert (fetched / "outputs" / "shout.txt").read_text() == "COMPUTE OVER DATA\n"
    assert (
        fetched / "stdout"
    ).read_text() == "read 18 bytes from /inputs/words.txt\nwrote /outputs/shout.txt\n"
    assert (fetched / "exitCode").read_text() == "0"
