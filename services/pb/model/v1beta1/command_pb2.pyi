from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RunCommandResult(_message.Message):
    __slots__ = ("stdout", "stdout_truncated", "stderr", "stderr_truncated", "exit_code", "error_msg")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDOUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    STDERR_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MSG_FIELD_NUMBER: _ClassVar[int]
    stdout: str
    stdout_truncated: bool
    stderr: str
    stderr_truncated: bool
    exit_code: int
    error_msg: str
    def __init__(self, stdout: _Optional[str] = ..., stdout_truncated: _Optional[bool] = ..., stderr: _Optional[str] = ..., stderr_truncated: _Optional[bool] = ..., exit_code: _Optional[int] = ..., error_msg: _Optional[str] = ...) -> None: ...
