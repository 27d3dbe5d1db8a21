"""Idempotent submission: a client-chosen submission ID (`JobCreatePayload.SubmissionID`, inside the signed
payload) names one job of that client. A second submission with the same (client, ID) and the same payload
gets the first job back and creates nothing; with another payload it is refused (AlreadyExistsError,
ALREADY_EXISTS). The SDK and the CLI set an ID on every submission, so retrying a call whose answer was lost
(a timeout, a requester that died after committing) never makes a second job.

"The same payload" is what the job is made of, as submitted: the job's APIVersion, Spec (annotations
included) and Deal, and the inline context archive. Fields the requester owns and drops (the job's ID,
state, events, creation time, ...) and the signature do not count. `submission_digest` is a SHA-256 over
the deterministic serialization of those fields, then the context's bytes.

The records: (client_id, submission_id) → (job_id, digest), written in the store's transaction of the job
itself (so a crash leaves both or neither) and kept as long as the job (there is no retention yet). This
module keeps what is in memory: the submissions in progress (a second one with the same key waits for the
first's outcome, so concurrent twins make one job) and the records not yet committed (found here until the
store has them; found in the store from then on, after a restart too).
"""

import asyncio
import contextlib
import hashlib
from collections.abc import Iterator

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.ports import JobStore, SubmissionRecord

# (client_id, submission_id)
SubmissionKey = tuple[str, str]


def submission_digest(payload: pb.JobCreatePayload) -> str:
    """The hex SHA-256 of what a submission's job is made of (see the module's docstring)."""
    made_of = pb.Job(api_version=payload.job.api_version)
    made_of.spec.CopyFrom(payload.job.spec)
    made_of.deal.CopyFrom(payload.job.deal)
    head = made_of.SerializeToString(deterministic=True)
    digest = hashlib.sha256(len(head).to_bytes(8, "big"))
    digest.update(head)
    digest.update(payload.context)
    return digest.hexdigest()


class Submissions:
    """The in-memory side of submission IDs: those in progress and those whose record is not committed."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        # Set once the submission holding the key has an outcome (a job, or an error).
        self._in_progress: dict[SubmissionKey, asyncio.Event] = {}
        # Recorded but maybe not committed yet: (record, the store generation that holds it).
        self._uncommitted: dict[SubmissionKey, tuple[SubmissionRecord, int]] = {}

    def in_progress(self, key: SubmissionKey) -> asyncio.Event | None:
        """The event set when the submission holding `key` ends, or None when none holds it."""
        return self._in_progress.get(key)

    @contextlib.contextmanager
    def reserved(self, key: SubmissionKey) -> Iterator[None]:
        """Hold `key` while the block runs (enter it with no await since `in_progress` said it is free)."""
        if key in self._in_progress:
            raise RuntimeError(f"submission {key[1]!r} of client {key[0]!r} is in progress already")
        done = self._in_progress[key] = asyncio.Event()
        try:
            yield
        finally:
            del self._in_progress[key]
            done.set()

    def find(self, key: SubmissionKey) -> SubmissionRecord | None:
        """What the submission with this key made: from memory while not committed, else the store."""
        pending = self._uncommitted.get(key)
        if pending is not None:
            return pending[0]
        return self.store.find_submission(*key)

    def record(self, key: SubmissionKey, record: SubmissionRecord) -> None:
        """Queue the record to the store (call right after the job's `add_job`, with no await between:
        the same transaction) and keep it in memory until it is committed."""
        self.store.add_submission(key[0], key[1], record)
        generation = self.store.generation
        self._uncommitted[key] = (record, generation)

        def committed() -> None:
            # Also called when the store's writer stops: the record stays in memory when not committed.
            if self.store.committed_generation >= generation and self._uncommitted.get(key) == (
                record,
                generation,
            ):
                del self._uncommitted[key]

        self.store.when_committed(committed)

    @property
    def uncommitted(self) -> int:
        """Records kept in memory, waiting for their commit."""
        return len(self._uncommitted)
