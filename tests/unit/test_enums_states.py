"""The existing Go enum text forms (enums.py) and state predicates (states.py) against Go v0.3.

Names and orders are the seed's iota lists (stringer with the type prefix trimmed); the predicates
and the event -> state table are Go's job_state.go / jobeventtype.go (Bacalhau v0.3's job state rules).
"""

import re

import pytest

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import enums, pb, states

S = pb.JobStateType
E = pb.JobEventType

GO_NAMES = {
    "APIVersion": (enums.API_VERSION, pb.APIVersion, ["V1alpha1", "V1beta1"]),
    "Engine": (enums.ENGINE, pb.Engine, ["Noop", "Docker", "Wasm", "Language", "PythonWasm"]),
    "Verifier": (enums.VERIFIER, pb.Verifier, ["Noop", "Deterministic"]),
    "Publisher": (enums.PUBLISHER, pb.Publisher, ["Noop", "Ipfs", "Filecoin", "Estuary", "Local"]),
    "StorageSourceType": (
        enums.STORAGE_SOURCE_TYPE,
        pb.StorageSourceType,
        ["IPFS", "URLDownload", "FilecoinUnsealed", "Filecoin", "Estuary"],
    ),
    "JobStateType": (
        enums.JOB_STATE_TYPE,
        pb.JobStateType,
        ["Bidding", "Waiting", "Running", "Verifying", "Cancelled", "Error", "Completed"],
    ),
    "JobEventType": (
        enums.JOB_EVENT_TYPE,
        pb.JobEventType,
        [
            "InitialSubmission",
            "Created",
            "DealUpdated",
            "Bid",
            "BidAccepted",
            "BidRejected",
            "BidCancelled",
            "Running",
            "ComputeError",
            "ResultsProposed",
            "ResultsAccepted",
            "ResultsRejected",
            "ResultsPublished",
            "Error",
            "InvalidRequest",
        ],
    ),
    "JobLocalEventType": (
        enums.JOB_LOCAL_EVENT_TYPE,
        pb.JobLocalEventType,
        ["Selected", "Bid", "BidAccepted", "BidRejected", "Verified"],
    ),
}
IOTA_ENUMS = sorted(GO_NAMES)


def proto_suffix(proto_enum, value: int) -> str:
    """`ENGINE_PYTHON_WASM` -> `pythonwasm`: the proto value's name without the enum prefix."""
    prefix = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", proto_enum.DESCRIPTOR.name)
    return proto_enum.Name(value).removeprefix(prefix.upper() + "_").replace("_", "").lower()


# ---------------------------------------------------------------------------------------------
# GoEnum: names, types, validity, parsing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("go_type", IOTA_ENUMS)
def test_names_are_gos_stringer_names_in_iota_order(go_type):
    enum, _, names = GO_NAMES[go_type]
    assert enum.go_type == go_type
    assert enum.names() == names


@pytest.mark.parametrize("go_type", IOTA_ENUMS)
def test_types_start_at_one_and_match_the_proto_numbers(go_type):
    enum, proto_enum, names = GO_NAMES[go_type]
    assert enum.types() == list(range(1, len(names) + 1))
    for value, name in zip(enum.types(), names, strict=True):
        assert proto_suffix(proto_enum, value) == name.lower()
        assert enum.name(value) == name
    # Every proto value but UNSPECIFIED is a Go value.
    assert sorted(proto_enum.values()) == [0, *enum.types()]


@pytest.mark.parametrize("go_type", IOTA_ENUMS)
def test_is_valid_excludes_the_unknown_zero_and_anything_past_the_end(go_type):
    enum, _, names = GO_NAMES[go_type]
    assert not enum.is_valid(0)
    assert not enum.is_valid(-1)
    assert enum.is_valid(1)
    assert enum.is_valid(len(names))
    assert not enum.is_valid(len(names) + 1)
    assert not enum.is_valid(1000)


@pytest.mark.parametrize("go_type", IOTA_ENUMS)
def test_parse_ignores_case_and_surrounding_space(go_type):
    enum, _, names = GO_NAMES[go_type]
    for value, name in zip(enum.types(), names, strict=True):
        assert enum.parse(name) == value
        assert enum.parse(name.upper()) == value
        assert enum.parse(name.lower()) == value
        assert enum.parse(f"  {name}\t\n") == value


@pytest.mark.parametrize("go_type", IOTA_ENUMS)
def test_parse_of_an_unknown_name_lists_the_valid_ones_and_names_the_field(go_type):
    enum, _, names = GO_NAMES[go_type]
    with pytest.raises(InvalidArgumentError) as caught:
        enum.parse("NoSuchThing", field="Spec.Something")
    message = str(caught.value)
    assert caught.value.field == "Spec.Something"
    assert "Spec.Something" in message
    assert "NoSuchThing" in message
    assert go_type in message
    for name in names:
        assert name in message


@pytest.mark.parametrize("text", ["", "   ", "Dock er", "Docker2", "1", "engineUnknown"])
def test_parse_refuses_near_misses(text):
    with pytest.raises(InvalidArgumentError):
        enums.ENGINE.parse(text)


@pytest.mark.parametrize("go_type", IOTA_ENUMS)
def test_name_of_a_value_outside_the_enum_is_type_and_number(go_type):
    # Go's stringer: values past the list print as `Type(n)`.
    enum, _, names = GO_NAMES[go_type]
    assert enum.name(len(names) + 2) == f"{go_type}({len(names) + 2})"
    assert enum.name(-1) == f"{go_type}(-1)"


def test_parse_gives_the_proto_value():
    assert enums.ENGINE.parse("pythonwasm") == pb.Engine.ENGINE_PYTHON_WASM
    assert (
        enums.STORAGE_SOURCE_TYPE.parse("urldownload")
        == pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD
    )
    assert enums.PUBLISHER.parse("IPFS") == pb.Publisher.PUBLISHER_IPFS
    assert enums.JOB_EVENT_TYPE.parse("resultspublished") == E.JOB_EVENT_TYPE_RESULTS_PUBLISHED


def test_data_locality_counts_from_zero():
    locality = enums.JOB_SELECTION_DATA_LOCALITY
    assert locality.names() == ["local", "anywhere"]
    assert locality.types() == [0, 1]
    assert locality.is_valid(0) and locality.is_valid(1)
    assert not locality.is_valid(2) and not locality.is_valid(-1)
    assert locality.parse("Anywhere") == pb.JobSelectionDataLocality.JOB_SELECTION_DATA_LOCALITY_ANYWHERE
    assert locality.parse(" LOCAL ") == pb.JobSelectionDataLocality.JOB_SELECTION_DATA_LOCALITY_LOCAL


def test_the_proto_enum_map_covers_every_text_enum():
    assert set(enums.BY_PROTO_ENUM.values()) == {enum for enum, _, _ in GO_NAMES.values()}
    for enum, proto_enum, _ in GO_NAMES.values():
        assert enums.BY_PROTO_ENUM[proto_enum.DESCRIPTOR.full_name] is enum


def test_gos_free_functions():
    assert enums.engine_names() == GO_NAMES["Engine"][2]
    assert enums.verifier_names() == GO_NAMES["Verifier"][2]
    assert enums.publisher_names() == GO_NAMES["Publisher"][2]
    assert enums.storage_source_names() == GO_NAMES["StorageSourceType"][2]
    assert enums.job_state_type_names() == GO_NAMES["JobStateType"][2]
    checks = [
        (enums.is_valid_engine, 5),
        (enums.is_valid_verifier, 2),
        (enums.is_valid_publisher, 5),
        (enums.is_valid_storage_source_type, 5),
        (enums.is_valid_job_state, 7),
    ]
    for is_valid, last in checks:
        assert [is_valid(v) for v in (0, 1, last, last + 1)] == [False, True, True, False]


def test_names_lists_are_copies():
    names = enums.engine_names()
    names.append("Mine")
    assert "Mine" not in enums.engine_names()


# ---------------------------------------------------------------------------------------------
# JobStateType predicates, for every state
# ---------------------------------------------------------------------------------------------

# state: (IsTerminal, IsComplete, IsError, HasPassedBidAcceptedStage), from Go's job_state.go
STATE_PREDICATES = {
    S.JOB_STATE_TYPE_UNSPECIFIED: (False, False, False, False),
    S.JOB_STATE_TYPE_BIDDING: (False, False, False, False),
    S.JOB_STATE_TYPE_WAITING: (False, False, False, True),
    S.JOB_STATE_TYPE_RUNNING: (False, False, False, True),
    S.JOB_STATE_TYPE_VERIFYING: (False, False, False, True),
    S.JOB_STATE_TYPE_CANCELLED: (True, False, False, False),
    S.JOB_STATE_TYPE_ERROR: (True, True, True, True),
    S.JOB_STATE_TYPE_COMPLETED: (True, True, False, True),
}


def test_the_table_covers_every_state():
    assert sorted(STATE_PREDICATES) == sorted(S.values())


@pytest.mark.parametrize("state", sorted(STATE_PREDICATES))
def test_state_predicates(state):
    got = (
        states.is_terminal_state(state),
        states.is_complete_state(state),
        states.is_error_state(state),
        states.has_passed_bid_accepted_stage(state),
    )
    assert got == STATE_PREDICATES[state], S.Name(state)


def test_state_numbers_give_the_monotonic_order():
    # Bacalhau v0.3: Bidding 1 < Waiting 2 < Running 3 < Verifying 4 < Cancelled 5 < Error 6 < Completed 7.
    order = ["Bidding", "Waiting", "Running", "Verifying", "Cancelled", "Error", "Completed"]
    assert [enums.JOB_STATE_TYPE.parse(name) for name in order] == list(range(1, 8))


# ---------------------------------------------------------------------------------------------
# JobEventType: the state each event moves its row to, and the terminal / ignorable events
# ---------------------------------------------------------------------------------------------

# event: (resulting row state, IsTerminal, IsIgnorable), from Bacalhau v0.3's Go code
EVENTS = {
    E.JOB_EVENT_TYPE_UNSPECIFIED: (S.JOB_STATE_TYPE_UNSPECIFIED, False, False),
    E.JOB_EVENT_TYPE_INITIAL_SUBMISSION: (S.JOB_STATE_TYPE_UNSPECIFIED, False, False),
    E.JOB_EVENT_TYPE_CREATED: (S.JOB_STATE_TYPE_UNSPECIFIED, False, False),
    E.JOB_EVENT_TYPE_DEAL_UPDATED: (S.JOB_STATE_TYPE_UNSPECIFIED, False, False),
    E.JOB_EVENT_TYPE_BID: (S.JOB_STATE_TYPE_BIDDING, False, False),
    E.JOB_EVENT_TYPE_BID_ACCEPTED: (S.JOB_STATE_TYPE_WAITING, False, False),
    E.JOB_EVENT_TYPE_BID_REJECTED: (S.JOB_STATE_TYPE_CANCELLED, False, True),
    E.JOB_EVENT_TYPE_BID_CANCELLED: (S.JOB_STATE_TYPE_CANCELLED, False, False),
    E.JOB_EVENT_TYPE_RUNNING: (S.JOB_STATE_TYPE_RUNNING, False, False),
    E.JOB_EVENT_TYPE_COMPUTE_ERROR: (S.JOB_STATE_TYPE_ERROR, False, True),
    E.JOB_EVENT_TYPE_RESULTS_PROPOSED: (S.JOB_STATE_TYPE_VERIFYING, False, False),
    E.JOB_EVENT_TYPE_RESULTS_ACCEPTED: (S.JOB_STATE_TYPE_VERIFYING, False, False),
    E.JOB_EVENT_TYPE_RESULTS_REJECTED: (S.JOB_STATE_TYPE_ERROR, False, False),
    E.JOB_EVENT_TYPE_RESULTS_PUBLISHED: (S.JOB_STATE_TYPE_COMPLETED, True, True),
    E.JOB_EVENT_TYPE_ERROR: (S.JOB_STATE_TYPE_ERROR, True, True),
    E.JOB_EVENT_TYPE_INVALID_REQUEST: (S.JOB_STATE_TYPE_ERROR, False, True),
}


def test_the_table_covers_every_event():
    assert sorted(EVENTS) == sorted(E.values())


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_state_from_event(event):
    assert states.state_from_event(event) == EVENTS[event][0], E.Name(event)


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_terminal_and_ignorable_events(event):
    _, terminal, ignorable = EVENTS[event]
    assert states.is_terminal_event(event) == terminal, E.Name(event)
    assert states.is_ignorable_event(event) == ignorable, E.Name(event)


def test_every_terminal_event_is_ignorable():
    for event in E.values():
        if states.is_terminal_event(event):
            assert states.is_ignorable_event(event)


def test_an_out_of_range_event_moves_nothing():
    assert states.state_from_event(99) == S.JOB_STATE_TYPE_UNSPECIFIED
    assert not states.is_terminal_event(99) and not states.is_ignorable_event(99)


def test_the_happy_path_rows_go_as_in_bacalhau_v03():
    # Bacalhau v0.3's happy path: Created, Bid, BidAccepted, ResultsProposed, ResultsAccepted,
    # ResultsPublished move the compute node's row Bidding -> Waiting -> Verifying -> Verifying -> Completed.
    names = ["Bid", "BidAccepted", "ResultsProposed", "ResultsAccepted", "ResultsPublished"]
    rows = [enums.JOB_STATE_TYPE.name(states.state_from_event(enums.JOB_EVENT_TYPE.parse(n))) for n in names]
    assert rows == ["Bidding", "Waiting", "Verifying", "Verifying", "Completed"]
    assert states.is_terminal_state(states.state_from_event(E.JOB_EVENT_TYPE_RESULTS_PUBLISHED))
