"""The error mapping both ways, without a server: status codes, ErrorInfo, and the round trip of messages."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given
from hypothesis import strategies as st

from bacalhau_grpc.common import errors, grpc_errors


class JobNotFoundError(errors.NotFoundError):
    """A service's own, more precise error."""


class HTTPTimeoutError(errors.DeadlineExceededError):
    pass


EVERY_ERROR = [
    errors.InvalidArgumentError("must be at least 1", field="Deal.Concurrency"),
    errors.InvalidArgumentError("no engine given"),
    errors.LimitExceededError("too many inputs", limit="MaxInputs", field="Spec.Inputs"),
    errors.NotFoundError("job j-1 not found"),
    errors.AlreadyExistsError("node exists"),
    errors.FailedPreconditionError("job is complete"),
    errors.PermissionDeniedError("not your job"),
    errors.UnauthenticatedError("bad signature"),
    errors.ResourceExhaustedError("no capacity"),
    errors.UnavailableError("verifier down"),
    errors.DeadlineExceededError("too slow"),
]


def _info(status: grpc.Status) -> error_details_pb2.ErrorInfo:
    info = grpc_errors.error_info_from(grpc_errors.rich_status(status.trailing_metadata))
    assert info is not None
    return info


@pytest.mark.parametrize(
    ("cls", "reason"),
    [
        (errors.InvalidArgumentError, "INVALID_ARGUMENT"),
        (errors.LimitExceededError, "LIMIT_EXCEEDED"),
        (errors.FailedPreconditionError, "FAILED_PRECONDITION"),
        (JobNotFoundError, "JOB_NOT_FOUND"),
        (HTTPTimeoutError, "HTTP_TIMEOUT"),
        (errors.BacalhauError, "BACALHAU"),
    ],
)
def test_reason_is_the_class_name_in_upper_snake_without_error(cls, reason):
    assert grpc_errors.reason_for(cls) == reason


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidArgumentError("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.LimitExceededError("x", limit="L"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFoundError("x"), grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExistsError("x"), grpc.StatusCode.ALREADY_EXISTS),
        (errors.FailedPreconditionError("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.PermissionDeniedError("x"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.UnauthenticatedError("x"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.ResourceExhaustedError("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.UnavailableError("x"), grpc.StatusCode.UNAVAILABLE),
        (errors.DeadlineExceededError("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (JobNotFoundError("x"), grpc.StatusCode.NOT_FOUND),
        (HTTPTimeoutError("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.BacalhauError("x"), grpc.StatusCode.INTERNAL),
    ],
)
def test_each_error_family_has_its_canonical_code(error, code):
    assert grpc_errors.code_for(error) == code
    assert grpc_errors.to_status(error).code == code


def test_the_status_carries_message_and_error_info_with_field_and_limit():
    error = errors.LimitExceededError("too many inputs", limit="MaxInputs", field="Spec.Inputs")
    status = grpc_errors.to_status(error)
    assert status.details == "Spec.Inputs: too many inputs"
    (key, value), *rest = status.trailing_metadata
    assert key == "grpc-status-details-bin" and not rest
    rich = status_pb2.Status.FromString(value)
    assert (rich.code, rich.message) == (grpc.StatusCode.INVALID_ARGUMENT.value[0], status.details)
    info = _info(status)
    assert (info.reason, info.domain) == ("LIMIT_EXCEEDED", "bacalhau-grpc")
    assert dict(info.metadata) == {"field": "Spec.Inputs", "limit": "MaxInputs"}
    assert dict(_info(grpc_errors.to_status(errors.NotFoundError("gone"))).metadata) == {}


@pytest.mark.parametrize("error", EVERY_ERROR, ids=lambda e: type(e).__name__)
def test_every_error_comes_back_as_itself(error):
    status = grpc_errors.to_status(error)
    back = grpc_errors.error_from_status(status.code, status.details, status.trailing_metadata)
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.code == status.code
    for attribute in ("field", "limit", "reason"):
        assert getattr(back, attribute, None) == getattr(error, attribute, None)


def test_a_subclass_the_client_does_not_know_comes_back_as_its_family():
    status = grpc_errors.to_status(JobNotFoundError("job j-9 not found"))
    back = grpc_errors.error_from_status(status.code, status.details, status.trailing_metadata)
    assert type(back) is errors.NotFoundError
    assert str(back) == "job j-9 not found"
    assert back.error_info.reason == "JOB_NOT_FOUND"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgumentError),
        (grpc.StatusCode.NOT_FOUND, errors.NotFoundError),
        (grpc.StatusCode.UNAVAILABLE, errors.UnavailableError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceededError),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPreconditionError),
        (grpc.StatusCode.INTERNAL, grpc_errors.RemoteError),
        (grpc.StatusCode.UNIMPLEMENTED, grpc_errors.RemoteError),
        (grpc.StatusCode.UNKNOWN, grpc_errors.RemoteError),
        (grpc.StatusCode.CANCELLED, grpc_errors.RemoteError),
    ],
)
def test_without_error_info_the_code_decides(code, cls):
    back = grpc_errors.error_from_status(code, "failed to connect to all addresses", None)
    assert type(back) is cls
    assert str(back) == "failed to connect to all addresses"
    assert (back.code, back.error_info) == (code, None)
    if isinstance(back, errors.InvalidArgumentError):
        assert (back.field, back.reason) == ("", "failed to connect to all addresses")


def test_garbage_or_foreign_details_fall_back_to_the_code():
    garbage = (("grpc-status-details-bin", b"\xff\xfe not a status"),)
    back = grpc_errors.error_from_status(grpc.StatusCode.NOT_FOUND, "gone", garbage)
    assert type(back) is errors.NotFoundError and str(back) == "gone"

    # Another domain's LIMIT_EXCEEDED is not ours; a reason that contradicts the code is not trusted.
    for domain, reason, code, cls in [
        ("googleapis.com", "LIMIT_EXCEEDED", grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgumentError),
        ("bacalhau-grpc", "NOT_FOUND", grpc.StatusCode.UNAVAILABLE, errors.UnavailableError),
    ]:
        status = status_pb2.Status(code=code.value[0], message="m")
        status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain))
        metadata = (("grpc-status-details-bin", status.SerializeToString()),)
        assert type(grpc_errors.error_from_status(code, "m", metadata)) is cls


def test_a_field_the_message_does_not_repeat_still_keeps_the_message():
    status = status_pb2.Status(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message="bad")
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(
            reason="INVALID_ARGUMENT", domain="bacalhau-grpc", metadata={"field": "Spec"}
        )
    )
    metadata = (("grpc-status-details-bin", status.SerializeToString()),)
    back = grpc_errors.error_from_status(grpc.StatusCode.INVALID_ARGUMENT, "bad", metadata)
    assert (str(back), back.field, back.reason) == ("bad", "Spec", "bad")


@given(message=st.text(max_size=100), field=st.text(max_size=50), limit=st.text(min_size=1, max_size=50))
def test_messages_and_fields_survive_the_round_trip(message, field, limit):
    for error in (
        errors.InvalidArgumentError(message, field=field),
        errors.LimitExceededError(message, limit=limit, field=field),
        errors.FailedPreconditionError(message),
    ):
        status = grpc_errors.to_status(error)
        back = grpc_errors.error_from_status(status.code, status.details, status.trailing_metadata)
        assert type(back) is type(error)
        assert str(back) == str(error)
        assert getattr(back, "field", None) == getattr(error, "field", None)
        assert getattr(back, "limit", None) == getattr(error, "limit", None)
        assert getattr(back, "reason", None) == getattr(error, "reason", None)


def test_long_details_are_cut_to_fit_in_the_trailers():
    assert grpc_errors.truncate("short") == "short"
    assert grpc_errors.truncate("x" * 1024) == "x" * 1024
    assert grpc_errors.truncate("x" * 1025) == "x" * 1021 + "..."
    cut = grpc_errors.truncate("é" * 1000)  # 2 bytes each: cut on a character boundary
    assert cut == "é" * 510 + "..." and len(cut.encode()) <= 1024

    status = grpc_errors.to_status(
        errors.LimitExceededError("y" * 50_000, limit="L" * 1000, field="f" * 1000)
    )
    assert len(status.details.encode()) <= 1024 and status.details.endswith("...")
    assert status.details.startswith("f" * 1000 + ": yyy")
    info = _info(status)
    assert len(info.metadata["field"]) <= 256 and len(info.metadata["limit"]) <= 256
    rich = grpc_errors.rich_status(status.trailing_metadata)
    assert rich is not None and rich.message == status.details


def test_every_problem_of_an_invalid_input_comes_back_as_a_field_violation():
    problems = [
        errors.InvalidArgumentError("timeout must be >= 0, not -5.0", field="Spec.Timeout"),
        errors.InvalidArgumentError("'lots' is not a CPU amount", field="Spec.Resources.CPU"),
    ]
    error = errors.invalid_argument(problems)
    assert str(error) == (
        "2 problems: Spec.Timeout: timeout must be >= 0, not -5.0; "
        "Spec.Resources.CPU: 'lots' is not a CPU amount"
    )
    status = grpc_errors.to_status(error)
    request = error_details_pb2.BadRequest()
    packed = [
        d for d in grpc_errors.rich_status(status.trailing_metadata).details if d.Is(request.DESCRIPTOR)
    ]
    packed[0].Unpack(request)
    assert [(v.field, v.description) for v in request.field_violations] == [
        ("Spec.Timeout", "timeout must be >= 0, not -5.0"),
        ("Spec.Resources.CPU", "'lots' is not a CPU amount"),
    ]
    back = grpc_errors.error_from_status(status.code, status.details, status.trailing_metadata)
    assert type(back) is errors.InvalidArgumentError and str(back) == str(error)
    assert [str(p) for p in back.problems] == [str(p) for p in problems]
    # one problem is the error itself, with no BadRequest
    assert errors.invalid_argument(problems[:1]) is problems[0] and problems[0].problems == [problems[0]]


def test_a_flood_of_problems_is_bounded_in_the_trailers():
    many = [errors.InvalidArgumentError("x" * 5000, field=f"Spec.inputs[{i}].CID") for i in range(500)]
    status = grpc_errors.to_status(errors.invalid_argument(many))
    assert sum(len(value) for _, value in status.trailing_metadata) < 5 * 1024
    back = grpc_errors.error_from_status(status.code, status.details, status.trailing_metadata)
    assert len(back.problems) == grpc_errors.MAX_VIOLATIONS + 1
    assert str(back.problems[-1]) == f"and {500 - grpc_errors.MAX_VIOLATIONS} more problems"
