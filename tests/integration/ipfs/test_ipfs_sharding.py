"""Sharded jobs whose IPFS input only the IPFS daemon holds (js-ipfs, the `ipfs_daemon` fixture): the
requester lists the input through the daemon (`content.listing.ipfs_listing`) in the order a compute node
lists its fetched copy (`list_tree`), so both derive the same shards."""

import argparse
import time

import pytest

from bacalhau_grpc.cli import serve
from bacalhau_grpc.common.content.archive import make_tar_gz
from bacalhau_grpc.common.content.listing import ipfs_listing, list_tree
from bacalhau_grpc.common.errors import InvalidArgumentError, NotFoundError
from bacalhau_grpc.common.ipfs import IpfsClient
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.settings import RequesterSettings
from tests.integration.ipfs import test_ipfs, test_ipfs_network
from tests.integration.ipfs.test_ipfs import BIG, SHORT, missing_cid, volume, write_tree
from tests.integration.ipfs.test_ipfs_network import WASM
from tests.integration.network import E, noop_job
from tests.integration.test_sharding import by_shard, shard

# Their fixtures, reused: an IpfsClient of the session's daemon, and a Network stopped after the test.
client = test_ipfs.client
network = test_ipfs_network.network

# Names whose walk order is not a sort of whole paths ("a b", "a-b", "a.txt" and "a0" come after
# everything in folder "a"), and not UTF-16 order (U+FF21 before U+1F600, by code point); "é" after "e".
TRICKY = {
    "B": b"1",
    "Z": b"2",
    "a/B/c": b"3",
    "a/b.txt": b"4",
    "a/é/x": b"5",
    "a b": b"6",
    "a-b": b"7",
    "a.txt": b"8",
    "a0": b"9",
    "e": b"10",
    "é": b"11",
    "\uff21": b"12",
    "\U0001f600": b"13",
}
# A sharded job's input: "/inputs/**/*.txt" matches, in walk order, B.txt, a/x.txt, a b.txt, a.txt and
# é.txt (a sort of whole paths would put a.txt before a/x.txt).
SHARDED = {
    "B.txt": b"capital\n",
    "a/x.txt": b"in a folder\n",
    "a b.txt": b"with a space\n",
    "a.txt": b"shard three\n",
    "é.txt": b"accented\n",
    "notes.md": b"not matched\n",
}


# -- the requester's setting -------------------------------------------------------------------------


def test_the_requester_takes_ipfs_connect_from_its_flag_or_its_environment():
    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    base = ["serve", "--node-type", "requester", "--verifier-address", "127.0.0.1:1"]
    args = parser.parse_args([*base, "--ipfs-connect", "/ip4/127.0.0.1/tcp/5001"])
    assert serve.build_settings(args, environ={}).ipfs_connect == "/ip4/127.0.0.1/tcp/5001"
    from_env = serve.build_settings(
        parser.parse_args(base), environ={"BACALHAU_IPFS_CONNECT": "http://h:5001"}
    )
    assert from_env.ipfs_connect == "http://h:5001"
    assert serve.build_settings(parser.parse_args(base), environ={}).ipfs_connect == ""
    with pytest.raises(
        InvalidArgumentError, match=r"^ipfs_connect: '127\.0\.0\.1:5001' is not an IPFS API"
    ) as raised:
        RequesterSettings(verifier_address="127.0.0.1:1", ipfs_connect="127.0.0.1:5001")
    assert raised.value.field == "ipfs_connect"
    assert "(setting ipfs_connect: BACALHAU_IPFS_CONNECT or --ipfs-connect)" in str(raised.value)


# -- the listing -------------------------------------------------------------------------------------


async def test_the_daemon_lists_a_folder_as_list_tree_lists_it_on_disk(client, tmp_path):
    folder = write_tree(tmp_path / "folder", TRICKY, empty_dirs=("a/empty",))
    cid = await client.add_folder(folder)
    expected = list_tree(folder)
    assert await ipfs_listing(client)(volume(cid)) == expected
    # The daemon's own order already is the walk order (ipfs_listing does not depend on it).
    assert [("", True)] + [(e.path, e.is_directory) for e in await client.ls(cid)] == expected
    # And a compute node's fetched copy lists the same.
    assert list_tree(await client.get(cid, tmp_path / "fetched")) == expected


@pytest.mark.parametrize("data", [b"hello\n", BIG], ids=["small", "multi-chunk"])
@pytest.mark.parametrize("cid_version", [0, 1], ids=["v0", "v1"])
async def test_a_file_lists_as_itself(client, data, cid_version):
    # A multi-chunk file has links (its chunks): it is told from a folder by its type, not its links.
    cid = await client.add_bytes(data, cid_version=cid_version)
    assert await ipfs_listing(client)(volume(cid)) == [("", False)]


async def test_an_empty_folder_lists_as_its_root(client, tmp_path):
    cid = await client.add_folder(write_tree(tmp_path / "empty", {}))
    assert await ipfs_listing(client)(volume(cid)) == [("", True)]


async def test_a_cid_the_daemon_cannot_find_is_not_found_within_the_timeout(client):
    cid = missing_cid()
    started = time.monotonic()
    with pytest.raises(NotFoundError) as raised:
        await ipfs_listing(client, timeout=SHORT)(volume(cid))
    assert time.monotonic() - started < SHORT + 5
    message = str(raised.value)
    assert message.startswith(f"content {cid} cannot be listed by the IPFS daemon at {client.url}: ")
    assert "timed out after 1.5s" in message


async def test_a_malformed_cid_is_not_found_with_the_daemon_s_reason(client):
    with pytest.raises(NotFoundError, match=r"content not-a-cid cannot be listed by the IPFS daemon at .*"):
        await ipfs_listing(client, timeout=SHORT)(volume("not-a-cid"))


async def test_a_daemon_that_is_not_there_is_named():
    async with IpfsClient("/ip4/127.0.0.1/tcp/1") as absent:
        with pytest.raises(NotFoundError, match=r"http://127\.0\.0\.1:1 cannot be reached"):
            await ipfs_listing(absent, timeout=SHORT)(volume(missing_cid()))


# -- through a network -------------------------------------------------------------------------------


async def test_a_sharded_job_whose_input_only_the_daemon_holds_runs_every_shard(
    network, ipfs_daemon, tmp_path
):
    async with IpfsClient(ipfs_daemon) as ipfs:
        cid = await ipfs.add_folder(write_tree(tmp_path / "data", SHARDED))
    connected = {"ipfs_connect": ipfs_daemon}
    await network.start(compute=[connected, connected], **connected)
    assert not network.requester.requester.content.has(cid)
    job = noop_job(timeout=60)
    job.spec.engine = pb.Engine.ENGINE_WASM
    job.spec.wasm.parameters.extend(["/inputs/a.txt", "/outputs/out.txt"])
    job.spec.outputs.append(pb.StorageSpec(name="outputs", path="/outputs"))
    context = make_tar_gz({"files.wasm": (WASM / "files.wasm").read_bytes()})
    submitted = await network.submit(shard(job, cid, "/inputs/**/*.txt"), context=context)
    assert submitted.execution_plan.total_shards == 5
    events = await network.wait_for_end(submitted.id, timeout=90)
    assert sorted(by_shard(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)) == [0, 1, 2, 3, 4]
    proposed = {i: r[0].run_output for i, r in by_shard(events, E.JOB_EVENT_TYPE_RESULTS_PROPOSED).items()}
    # Each node derived the requester's plan from its copy: a.txt is shard 3, and only shard 3 sees it.
    assert {i: output.exit_code for i, output in proposed.items()} == {0: 1, 1: 1, 2: 1, 3: 0, 4: 1}
    assert proposed[3].stdout == "read 12 bytes from /inputs/a.txt\nwrote /outputs/out.txt\n"
    assert all("cannot read /inputs/a.txt" in proposed[i].stderr for i in (0, 1, 2, 4))


async def test_content_neither_the_requester_nor_the_daemon_has_is_refused_saying_so(network, ipfs_daemon):
    await network.start(1, ipfs_connect=ipfs_daemon)
    cid = missing_cid()
    started = time.monotonic()
    with pytest.raises(InvalidArgumentError) as caught:
        await network.submit(shard(noop_job(), cid, "/inputs/*"))
    assert time.monotonic() - started < 9  # within the listing's timeout (5s), not the client's (10s)
    assert caught.value.field == "Spec.inputs[0].CID"
    message = str(caught.value)
    assert f"cannot shard input Spec.inputs[0]: content {cid} is not held by the requester; " in message
    assert f"content {cid} cannot be listed by the IPFS daemon at {ipfs_daemon}: " in message
    assert "timed out after 5s" in message
