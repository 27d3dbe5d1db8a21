"""Real engines through a whole network (requester, verifier, compute nodes over gRPC): what a user sees
in a job's events when it runs a WASM module uploaded as its context, a deterministic Python program
on three nodes, and a Docker container reading a local input volume."""

import json
import shutil
from pathlib import Path

import aiodocker
import pytest

from bacalhau_grpc.common.content.archive import make_tar_gz
from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from tests.integration.network import E, Network, names, of_type

WASM = Path(__file__).resolve().parent.parent / "wasm"
CID = "QmdckCoPuhEtiNzREtqpYn8dBgY8ifcG82Q4eyEdGCLEiu"


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    yield net
    await net.stop()


def job_of(engine: int, *, concurrency: int = 1, verifier: int = pb.Verifier.VERIFIER_NOOP) -> pb.Job:
    job = pb.Job(api_version="V1beta1")
    job.spec.engine = engine
    job.spec.verifier = verifier
    job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
    job.spec.timeout = 60
    job.deal.concurrency = concurrency
    return job


def proposed(events: list[pb.JobEvent]) -> list[pb.JobEvent]:
    return of_type(events, E.JOB_EVENT_TYPE_RESULTS_PROPOSED)


async def test_a_wasm_module_uploaded_as_the_context_runs_with_its_parameters(network):
    await network.start(1)
    job = job_of(pb.Engine.ENGINE_WASM)
    job.spec.wasm.parameters.extend(["one", "two"])
    job.spec.wasm.environment_variables["GREETING"] = "hi"
    submitted = await network.submit(
        job, context=make_tar_gz({"hello.wasm": (WASM / "hello.wasm").read_bytes()})
    )
    (context,) = submitted.spec.contexts
    assert (context.path, context.cid[:4], submitted.spec.wasm.entry_point) == ("/job", "bafy", "_start")
    events = await network.wait_for_end(submitted.id)
    assert names(events)[-1] == "RESULTS_PUBLISHED", names(events)
    (result,) = proposed(events)
    stdout = result.run_output.stdout
    assert stdout.startswith("hello from wasm\n")
    assert "argv[1]=one\nargv[2]=two\n" in stdout and "env GREETING=hi\n" in stdout
    assert result.run_output.exit_code == 0


async def test_a_context_that_is_not_a_module_fails_the_job_with_the_reason(network):
    await network.start(1)
    submitted = await network.submit(
        job_of(pb.Engine.ENGINE_WASM), context=make_tar_gz({"notes.txt": b"not wasm"})
    )
    events = await network.wait_for_end(submitted.id)
    (failure,) = of_type(events, E.JOB_EVENT_TYPE_COMPUTE_ERROR)
    assert "is not a WebAssembly module" in failure.status, failure.status
    assert names(events)[-1] == "ERROR"


async def test_an_archive_that_cannot_be_read_is_refused_at_submission(network):
    await network.start(1)
    with pytest.raises(InvalidArgumentError, match="the context archive cannot be used") as caught:
        await network.submit(job_of(pb.Engine.ENGINE_WASM), context=b"not a tar.gz")
    assert caught.value.field == "Context"


PROGRAM = b"""
import os, random, time
print("time", time.time())
print("random", random.random())
print("hash", hash("bacalhau"))
print("urandom", os.urandom(4).hex())
"""


async def test_deterministic_python_gives_one_result_on_three_nodes_so_it_verifies(network):
    await network.start(3)
    job = job_of(pb.Engine.ENGINE_LANGUAGE, concurrency=3, verifier=pb.Verifier.VERIFIER_DETERMINISTIC)
    job.spec.language.language = "python"
    job.spec.language.language_version = "3.10"
    job.spec.language.deterministic = True
    job.spec.language.program_path = "main.py"
    submitted = await network.submit(job, context=make_tar_gz({"main.py": PROGRAM}))
    events = await network.wait_for_end(submitted.id, timeout=120)
    results = proposed(events)
    assert len(results) == 3
    assert len({r.verification_proposal for r in results}) == 1
    assert len({r.run_output.stdout for r in results}) == 1
    assert results[0].run_output.stdout.startswith("time ")
    assert all("3.12.0" in r.status for r in results), [r.status for r in results]
    assert len(of_type(events, E.JOB_EVENT_TYPE_RESULTS_ACCEPTED)) == 3
    assert len(of_type(events, E.JOB_EVENT_TYPE_RESULTS_PUBLISHED)) == 3


async def test_a_docker_job_reads_its_local_input_read_only(network, docker_engine, tmp_path):
    unsealed = tmp_path / "unsealed"
    (unsealed / CID).mkdir(parents=True)
    (unsealed / CID / "data.txt").write_text("from the input volume\n")
    await network.start(1, compute=[{"filecoin_unsealed_path": str(unsealed / "{{.CID}}")}])
    job = job_of(pb.Engine.ENGINE_DOCKER)
    job.spec.docker.image = docker_engine
    job.spec.docker.entrypoint.extend(
        ["sh", "-c", "cat /inputs/data.txt; echo changed > /inputs/data.txt || echo cannot write; ls /"]
    )
    job.spec.inputs.append(
        pb.StorageSpec(
            storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_FILECOIN_UNSEALED,
            cid=CID,
            path="/inputs",
        )
    )
    job.spec.outputs.append(pb.StorageSpec(name="outputs", path="/outputs"))
    submitted = await network.submit(job)
    events = await network.wait_for_end(submitted.id, timeout=60)
    (result,) = proposed(events)
    stdout = result.run_output.stdout
    assert stdout.startswith("from the input volume\n") and "cannot write" in stdout
    assert "outputs" in stdout.split()
    assert (unsealed / CID / "data.txt").read_text() == "from the input volume\n"
    assert names(events)[-1] == "RESULTS_PUBLISHED"


async def test_a_docker_image_that_cannot_be_pulled_fails_the_job_naming_it(network, docker_engine):
    await network.start(1)
    job = job_of(pb.Engine.ENGINE_DOCKER)
    job.spec.docker.image = "bacalhau-grpc/not-built-here:1"
    submitted = await network.submit(job)
    events = await network.wait_for_end(submitted.id, timeout=60)
    (failure,) = of_type(events, E.JOB_EVENT_TYPE_COMPUTE_ERROR)
    assert "bacalhau-grpc/not-built-here:1" in failure.status, failure.status


async def test_cancelling_a_running_docker_job_stops_and_removes_its_container(network, docker_engine):
    await network.start(1)
    job = job_of(pb.Engine.ENGINE_DOCKER)
    job.spec.docker.image = docker_engine
    job.spec.docker.entrypoint.extend(["sh", "-c", "echo started; sleep 300"])
    submitted = await network.submit(job)
    await network.wait_for_event(submitted.id, E.JOB_EVENT_TYPE_BID_ACCEPTED)
    node = network.computes[0]
    labels = {"label": [f"bacalhau-grpc.job-id={submitted.id}"]}
    async with aiodocker.Docker() as docker:
        running = await network.wait_until(
            lambda: docker.containers.list(filters=json.dumps({**labels, "status": ["running"]})),
            what="the job's container to run",
        )
        assert len(running) == 1
        await network.cancel(submitted.id, reason="changed my mind")
        events = await network.wait_for_end(submitted.id, timeout=30)
        assert "changed my mind" in " ".join(e.status for e in events)
        await network.wait_until(
            lambda: _none_left(docker, labels), what="the container to be removed", timeout=30
        )
    assert node.node.active_executions() == 0


async def _none_left(docker, labels) -> bool:
    return not await docker.containers.list(all=True, filters=json.dumps(labels))


async def test_an_input_no_node_holds_fails_the_job_with_the_reason(network):
    await network.start(1)
    job = job_of(pb.Engine.ENGINE_WASM)
    job.spec.inputs.append(
        pb.StorageSpec(storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS, cid=CID, path="/inputs")
    )
    submitted = await network.submit(
        job, context=make_tar_gz({"hello.wasm": (WASM / "hello.wasm").read_bytes()})
    )
    events = await network.wait_for_end(submitted.id)
    (failure,) = of_type(events, E.JOB_EVENT_TYPE_COMPUTE_ERROR)
    assert f"Spec.inputs[0] (IPFS {CID}): could not fetch {CID}" in failure.status, failure.status
    assert "is held by no node" in failure.status
    assert names(events)[-1] == "ERROR"


async def test_content_corrupted_at_its_source_fails_the_job_with_the_reason(network):
    await network.start(1)
    module = (WASM / "hello.wasm").read_bytes()
    first = await network.submit(job_of(pb.Engine.ENGINE_WASM), context=make_tar_gz({"hello.wasm": module}))
    await network.wait_for_end(first.id)
    cid = first.spec.contexts[0].cid
    # The requester's copy changes behind its back, and the compute node no longer has its own.
    stored = network.requester.settings.data_dir / "content" / cid / "hello.wasm"
    stored.unlink()
    stored.write_bytes(module + b"\0")
    shutil.rmtree(network.computes[0].settings.content_dir / cid)
    job = job_of(pb.Engine.ENGINE_WASM)
    job.spec.contexts.append(
        pb.StorageSpec(storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS, cid=cid, path="/job")
    )
    second = await network.submit(job)
    events = await network.wait_for_end(second.id)
    (failure,) = of_type(events, E.JOB_EVENT_TYPE_COMPUTE_ERROR)
    assert "it was corrupted" in failure.status, failure.status
