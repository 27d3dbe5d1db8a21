"""Applying a job event to the job's state (Bacalhau v0.3's job state rules): the state projection.

* The row an event updates is keyed by its TargetNodeID when set, else its SourceNodeID, and its shard.
* Events that carry no row state (Created, DealUpdated, InitialSubmission) update no row.
* Monotonic: an update to a lower state number than the row's is rejected
  (Bidding 1 < Waiting 2 < Running 3 < Verifying 4 < Cancelled 5 < Error 6 < Completed 7).
* Partial merge: Status, RunOutput and VerificationProposal are overwritten only when the event has a
  value; VerificationResult only when it is Complete; PublishedResult only when it has a valid
  StorageSource.
"""

from dataclasses import dataclass

from bacalhau_grpc.common.model import enums, pb, states

S = pb.JobStateType


class ProjectionRejected(Exception):
    """The event would move its row backwards; the row is left as it was."""

    def __init__(self, message: str, *, node_id: str, shard_index: int) -> None:
        super().__init__(message)
        self.node_id = node_id
        self.shard_index = shard_index


@dataclass(frozen=True)
class RowUpdate:
    """The row an event changed (the message inside the state, not a copy)."""

    node_id: str
    shard_index: int
    row: pb.JobShardState


def row_key(event: pb.JobEvent) -> str:
    return event.target_node_id or event.source_node_id


def apply_event(state: pb.JobState, event: pb.JobEvent) -> RowUpdate | None:
    """Apply `event` to `state` in place. Returns the updated row, or None when the event moves no row.

    Raises ProjectionRejected (state unchanged) when the row's state is already past the event's.
    """
    new_state = states.state_from_event(event.event_name)
    if new_state == S.JOB_STATE_TYPE_UNSPECIFIED:
        return None
    node_id = row_key(event)
    shard_index = event.shard_index
    node = state.nodes.get(node_id)
    current = node.shards.get(shard_index) if node is not None else None
    if current is not None and new_state < current.state:
        raise ProjectionRejected(
            f"cannot update shard state to {enums.JOB_STATE_TYPE.name(new_state)} as current state is "
            f"{enums.JOB_STATE_TYPE.name(current.state)} "
            f"(node {node_id}, shard {shard_index}, event {enums.JOB_EVENT_TYPE.name(event.event_name)})",
            node_id=node_id,
            shard_index=shard_index,
        )
    row = state.nodes[node_id].shards[shard_index]
    row.node_id = node_id
    row.shard_index = shard_index
    row.state = new_state
    merge_into_row(row, event)
    return RowUpdate(node_id, shard_index, row)


def merge_into_row(row: pb.JobShardState, event: pb.JobEvent) -> None:
    """The partial merge of an event's details into its row."""
    if event.status:
        row.status = event.status
    if event.HasField("run_output"):
        row.run_output.CopyFrom(event.run_output)
    if event.verification_proposal:
        row.verification_proposal = event.verification_proposal
    if event.HasField("verification_result") and event.verification_result.complete:
        row.verification_result.CopyFrom(event.verification_result)
    if event.HasField("published_result") and enums.is_valid_storage_source_type(
        event.published_result.storage_source
    ):
        row.published_result.CopyFrom(event.published_result)
