import datetime

from bacalhau_grpc.pb.model.v1beta1 import job_event_pb2 as _job_event_pb2
from bacalhau_grpc.pb.model.v1beta1 import job_state_pb2 as _job_state_pb2
from bacalhau_grpc.pb.model.v1beta1 import spec_pb2 as _spec_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Job(_message.Message):
    __slots__ = ("api_version", "id", "requester_node_id", "requester_public_key", "client_id", "spec", "deal", "execution_plan", "created_at", "state", "events", "local_events")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DEAL_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PLAN_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_EVENTS_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    id: str
    requester_node_id: str
    requester_public_key: bytes
    client_id: str
    spec: _spec_pb2.Spec
    deal: _spec_pb2.Deal
    execution_plan: _spec_pb2.JobExecutionPlan
    created_at: _timestamp_pb2.Timestamp
    state: _job_state_pb2.JobState
    events: _containers.RepeatedCompositeFieldContainer[_job_event_pb2.JobEvent]
    local_events: _containers.RepeatedCompositeFieldContainer[_job_event_pb2.JobLocalEvent]
    def __init__(self, api_version: _Optional[str] = ..., id: _Optional[str] = ..., requester_node_id: _Optional[str] = ..., requester_public_key: _Optional[bytes] = ..., client_id: _Optional[str] = ..., spec: _Optional[_Union[_spec_pb2.Spec, _Mapping]] = ..., deal: _Optional[_Union[_spec_pb2.Deal, _Mapping]] = ..., execution_plan: _Optional[_Union[_spec_pb2.JobExecutionPlan, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[_job_state_pb2.JobState, _Mapping]] = ..., events: _Optional[_Iterable[_Union[_job_event_pb2.JobEvent, _Mapping]]] = ..., local_events: _Optional[_Iterable[_Union[_job_event_pb2.JobLocalEvent, _Mapping]]] = ...) -> None: ...

class JobShard(_message.Message):
    __slots__ = ("job", "index")
    JOB_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    job: Job
    index: int
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., index: _Optional[int] = ...) -> None: ...

class JobWithInfo(_message.Message):
    __slots__ = ("job", "job_state", "job_events", "job_local_events", "trace_id", "event_count")
    JOB_FIELD_NUMBER: _ClassVar[int]
    JOB_STATE_FIELD_NUMBER: _ClassVar[int]
    JOB_EVENTS_FIELD_NUMBER: _ClassVar[int]
    JOB_LOCAL_EVENTS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    job: Job
    job_state: _job_state_pb2.JobState
    job_events: _containers.RepeatedCompositeFieldContainer[_job_event_pb2.JobEvent]
    job_local_events: _containers.RepeatedCompositeFieldContainer[_job_event_pb2.JobLocalEvent]
    trace_id: str
    event_count: int
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., job_state: _Optional[_Union[_job_state_pb2.JobState, _Mapping]] = ..., job_events: _Optional[_Iterable[_Union[_job_event_pb2.JobEvent, _Mapping]]] = ..., job_local_events: _Optional[_Iterable[_Union[_job_event_pb2.JobLocalEvent, _Mapping]]] = ..., trace_id: _Optional[str] = ..., event_count: _Optional[int] = ...) -> None: ...

class JobCreatePayload(_message.Message):
    __slots__ = ("client_id", "job", "context", "submission_id")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SUBMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    job: Job
    context: bytes
    submission_id: str
    def __init__(self, client_id: _Optional[str] = ..., job: _Optional[_Union[Job, _Mapping]] = ..., context: _Optional[bytes] = ..., submission_id: _Optional[str] = ...) -> None: ...
