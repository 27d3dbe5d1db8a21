"""Verification proposals: noop, deterministic, and the test knobs."""

import hashlib

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.executions import new_execution
from bacalhau_grpc.compute.domain.proposals import Proposer, folder_hash, result_hash
from bacalhau_grpc.compute.domain.runs import RunResult
from tests.unit.compute.support import make_job

DETERMINISTIC = pb.Verifier.VERIFIER_DETERMINISTIC
RESULT = RunResult(stdout=b"hello\n", stderr=b"", exit_code=0)


def execution(verifier=DETERMINISTIC):
    return new_execution(make_job(verifier=verifier), 0, pb.ResourceUsageData())


def test_noop_verifier_proposes_nothing_even_for_a_bad_actor():
    assert Proposer("node-a").propose(execution(pb.Verifier.VERIFIER_NOOP), RESULT) == b""
    assert Proposer("node-a", bad_actor=True).propose(execution(pb.Verifier.VERIFIER_NOOP), RESULT) == b""


def test_deterministic_proposal_is_the_hex_sha256_of_the_result():
    expected = hashlib.sha256(b"stdout\0hello\n\0stderr\0\0exitCode\0" + b"0").hexdigest()
    assert result_hash(RESULT) == expected
    proposal = Proposer("node-a").propose(execution(), RESULT)
    assert proposal == expected.encode("ascii")
    # Same result on another node, same proposal; a different exit code, a different one.
    assert Proposer("node-b").propose(execution(), RESULT) == proposal
    other = RunResult(stdout=b"hello\n", stderr=b"", exit_code=1)
    assert Proposer("node-a").propose(execution(), other) != proposal


def test_the_hash_covers_the_complete_streams_not_the_summary():
    a = RunResult(stdout=b"x" * 5000, stderr=b"", exit_code=0)
    b = RunResult(stdout=b"x" * 4999 + b"y", stderr=b"", exit_code=0)
    assert a.summary() == b.summary()
    assert result_hash(a) != result_hash(b)


def test_the_result_hash_knob_overrides_the_computed_hash():
    proposer = Proposer("node-a", result_hash_override="ABCDEF0123")
    assert proposer.propose(execution(), RESULT) == b"abcdef0123"


def test_a_bad_actor_proposes_a_hash_of_its_node_and_execution():
    e = execution()
    proposal = Proposer("node-a", bad_actor=True, result_hash_override="aa").propose(e, RESULT)
    assert proposal == hashlib.sha256(f"node-a{e.id}".encode()).hexdigest().encode()
    assert Proposer("node-b", bad_actor=True).propose(e, RESULT) != proposal


def test_a_result_folder_is_hashed_by_relative_path_and_content(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for root in (one, two):
        (root / "outputs").mkdir(parents=True)
        (root / "stdout").write_bytes(b"hi")
        (root / "outputs" / "a.txt").write_bytes(b"A")
    assert folder_hash(one) == folder_hash(two)
    assert result_hash(RunResult(b"", b"", 0, result_dir=one)) == folder_hash(one)
    (two / "outputs" / "a.txt").write_bytes(b"B")
    assert folder_hash(one) != folder_hash(two)
