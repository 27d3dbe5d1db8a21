"""Which executions' results are accepted: Bacalhau v0.3's noop and deterministic verifiers.

Pure functions over the executions of one shard (no I/O, no transport). Every execution gets a
verdict: accepted or not, and why, in words a user can read in the job's events.

* noop: every execution that proposed a result is accepted; the proposal is not looked at.
* deterministic: executions are grouped by their proposal (the result hash, compared as bytes). The
  largest group wins and only its members are accepted. The outcome is void (nobody is accepted) when
  1. two or more groups tie for largest,
  2. there is only one result in total (nothing to compare it with),
  3. `Deal.Confidence` > 0 and the largest group is smaller than it, or
  4. the winning proposal is empty.

Before judging, the shard's execution must be complete: at least `Deal.Concurrency` results (v0.3's
`IsExecutionComplete`).
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import enums, jobs, pb

# What GetVerifierInfo tells compute nodes about each verifier's proposal.
PROPOSAL_FORMATS: dict[int, str] = {
    pb.Verifier.VERIFIER_NOOP: (
        "Noop: empty bytes. The noop verifier accepts every execution that proposed a result and "
        "never looks at the proposal."
    ),
    pb.Verifier.VERIFIER_DETERMINISTIC: (
        "Deterministic: the ASCII hex SHA-256 of the content of the shard's result folder; for the "
        "noop executor, SHA-256 over b'stdout\\0' + stdout + b'\\0stderr\\0' + stderr + "
        "b'\\0exitCode\\0' + str(exit_code). Executions are grouped by identical proposals and the "
        "largest group is accepted, unless groups tie for largest, there is only one result, the "
        "largest group is smaller than Deal.Confidence (when above 0) or the winning proposal is empty; "
        "then no result is accepted."
    ),
}


class Proposal(Protocol):
    """One execution's proposal (the wire's `ExecutionProposal` has these fields)."""

    @property
    def execution_id(self) -> str: ...

    @property
    def node_id(self) -> str: ...

    @property
    def verification_proposal(self) -> bytes: ...


@dataclass(frozen=True)
class Verdict:
    """The decision on one execution."""

    execution_id: str
    node_id: str
    accepted: bool
    reason: str


def verify(job: pb.Job, shard_index: int, executions: Sequence[Proposal]) -> list[Verdict]:
    """One verdict per execution, in the order given, by the rules of the job's `Spec.Verifier`.

    Raises InvalidArgumentError for an unknown verifier (`Spec.Verifier`), a bad shard index or
    confidence, a repeated execution ID, or a shard whose execution is not complete.
    """
    verifier = job.spec.verifier
    if not enums.VERIFIER.is_valid(verifier):
        raise InvalidArgumentError(
            f"no matching verifier found on this server: {enums.VERIFIER.name(verifier)}; "
            f"valid values: {', '.join(enums.VERIFIER.names())}",
            field="Spec.Verifier",
        )
    _check_request(job, shard_index, executions)
    check_execution_complete(job, shard_index, len(executions))
    if verifier == pb.Verifier.VERIFIER_NOOP:
        return verify_noop(executions)
    return verify_deterministic(executions, confidence=job.deal.confidence)


def check_execution_complete(job: pb.Job, shard_index: int, results: int) -> None:
    """At least `Deal.Concurrency` results (and at least one) must be in before verifying a shard."""
    needed = max(job.deal.concurrency, 1)
    if results < needed:
        shard = jobs.get_shard_id(job.id, shard_index)
        raise InvalidArgumentError(
            f"verifying shard {shard} but execution is not complete: {results} of {needed} results",
            field="executions",
        )


def verify_noop(executions: Sequence[Proposal]) -> list[Verdict]:
    """Every execution that proposed a result is accepted."""
    return [
        Verdict(e.execution_id, e.node_id, True, "the noop verifier accepts every result") for e in executions
    ]


def verify_deterministic(executions: Sequence[Proposal], *, confidence: int = 0) -> list[Verdict]:
    """Only the largest group of identical proposals is accepted, unless the outcome is void."""
    total = len(executions)
    if total == 0:
        return []
    sizes = Counter(bytes(e.verification_proposal) for e in executions)
    winner, largest = max(sizes.items(), key=lambda item: item[1])
    tied = sum(1 for size in sizes.values() if size == largest)

    void = ""
    if total == 1:
        void = "only one result: nothing to compare it with"
    elif tied > 1:
        void = f"tie between groups of {largest} ({tied} groups of {largest} out of {total} results)"
    elif confidence > 0 and largest < confidence:
        void = f"largest group {largest} below confidence {confidence} ({largest} of {total} agree)"
    elif not winner:
        void = f"empty result hash (the largest group, {largest} of {total}, proposed nothing)"
    if void:
        return [Verdict(e.execution_id, e.node_id, False, void) for e in executions]

    verdicts = []
    for e in executions:
        if bytes(e.verification_proposal) == winner:
            verdicts.append(
                Verdict(e.execution_id, e.node_id, True, f"in the largest group ({largest} of {total} agree)")
            )
        else:
            mine = sizes[bytes(e.verification_proposal)]
            verdicts.append(
                Verdict(
                    e.execution_id,
                    e.node_id,
                    False,
                    f"not in the largest group: its result is shared by {mine} of {total}, "
                    f"{largest} of {total} agree on another",
                )
            )
    return verdicts


def _check_request(job: pb.Job, shard_index: int, executions: Sequence[Proposal]) -> None:
    if shard_index < 0:
        raise InvalidArgumentError(f"shard index {shard_index} is negative", field="shard_index")
    total_shards = job.execution_plan.total_shards
    if total_shards > 0 and shard_index >= total_shards:
        raise InvalidArgumentError(
            f"shard index {shard_index} is outside the job's {total_shards} shard(s)", field="shard_index"
        )
    if job.deal.confidence < 0:
        raise InvalidArgumentError(f"{job.deal.confidence} is negative", field="Deal.Confidence")
    seen: dict[str, int] = {}
    for i, execution in enumerate(executions):
        if not execution.execution_id:
            continue
        first = seen.setdefault(execution.execution_id, i)
        if first != i:
            raise InvalidArgumentError(
                f"execution {execution.execution_id!r} is given twice (also at executions[{first}])",
                field=f"executions[{i}].execution_id",
            )
