"""A job too big for one GetJob answer, with real processes: a devstack whose requester sends and receives
at most MAX_MESSAGE_BYTES (its `max_message_bytes` setting, from BACALHAU_MAX_MESSAGE_BYTES), one noop job
of SHARDS shards. A plain GetJob is refused with FAILED_PRECONDITION naming the way out; GetJob without
events and shard states answers; ListJobShards pages give every (node, shard) row once; `bacalhau-grpc
describe` writes the whole document from pages; grpcurl calls ListJobShards.

The shards come from an IPFS input the requester holds: a first job's context archive of SHARDS small files
(the requester keeps it in its content store), sharded by `/inputs/*.txt` with batch size 1.
"""

import asyncio
import json

import pytest
import pytest_asyncio
import yaml

from bacalhau_grpc.common.content.archive import make_tar_gz
from bacalhau_grpc.common.errors import FailedPreconditionError
from bacalhau_grpc.common.model import jobfile, pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.devstack import Devstack
from bacalhau_grpc.sdk import Client
from bacalhau_grpc.sdk import sdk_types as m
from bacalhau_grpc.sdk.client import to_pb
from tests.e2e.cli_support import clean_env, run_cli
from tests.e2e.test_grpcurl_services import REQUESTER, finished, grpcurl_path

SHARDS = 3000
MAX_MESSAGE_BYTES = 1024 * 1024
JOB_TIMEOUT = 240.0


def noop_job(*, inputs: list[m.StorageSpec] | None = None, glob: str = "") -> m.Job:
    job = m.Job(
        api_version="V1beta1",
        spec=m.Spec(engine=m.Engine.NOOP, verifier=m.Verifier.NOOP, publisher=m.Publisher.NOOP),
        deal=m.Deal(concurrency=1),
    )
    if inputs:
        job.spec.inputs = inputs
        job.spec.sharding = m.JobShardingConfig(glob_pattern=glob, batch_size=1)
    return job


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def big(tmp_path_factory):
    """(devstack, client key dir, the big job's ID) once the job ended."""
    tmp = tmp_path_factory.mktemp("big")
    stack = Devstack(
        nodes=1,
        data_dir=tmp / "stack",
        requester_env={"BACALHAU_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES)},
    )
    async with stack:
        key = ClientKey.load_or_create(tmp / "key")
        async with Client(stack.requester_address, key=key, ca_cert=stack.ca_cert, timeout=60) as client:
            files = {f"{i:05d}.txt": b"%d" % i for i in range(SHARDS)}
            holder = await client.submit(noop_job(), context=make_tar_gz(files))
            cid = holder.spec.contexts[0].cid
            inputs = [m.StorageSpec(storage_source=m.StorageSourceType.IPFS, cid=cid, path="/inputs")]
            job = await client.submit(noop_job(inputs=inputs, glob="/inputs/*.txt"))
            assert job.execution_plan.total_shards == SHARDS
            async with asyncio.timeout(JOB_TIMEOUT):  # until every shard ended
                async for _ in client.events(job.id, follow=True):
                    pass
        yield stack, key, job.id


async def _client(stack: Devstack, key: ClientKey) -> Client:
    return Client(stack.requester_address, key=key, ca_cert=stack.ca_cert, timeout=60)


@pytest.mark.asyncio(loop_scope="module")
async def test_plain_get_job_is_refused_with_the_way_out_and_exclusions_answer(big):
    stack, key, job_id = big
    async with await _client(stack, key) as client:
        with pytest.raises(FailedPreconditionError) as refused:
            await client.get(job_id)
        message = str(refused.value)
        for hint in ("exclude_events", "exclude_shard_states", "ListJobShards", "ListJobEvents"):
            assert hint in message
        assert str(MAX_MESSAGE_BYTES) in message

        head = to_pb(await client.get(job_id, events=False, shard_states=False), pb.JobWithInfo)
        assert head.job.id == job_id
        assert not head.job.state.nodes and not head.job_state.nodes
        assert not head.job_events and not head.job_local_events
        assert head.job.execution_plan.total_shards == SHARDS
        assert head.event_count == len([e async for e in client.events(job_id)])  # counted, not sent


@pytest.mark.asyncio(loop_scope="module")
async def test_list_job_shards_pages_give_every_row_once(big):
    stack, key, job_id = big
    async with await _client(stack, key) as client:
        rows = [row async for row in client.shard_rows(job_id[:8])]
        as_sdk = [to_pb(row, pb.JobShardState) async for row in client.shards(job_id[:8])]
    assert as_sdk == rows  # the same rows, as SDK types
    keys = [(row.node_id, row.shard_index) for row in rows]
    assert len(keys) == len(set(keys)) == SHARDS  # one node: one row per shard
    assert sorted(keys) == keys
    assert {index for _, index in keys} == set(range(SHARDS))
    assert {row.state for row in rows} == {pb.JobStateType.JOB_STATE_TYPE_COMPLETED}


@pytest.mark.asyncio(loop_scope="module")
async def test_describe_writes_the_whole_document_from_pages(big, key_dir):
    stack, _, job_id = big
    env = clean_env(
        BACALHAU_API_HOST=stack.requester_address.rsplit(":", 1)[0],
        BACALHAU_API_PORT=stack.requester_address.rsplit(":", 1)[1],
        BACALHAU_TLS_CA_CERT=str(stack.ca_cert),
    )
    for fmt in ("yaml", "json"):
        done = run_cli("describe", job_id, "-o", fmt, "--timeout", "60", env=env, timeout=180)
        assert done.returncode == 0, done.stderr
        data = yaml.safe_load(done.stdout) if fmt == "yaml" else json.loads(done.stdout)
        info = jobfile.dict_to_message(data, pb.JobWithInfo)
        assert info.job.id == job_id
        for state in (info.job.state, info.job_state):
            (node,) = state.nodes.values()
            assert sorted(node.shards) == list(range(SHARDS))
            assert all(row.state == pb.JobStateType.JOB_STATE_TYPE_COMPLETED for row in node.shards.values())
        assert len(info.job_events) > SHARDS
        assert info.job_events[0].event_name == pb.JobEventType.JOB_EVENT_TYPE_CREATED
    done = run_cli("describe", job_id, "--include-events=false", "--timeout", "60", env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    data = yaml.safe_load(done.stdout)
    assert "JobEvents" not in data and "JobLocalEvents" not in data
    assert len(data["JobState"]["Nodes"][next(iter(data["JobState"]["Nodes"]))]["Shards"]) == SHARDS


@pytest.mark.asyncio(loop_scope="module")
async def test_grpcurl_lists_job_shards(big):
    stack, _, job_id = big
    token, seen = "", 0
    while True:
        body = json.dumps({"job_id": job_id, "page_size": 1000, "page_token": token})
        process_args = ("-cacert", str(stack.ca_cert), "-max-time", "20", "-d", body)

        process = await asyncio.create_subprocess_exec(
            grpcurl_path(),
            *process_args,
            stack.requester_address,
            f"{REQUESTER}/ListJobShards",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        rc, out, err = await finished(process)
        assert rc == 0, err
        page = json.loads(out)
        seen += len(page["shards"])
        assert all(row["State"] == "JOB_STATE_TYPE_COMPLETED" for row in page["shards"])
        assert set(page) <= {"shards", "next_page_token"}, sorted(page)
        token = page.get("next_page_token", "")
        if not token:
            break
    assert seen == SHARDS
