"""The SDK's betterproto2 dataclasses carry every model message losslessly, both ways.

Two limits are betterproto2's, not ours: it turns a `google.protobuf.Timestamp` into a `datetime`,
which holds microseconds, so nanoseconds below a microsecond do not survive the SDK; and it drops a
double of -0.0 as if it were the default 0.0. The round trips below therefore draw values the SDK
types can hold, and the last two tests pin both losses down.
"""

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bacalhau_grpc.sdk.types.bacalhau.model.v1beta1 as sdk
from bacalhau_grpc.common.model import pb
from tests.strategies import messages

PB_CLASSES = {name: getattr(m, name) for m in pb.MODULES for name in m.DESCRIPTOR.message_types_by_name}


@pytest.mark.parametrize("name", sorted(PB_CLASSES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_pb_betterproto_pb_is_lossless(name, data):
    pb_class = PB_CLASSES[name]
    original = data.draw(messages(pb_class, sdk_representable=True))
    sdk_message = getattr(sdk, name).parse(original.SerializeToString())
    assert pb_class.FromString(bytes(sdk_message)) == original
    assert getattr(sdk, name).parse(bytes(sdk_message)) == sdk_message


def test_unset_and_zero_exit_codes_stay_apart_in_the_sdk():
    assert sdk.RunCommandResult.parse(pb.RunCommandResult().SerializeToString()).exit_code is None
    assert sdk.RunCommandResult.parse(pb.RunCommandResult(exit_code=0).SerializeToString()).exit_code == 0


def test_sdk_times_keep_microseconds_and_drop_finer_digits():
    event = pb.JobEvent()
    event.event_time.FromJsonString("2022-11-17T13:32:55.756658941Z")
    sdk_event = sdk.JobEvent.parse(event.SerializeToString())
    assert sdk_event.event_time == datetime.datetime(2022, 11, 17, 13, 32, 55, 756658, tzinfo=datetime.UTC)
    assert pb.JobEvent.FromString(bytes(sdk_event)).event_time.nanos == 756658000


def test_sdk_turns_negative_zero_into_zero():
    sdk_spec = sdk.Spec.parse(pb.Spec(timeout=-0.0).SerializeToString())
    assert str(pb.Spec.FromString(bytes(sdk_spec)).timeout) == "0.0"
