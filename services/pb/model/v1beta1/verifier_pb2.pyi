from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Verifier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERIFIER_UNSPECIFIED: _ClassVar[Verifier]
    VERIFIER_NOOP: _ClassVar[Verifier]
    VERIFIER_DETERMINISTIC: _ClassVar[Verifier]
VERIFIER_UNSPECIFIED: Verifier
VERIFIER_NOOP: Verifier
VERIFIER_DETERMINISTIC: Verifier

class VerificationResult(_message.Message):
    __slots__ = ("complete", "result")
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    complete: bool
    result: bool
    def __init__(self, complete: _Optional[bool] = ..., result: _Optional[bool] = ...) -> None: ...
