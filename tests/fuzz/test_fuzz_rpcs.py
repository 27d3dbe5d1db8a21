"""Fuzzing: job files, `SubmitJobRequest`s and every other public RPC's requests (random,
mutated and truncated) against ONE real network (verifier, requester, one noop compute node on
127.0.0.1:0, plaintext). Each answer is OK with a valid message, or a clear error with a canonical client
code: never INTERNAL or UNKNOWN, never a hang (every call has a deadline), and refused calls leave the
store unchanged (the job count grows only by accepted submissions). The server still answers GetVersion
and health afterwards.

`FUZZ_CASES` (default 200) is the total number of cases, split evenly across the targets; `make fuzz` runs
10,000. Each target prints `target: N cases in T s (X cases/s), failures: F` and every failing request,
then fails if F > 0 (failures are collected, not raised, so one run reports them all).

The fuzzing found two bugs, now fixed and kept as tests: requests whose bytes do not decode were answered
UNKNOWN (now INVALID_ARGUMENT, from the server's error mapping), and a null item in a job file's list of
strings made the reader raise TypeError (now the item's zero value, as Go reads it).
"""

import asyncio
import os
import random
import threading
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bacalhau_grpc.cli.validate import validate_text
from bacalhau_grpc.common.model import jobfile, pb
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.pb.requester.v1 import requester_node_service_pb2 as npb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from tests.integration.network import Network, noop_job
from tests.strategies import messages

TARGETS = 6
TOTAL = int(os.environ.get("FUZZ_CASES", "200"))
CASES = max(1, TOTAL // TARGETS)

CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.ABORTED,
}
UNARY_DEADLINE = 10.0  # a unary call that takes longer hangs
STREAM_DEADLINE = 0.5  # streams are cut: DEADLINE_EXCEEDED is their normal end

REQUESTER = "/bacalhau.requester.v1.RequesterService/"
NODE = "/bacalhau.requester.v1.RequesterNodeService/"
# method path -> (request class, response class, server streaming?)
CLIENT_RPCS = {
    REQUESTER + "GetJob": (rpb.GetJobRequest, rpb.GetJobResponse, False),
    REQUESTER + "ListJobs": (rpb.ListJobsRequest, rpb.ListJobsResponse, False),
    REQUESTER + "ListJobEvents": (rpb.ListJobEventsRequest, rpb.ListJobEventsResponse, False),
    REQUESTER + "ListJobShards": (rpb.ListJobShardsRequest, rpb.ListJobShardsResponse, False),
    REQUESTER + "WatchJobEvents": (rpb.WatchJobEventsRequest, rpb.WatchJobEventsResponse, True),
    REQUESTER + "CancelJob": (rpb.CancelJobRequest, rpb.CancelJobResponse, False),
    REQUESTER + "GetJobResults": (rpb.GetJobResultsRequest, rpb.GetJobResultsResponse, False),
    REQUESTER + "StreamJobLogs": (rpb.StreamJobLogsRequest, rpb.StreamJobLogsResponse, True),
    REQUESTER + "GetVersion": (rpb.GetVersionRequest, rpb.GetVersionResponse, False),
    REQUESTER + "ListNodes": (rpb.ListNodesRequest, rpb.ListNodesResponse, False),
    REQUESTER + "GetNode": (rpb.GetNodeRequest, rpb.GetNodeResponse, False),
}
NODE_RPCS = {
    NODE + method.name: (
        message_factory.GetMessageClass(method.input_type),
        message_factory.GetMessageClass(method.output_type),
        False,
    )
    for method in npb.DESCRIPTOR.services_by_name["RequesterNodeService"].methods
}
SUBMIT = REQUESTER + "SubmitJob"

GOOD_JOBFILES = sorted((Path(__file__).parent.parent / "data" / "jobfiles" / "good").iterdir())
QUIET = settings(
    max_examples=CASES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


class Fuzzed:
    """A running network in a background event loop, called with grpc's sync API by raw bytes."""

    def __init__(self, root: Path):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.network = Network(root)
        self.run(self.network.start(nodes=1))
        self.channel = grpc.insecure_channel(self.network.requester.address)
        self.key = ClientKey.generate()
        self.accepted = 0
        self.job_ids = [self.submit_ok(noop_job()).id for _ in range(2)]

    def run(self, coroutine, timeout: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def submit_ok(self, job: pb.Job) -> pb.Job:
        data = self.key.signed_submit_request(job).SerializeToString()
        answer = self.unary(SUBMIT, data)
        self.accepted += 1
        return rpb.SubmitJobResponse.FromString(answer).job

    def unary(self, method: str, data: bytes) -> bytes:
        call = self.channel.unary_unary(method)
        return call(data, timeout=UNARY_DEADLINE)

    def stream(self, method: str, data: bytes) -> list[bytes]:
        call = self.channel.unary_stream(method)
        return list(call(data, timeout=STREAM_DEADLINE))

    def job_count(self) -> int:
        count, token = 0, ""
        while True:
            request = rpb.ListJobsRequest(page_size=100, page_token=token)
            answer = rpb.ListJobsResponse.FromString(
                self.unary(REQUESTER + "ListJobs", request.SerializeToString())
            )
            count += len(answer.jobs)
            token = answer.next_page_token
            if not token:
                return count

    def close(self):
        self.channel.close()
        self.run(self.network.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    target = Fuzzed(tmp_path_factory.mktemp("fuzz"))
    yield target
    # after every target: the server still answers, and the store holds exactly the accepted jobs
    rpb.GetVersionResponse.FromString(
        target.unary(REQUESTER + "GetVersion", rpb.GetVersionRequest().SerializeToString())
    )
    health = health_pb2_grpc.HealthStub(target.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert target.job_count() == target.accepted
    target.close()


class Tally:
    """Cases, time and failures of one target; prints the figures, fails on any failure."""

    def __init__(self, name: str):
        self.name, self.cases, self.failures = name, 0, []
        self.accepted = 0  # submissions accepted as jobs
        self.start = time.perf_counter()

    def fail(self, what: str):
        self.failures.append(what)

    def report(self):
        seconds = time.perf_counter() - self.start
        rate = self.cases / seconds if seconds else 0.0
        print(
            f"\n{self.name}: {self.cases} cases in {seconds:.1f} s ({rate:.0f} cases/s), "
            f"failures: {len(self.failures)}" + (f", accepted jobs: {self.accepted}" if self.accepted else "")
        )
        for failure in self.failures[:20]:
            print(f"  FAIL {failure}")
        assert not self.failures, f"{len(self.failures)} failing cases in {self.name}"


# ------------------------------------------------------------------------------------------ mutations


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """`data` truncated, with bytes flipped, inserted or deleted, or replaced by random bytes."""
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "random", "as-is"]))
    if kind == "random":
        return draw(st.binary(max_size=256))
    if kind == "as-is" or not data:
        return data
    position = draw(st.integers(0, len(data) - 1))
    if kind == "truncate":
        return data[:position]
    if kind == "flip":
        return data[:position] + bytes([data[position] ^ draw(st.integers(1, 255))]) + data[position + 1 :]
    if kind == "insert":
        return data[:position] + draw(st.binary(min_size=1, max_size=16)) + data[position:]
    return data[:position] + data[position + draw(st.integers(1, 16)) :]


def check_status(tally: Tally, method: str, data: bytes, error: grpc.RpcError, streaming: bool):
    code = error.code()
    if code in CLIENT_ERRORS or (streaming and code == grpc.StatusCode.DEADLINE_EXCEEDED):
        return
    tally.fail(f"{method} {data!r} -> {code.name}: {error.details()}")


def decodes(request_class, data: bytes) -> bool:
    try:
        request_class.FromString(data)
    except DecodeError:
        return False
    return True


def call_checked(fuzzed: Fuzzed, tally: Tally, method: str, spec, data: bytes) -> bytes | None:
    """Sends `data` to `method`; records a failure unless the answer parses or is a client error."""
    _, response_class, streaming = spec
    tally.cases += 1
    try:
        answers = fuzzed.stream(method, data) if streaming else [fuzzed.unary(method, data)]
    except grpc.RpcError as error:
        check_status(tally, method, data, error, streaming)
        return None
    try:
        for answer in answers:
            response_class.FromString(answer)
    except Exception as error:
        tally.fail(f"{method} {data!r} -> unparsable answer: {error!r}")
    return answers[0] if answers else b""


def with_known_ids(fuzzed: Fuzzed, request, rng: random.Random):
    """Half the time, a request's job_id names a job that exists, to reach past the NOT_FOUND checks."""
    if "job_id" in request.DESCRIPTOR.fields_by_name and rng.random() < 0.5:
        request.job_id = rng.choice(fuzzed.job_ids)
    return request


# ------------------------------------------------------------------------------------------- targets


def test_a_null_list_item_in_a_job_file_reads_as_its_zero_value():
    # found by the job-file target: it raised TypeError; Go's encoding/json reads the null item as ""
    document = "Spec:\n  Engine: noop\n  Docker:\n    Image: ubuntu\n    Entrypoint: [null, x]\n"
    assert validate_text(document) == []
    assert list(jobfile.load_job(document).spec.docker.entrypoint) == ["", "x"]


def test_job_files_never_raise():
    tally = Tally("job files")
    texts = [path.read_bytes() for path in GOOD_JOBFILES]

    @QUIET
    @given(st.sampled_from(texts).flatmap(mutated) | st.binary(max_size=512) | st.text(max_size=256))
    def case(document):
        tally.cases += 1
        try:
            problems = validate_text(document)
        except Exception as error:
            tally.fail(f"validate_text({document!r}) raised {error!r}")
            return
        if not (isinstance(problems, list) and all(isinstance(p, str) for p in problems)):
            tally.fail(f"validate_text({document!r}) returned {problems!r}")

    case()
    tally.report()


def _check_submission(fuzzed: Fuzzed, tally: Tally, data: bytes):
    before = fuzzed.job_count()
    answer = call_checked(fuzzed, tally, SUBMIT, (rpb.SubmitJobRequest, rpb.SubmitJobResponse, False), data)
    after = fuzzed.job_count()
    if answer is None:
        if after != before:
            tally.fail(f"SubmitJob {data!r} was refused but the job count went {before} -> {after}")
        return
    fuzzed.accepted += 1
    tally.accepted += 1
    job = rpb.SubmitJobResponse.FromString(answer).job
    if not job.id or after != before + 1:
        tally.fail(f"SubmitJob {data!r} accepted as {job.id!r}; job count {before} -> {after}")


def test_random_submit_requests(fuzzed):
    tally = Tally("SubmitJob random messages")

    @QUIET
    @given(messages(rpb.SubmitJobRequest, max_depth=3, max_items=2))
    def case(request):
        _check_submission(fuzzed, tally, request.SerializeToString())

    case()
    tally.report()


def test_signed_random_jobs(fuzzed):
    tally = Tally("SubmitJob signed random jobs")

    @st.composite
    def jobs(draw):
        if draw(st.booleans()):
            return draw(messages(pb.Job, max_depth=3, max_items=2))
        job = noop_job(concurrency=draw(st.integers(-2, 4)), min_bids=draw(st.integers(-1, 3)))
        job.spec.timeout = draw(st.floats(-10, 1e6, allow_nan=False))
        job.spec.annotations.extend(draw(st.lists(st.text(max_size=8), max_size=2)))
        return job

    @QUIET
    @given(jobs())
    def case(job):
        _check_submission(fuzzed, tally, fuzzed.key.signed_submit_request(job).SerializeToString())

    case()
    tally.report()


def test_mutated_submit_bytes(fuzzed):
    tally = Tally("SubmitJob mutated bytes")
    valid = fuzzed.key.signed_submit_request(noop_job()).SerializeToString()

    @QUIET
    @given(mutated(valid))
    def case(data):
        _check_submission(fuzzed, tally, data)

    case()
    tally.report()


def _rpc_target(fuzzed: Fuzzed, name: str, rpcs: dict):
    tally = Tally(name)
    before = fuzzed.job_count()

    @st.composite
    def calls(draw):
        method = draw(st.sampled_from(sorted(rpcs)))
        request_class = rpcs[method][0]
        request = draw(messages(request_class, max_depth=3, max_items=2))
        request = with_known_ids(fuzzed, request, random.Random(draw(st.integers(0, 2**32))))
        data = request.SerializeToString()
        if draw(st.integers(0, 3)) == 0:
            data = draw(mutated(data))
        return method, data

    @QUIET
    @given(calls())
    def case(call):
        method, data = call
        call_checked(fuzzed, tally, method, rpcs[method], data)

    case()
    after = fuzzed.job_count()
    if after != before:
        tally.fail(f"the job count changed {before} -> {after} without a submission")
    tally.report()


def test_requester_service_rpcs(fuzzed):
    _rpc_target(fuzzed, "RequesterService other RPCs", CLIENT_RPCS)


def test_requester_node_service_rpcs(fuzzed):
    _rpc_target(fuzzed, "RequesterNodeService RPCs", NODE_RPCS)


ALL_RPCS = {SUBMIT: (rpb.SubmitJobRequest, rpb.SubmitJobResponse, False), **CLIENT_RPCS, **NODE_RPCS}


def test_undecodable_requests_are_invalid_argument(fuzzed):
    tally = Tally("undecodable requests")

    @QUIET
    @given(st.sampled_from(sorted(ALL_RPCS)), st.binary(min_size=1, max_size=64))
    def case(method, data):
        if not decodes(ALL_RPCS[method][0], data):
            call_checked(fuzzed, tally, method, ALL_RPCS[method], data)

    case()
    tally.report()
