from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobSelectionDataLocality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_SELECTION_DATA_LOCALITY_LOCAL: _ClassVar[JobSelectionDataLocality]
    JOB_SELECTION_DATA_LOCALITY_ANYWHERE: _ClassVar[JobSelectionDataLocality]
JOB_SELECTION_DATA_LOCALITY_LOCAL: JobSelectionDataLocality
JOB_SELECTION_DATA_LOCALITY_ANYWHERE: JobSelectionDataLocality

class JobSelectionPolicy(_message.Message):
    __slots__ = ("locality", "reject_stateless_jobs", "probe_http", "probe_exec")
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    REJECT_STATELESS_JOBS_FIELD_NUMBER: _ClassVar[int]
    PROBE_HTTP_FIELD_NUMBER: _ClassVar[int]
    PROBE_EXEC_FIELD_NUMBER: _ClassVar[int]
    locality: JobSelectionDataLocality
    reject_stateless_jobs: bool
    probe_http: str
    probe_exec: str
    def __init__(self, locality: _Optional[_Union[JobSelectionDataLocality, str]] = ..., reject_stateless_jobs: _Optional[bool] = ..., probe_http: _Optional[str] = ..., probe_exec: _Optional[str] = ...) -> None: ...
