import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BuildVersionInfo(_message.Message):
    __slots__ = ("major", "minor", "git_version", "git_commit", "build_date", "goos", "goarch")
    MAJOR_FIELD_NUMBER: _ClassVar[int]
    MINOR_FIELD_NUMBER: _ClassVar[int]
    GIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    GIT_COMMIT_FIELD_NUMBER: _ClassVar[int]
    BUILD_DATE_FIELD_NUMBER: _ClassVar[int]
    GOOS_FIELD_NUMBER: _ClassVar[int]
    GOARCH_FIELD_NUMBER: _ClassVar[int]
    major: str
    minor: str
    git_version: str
    git_commit: str
    build_date: _timestamp_pb2.Timestamp
    goos: str
    goarch: str
    def __init__(self, major: _Optional[str] = ..., minor: _Optional[str] = ..., git_version: _Optional[str] = ..., git_commit: _Optional[str] = ..., build_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., goos: _Optional[str] = ..., goarch: _Optional[str] = ...) -> None: ...

class DebugInfo(_message.Message):
    __slots__ = ("component", "info")
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    component: str
    info: str
    def __init__(self, component: _Optional[str] = ..., info: _Optional[str] = ...) -> None: ...
