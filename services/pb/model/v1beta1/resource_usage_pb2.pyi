from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResourceUsageConfig(_message.Message):
    __slots__ = ("cpu", "memory", "disk", "gpu")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    DISK_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    cpu: str
    memory: str
    disk: str
    gpu: str
    def __init__(self, cpu: _Optional[str] = ..., memory: _Optional[str] = ..., disk: _Optional[str] = ..., gpu: _Optional[str] = ...) -> None: ...

class ResourceUsageData(_message.Message):
    __slots__ = ("cpu", "memory", "disk", "gpu")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    DISK_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    cpu: float
    memory: int
    disk: int
    gpu: int
    def __init__(self, cpu: _Optional[float] = ..., memory: _Optional[int] = ..., disk: _Optional[int] = ..., gpu: _Optional[int] = ...) -> None: ...

class ResourceUsageProfile(_message.Message):
    __slots__ = ("job", "system_using", "system_total")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_USING_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_TOTAL_FIELD_NUMBER: _ClassVar[int]
    job: ResourceUsageData
    system_using: ResourceUsageData
    system_total: ResourceUsageData
    def __init__(self, job: _Optional[_Union[ResourceUsageData, _Mapping]] = ..., system_using: _Optional[_Union[ResourceUsageData, _Mapping]] = ..., system_total: _Optional[_Union[ResourceUsageData, _Mapping]] = ...) -> None: ...
