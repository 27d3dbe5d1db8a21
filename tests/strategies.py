"""Hypothesis strategies that build any protobuf message, generically from its descriptor.

`messages(pb.Job)` draws a `pb.Job` with any mix of fields set: every scalar type (with its full
integer range), strings (any Unicode except surrogates, which protobuf strings cannot hold), bytes,
enums (only their defined values), `optional` fields both unset and set to zero, submessages unset,
empty or filled, repeated fields and maps (int and string keys), and `google.protobuf.Timestamp`s
anywhere in years 1..9999 with any nanoseconds (the range RFC 3339 and Go's JSON can carry).

Floats are finite: no NaN (NaN != NaN breaks message equality) and no infinities (JSON cannot carry
them). -0.0 does occur: a message codec must keep it.

Sizes stay modest so property tests run fast: lists and maps hold at most `max_items` entries and
submessages nest at most `max_depth` levels deep (deeper ones are left unset). The strategies work for
any message class, not only the model's.
"""

from functools import cache

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st

_F = FieldDescriptor

# 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range of google.protobuf.Timestamp.
MIN_TIMESTAMP_SECONDS = -62135596800
MAX_TIMESTAMP_SECONDS = 253402300799

_INTEGERS = {
    _F.CPPTYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    _F.CPPTYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    _F.CPPTYPE_UINT32: st.integers(0, 2**32 - 1),
    _F.CPPTYPE_UINT64: st.integers(0, 2**64 - 1),
}
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


def timestamps(*, whole_microseconds: bool = False) -> st.SearchStrategy[Timestamp]:
    """Valid `google.protobuf.Timestamp`s: years 1..9999, nanos 0..999999999.

    `whole_microseconds` keeps nanos a multiple of 1000, for code that carries times as Python
    `datetime`s (betterproto2 does): those hold microseconds only.
    """
    step = 1000 if whole_microseconds else 1
    return st.builds(
        Timestamp,
        seconds=st.integers(MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS),
        nanos=st.one_of(st.just(0), st.integers(0, 999_999_999 // step).map(lambda n: n * step)),
    )


def messages(
    message_class: type[Message],
    *,
    max_depth: int = 4,
    max_items: int = 3,
    sdk_representable: bool = False,
) -> st.SearchStrategy:
    """Any instance of `message_class` (see the module docstring for what varies).

    `sdk_representable` keeps to values the betterproto2 SDK types can hold: Timestamps in whole
    microseconds (Python's `datetime`) and no -0.0 (betterproto2 drops it as the default 0.0).
    """
    return _messages(message_class.DESCRIPTOR, max_depth, max_items, sdk_representable)


@cache
def _messages(descriptor: Descriptor, depth: int, max_items: int, micros: bool) -> st.SearchStrategy:
    if descriptor.full_name == Timestamp.DESCRIPTOR.full_name:
        return timestamps(whole_microseconds=micros)
    message_class = message_factory.GetMessageClass(descriptor)
    fields = {}
    for field in descriptor.fields:
        if field.cpp_type == _F.CPPTYPE_MESSAGE and depth <= 0:
            continue  # too deep: leave unset
        value = _field_values(field, depth, max_items, micros)
        # Absent (None) covers "unset" for fields with presence; other fields draw their zero too.
        fields[field.name] = st.none() | value
    return st.fixed_dictionaries(fields).map(
        lambda values: message_class(**{name: value for name, value in values.items() if value is not None})
    )


def _field_values(field: FieldDescriptor, depth: int, max_items: int, micros: bool) -> st.SearchStrategy:
    if field.cpp_type == _F.CPPTYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        return st.dictionaries(
            _single_values(key_field, depth, max_items, micros),
            _single_values(value_field, depth - 1, max_items, micros),
            max_size=max_items,
        )
    if field.is_repeated:
        return st.lists(_single_values(field, depth - 1, max_items, micros), max_size=max_items)
    return _single_values(field, depth - 1, max_items, micros)


def _single_values(field: FieldDescriptor, depth: int, max_items: int, micros: bool) -> st.SearchStrategy:
    kind = field.cpp_type
    if kind == _F.CPPTYPE_MESSAGE:
        return _messages(field.message_type, depth, max_items, micros)
    if kind == _F.CPPTYPE_ENUM:
        return st.sampled_from([value.number for value in field.enum_type.values])
    if kind in _INTEGERS:
        return _INTEGERS[kind]
    if kind == _F.CPPTYPE_BOOL:
        return st.booleans()
    if kind in (_F.CPPTYPE_DOUBLE, _F.CPPTYPE_FLOAT):
        floats = st.floats(
            allow_nan=False, allow_infinity=False, width=64 if kind == _F.CPPTYPE_DOUBLE else 32
        )
        return floats.map(lambda x: x + 0.0) if micros else floats  # x + 0.0 turns -0.0 into 0.0
    if field.type == _F.TYPE_BYTES:
        return st.binary(max_size=12)
    return _TEXT
