from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class APIVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    API_VERSION_UNSPECIFIED: _ClassVar[APIVersion]
    API_VERSION_V1ALPHA1: _ClassVar[APIVersion]
    API_VERSION_V1BETA1: _ClassVar[APIVersion]
API_VERSION_UNSPECIFIED: APIVersion
API_VERSION_V1ALPHA1: APIVersion
API_VERSION_V1BETA1: APIVersion
