"""Go's predicates on job states and event types, and the event → state projection."""

from bacalhau_grpc.common.model import pb

_S = pb.JobStateType
_E = pb.JobEventType

_TERMINAL_STATES = frozenset(
    {_S.JOB_STATE_TYPE_COMPLETED, _S.JOB_STATE_TYPE_ERROR, _S.JOB_STATE_TYPE_CANCELLED}
)
_COMPLETE_STATES = frozenset({_S.JOB_STATE_TYPE_COMPLETED, _S.JOB_STATE_TYPE_ERROR})
_PAST_BID_ACCEPTED = frozenset(
    {
        _S.JOB_STATE_TYPE_WAITING,
        _S.JOB_STATE_TYPE_RUNNING,
        _S.JOB_STATE_TYPE_VERIFYING,
        _S.JOB_STATE_TYPE_ERROR,
        _S.JOB_STATE_TYPE_COMPLETED,
    }
)
_TERMINAL_EVENTS = frozenset({_E.JOB_EVENT_TYPE_ERROR, _E.JOB_EVENT_TYPE_RESULTS_PUBLISHED})
_IGNORABLE_EVENTS = _TERMINAL_EVENTS | {
    _E.JOB_EVENT_TYPE_COMPUTE_ERROR,
    _E.JOB_EVENT_TYPE_BID_REJECTED,
    _E.JOB_EVENT_TYPE_INVALID_REQUEST,
}
_STATE_FROM_EVENT: dict[int, int] = {
    _E.JOB_EVENT_TYPE_BID: _S.JOB_STATE_TYPE_BIDDING,
    _E.JOB_EVENT_TYPE_BID_ACCEPTED: _S.JOB_STATE_TYPE_WAITING,
    _E.JOB_EVENT_TYPE_BID_REJECTED: _S.JOB_STATE_TYPE_CANCELLED,
    _E.JOB_EVENT_TYPE_BID_CANCELLED: _S.JOB_STATE_TYPE_CANCELLED,
    _E.JOB_EVENT_TYPE_RUNNING: _S.JOB_STATE_TYPE_RUNNING,
    _E.JOB_EVENT_TYPE_COMPUTE_ERROR: _S.JOB_STATE_TYPE_ERROR,
    _E.JOB_EVENT_TYPE_RESULTS_PROPOSED: _S.JOB_STATE_TYPE_VERIFYING,
    _E.JOB_EVENT_TYPE_RESULTS_ACCEPTED: _S.JOB_STATE_TYPE_VERIFYING,
    _E.JOB_EVENT_TYPE_RESULTS_REJECTED: _S.JOB_STATE_TYPE_ERROR,
    _E.JOB_EVENT_TYPE_RESULTS_PUBLISHED: _S.JOB_STATE_TYPE_COMPLETED,
    _E.JOB_EVENT_TYPE_ERROR: _S.JOB_STATE_TYPE_ERROR,
    _E.JOB_EVENT_TYPE_INVALID_REQUEST: _S.JOB_STATE_TYPE_ERROR,
}


def is_terminal_state(state: int) -> bool:
    """The row's lifecycle has ended on its node: Completed, Error or Cancelled."""
    return state in _TERMINAL_STATES


def is_complete_state(state: int) -> bool:
    """The node ran the shard to an end: Completed or Error (a cancellation never ran it)."""
    return state in _COMPLETE_STATES


def is_error_state(state: int) -> bool:
    return state == _S.JOB_STATE_TYPE_ERROR


def has_passed_bid_accepted_stage(state: int) -> bool:
    """The row's bid was accepted: Waiting, Running, Verifying, Error or Completed."""
    return state in _PAST_BID_ACCEPTED


_UNSPECIFIED_STATE = _S.JOB_STATE_TYPE_UNSPECIFIED  # looked up once: protobuf enum attributes are slow


def state_from_event(event_type: int) -> int:
    """The row state an event moves its row to (Go's `GetStateFromEvent`); UNSPECIFIED if none."""
    return _STATE_FROM_EVENT.get(event_type, _UNSPECIFIED_STATE)


def is_terminal_event(event_type: int) -> bool:
    """The event ends the job's lifecycle for every node: Error or ResultsPublished."""
    return event_type in _TERMINAL_EVENTS


def is_ignorable_event(event_type: int) -> bool:
    """A node may ignore the rest of the job after this event (terminal events, its own failure,
    a rejected bid or an invalid request)."""
    return event_type in _IGNORABLE_EVENTS
