from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class Publisher(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PUBLISHER_UNSPECIFIED: _ClassVar[Publisher]
    PUBLISHER_NOOP: _ClassVar[Publisher]
    PUBLISHER_IPFS: _ClassVar[Publisher]
    PUBLISHER_FILECOIN: _ClassVar[Publisher]
    PUBLISHER_ESTUARY: _ClassVar[Publisher]
    PUBLISHER_LOCAL: _ClassVar[Publisher]
PUBLISHER_UNSPECIFIED: Publisher
PUBLISHER_NOOP: Publisher
PUBLISHER_IPFS: Publisher
PUBLISHER_FILECOIN: Publisher
PUBLISHER_ESTUARY: Publisher
PUBLISHER_LOCAL: Publisher
