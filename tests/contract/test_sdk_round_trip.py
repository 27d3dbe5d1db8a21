"""The SDK's betterproto2 dataclasses carry every model message losslessly, both ways.

One limit is Python's, not ours: betterproto2 turns a `google.protobuf.Timestamp` into a
`datetime`, which holds microseconds, so nanoseconds below a microsecond do not survive the SDK.
The round trips below therefore draw whole-microsecond times, and the last test pins the loss down.
"""

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bacalhau_sdk.bacalhau.model.v1beta1 as sdk
from bacalhau_grpc.common.model import pb
from tests.strategies import messages

PB_CLASSES = {name: getattr(m, name) for m in pb.MODULES for name in m.DESCRIPTOR.message_types_by_name}


@pytest.mark.parametrize("name", sorted(PB_CLASSES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_pb_betterproto_pb_is_lossless(name, data):
    pb_class = PB_CLASSES[name]
    original = data.draw(messages(pb_class, whole_microsecond_timestamps=True))
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
