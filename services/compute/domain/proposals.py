"""The verification proposal a compute node sends with its results.

* Noop verifier: empty bytes (the noop verifier never looks at it).
* Deterministic verifier: the ASCII hex SHA-256 of the result. For a run without a result folder (the
  noop executor) that is SHA-256 over
  b"stdout\\0" + stdout + b"\\0stderr\\0" + stderr + b"\\0exitCode\\0" + str(exit_code),
  with the COMPLETE streams (not the 2 KiB summary). With a result folder it is the hash of the
  folder's content (every file's relative path and bytes, in sorted order).
* Test knobs: `result_hash` (setting `noop_result_hash`) replaces the computed hash; `bad_actor`
  proposes SHA-256(node_id + execution_id), which differs on every node, so the verifier rejects it
  whenever honest nodes agree; `bad_actor_shards`, when given, limits the lies to those shard indexes.

v0.3 encrypted the deterministic proposal with the requester's public key; the gRPC transport is the
trust boundary here, so the proposal travels as is.
"""

import hashlib
from collections.abc import Collection
from pathlib import Path

from bacalhau_grpc.common.content import safe
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.bidding import verifier_of
from bacalhau_grpc.compute.domain.executions import Execution
from bacalhau_grpc.compute.domain.runs import RunResult


def result_hash(result: RunResult) -> str:
    """The hex SHA-256 of a run's result (its folder when it has one, else its streams and exit code)."""
    if result.result_dir is not None:
        return folder_hash(result.result_dir)
    digest = hashlib.sha256()
    digest.update(b"stdout\0")
    digest.update(result.stdout)
    digest.update(b"\0stderr\0")
    digest.update(result.stderr)
    digest.update(b"\0exitCode\0")
    digest.update(str(result.exit_code).encode())
    return digest.hexdigest()


def folder_hash(root: Path) -> str:
    """Hex SHA-256 over every regular file under `root`: relative path, NUL, size, NUL, content. Links
    and special files are never followed nor read (`safe.walk`)."""
    digest = hashlib.sha256()
    for relative, path in sorted(safe.files(root)):
        data = safe.read_bytes(path)
        digest.update(relative.encode())
        digest.update(b"\0%d\0" % len(data))
        digest.update(data)
    return digest.hexdigest()


class Proposer:
    """Makes each execution's proposal, following the node's knobs."""

    def __init__(
        self,
        node_id: str,
        *,
        result_hash_override: str = "",
        bad_actor: bool = False,
        bad_actor_shards: Collection[int] = (),
    ) -> None:
        self.node_id = node_id
        self.result_hash_override = result_hash_override.lower()
        self.bad_actor = bad_actor
        # The shards a bad actor lies on; empty: every shard.
        self.bad_actor_shards = frozenset(bad_actor_shards)

    def lies_on(self, shard_index: int) -> bool:
        return self.bad_actor and (not self.bad_actor_shards or shard_index in self.bad_actor_shards)

    def propose(self, execution: Execution, result: RunResult) -> bytes:
        if verifier_of(execution.job.spec) != pb.Verifier.VERIFIER_DETERMINISTIC:
            return b""
        if self.lies_on(execution.shard_index):
            return hashlib.sha256((self.node_id + execution.id).encode()).hexdigest().encode("ascii")
        if self.result_hash_override:
            return self.result_hash_override.encode("ascii")
        return result_hash(result).encode("ascii")
