import datetime

from bacalhau_grpc.pb.model.v1beta1 import command_pb2 as _command_pb2
from bacalhau_grpc.pb.model.v1beta1 import spec_pb2 as _spec_pb2
from bacalhau_grpc.pb.model.v1beta1 import storage_pb2 as _storage_pb2
from bacalhau_grpc.pb.model.v1beta1 import verifier_pb2 as _verifier_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_EVENT_TYPE_UNSPECIFIED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_INITIAL_SUBMISSION: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_CREATED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_DEAL_UPDATED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_BID: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_BID_ACCEPTED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_BID_REJECTED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_BID_CANCELLED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_RUNNING: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_COMPUTE_ERROR: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_RESULTS_PROPOSED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_RESULTS_ACCEPTED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_RESULTS_REJECTED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_RESULTS_PUBLISHED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_ERROR: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_INVALID_REQUEST: _ClassVar[JobEventType]

class JobLocalEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_LOCAL_EVENT_TYPE_UNSPECIFIED: _ClassVar[JobLocalEventType]
    JOB_LOCAL_EVENT_TYPE_SELECTED: _ClassVar[JobLocalEventType]
    JOB_LOCAL_EVENT_TYPE_BID: _ClassVar[JobLocalEventType]
    JOB_LOCAL_EVENT_TYPE_BID_ACCEPTED: _ClassVar[JobLocalEventType]
    JOB_LOCAL_EVENT_TYPE_BID_REJECTED: _ClassVar[JobLocalEventType]
    JOB_LOCAL_EVENT_TYPE_VERIFIED: _ClassVar[JobLocalEventType]
JOB_EVENT_TYPE_UNSPECIFIED: JobEventType
JOB_EVENT_TYPE_INITIAL_SUBMISSION: JobEventType
JOB_EVENT_TYPE_CREATED: JobEventType
JOB_EVENT_TYPE_DEAL_UPDATED: JobEventType
JOB_EVENT_TYPE_BID: JobEventType
JOB_EVENT_TYPE_BID_ACCEPTED: JobEventType
JOB_EVENT_TYPE_BID_REJECTED: JobEventType
JOB_EVENT_TYPE_BID_CANCELLED: JobEventType
JOB_EVENT_TYPE_RUNNING: JobEventType
JOB_EVENT_TYPE_COMPUTE_ERROR: JobEventType
JOB_EVENT_TYPE_RESULTS_PROPOSED: JobEventType
JOB_EVENT_TYPE_RESULTS_ACCEPTED: JobEventType
JOB_EVENT_TYPE_RESULTS_REJECTED: JobEventType
JOB_EVENT_TYPE_RESULTS_PUBLISHED: JobEventType
JOB_EVENT_TYPE_ERROR: JobEventType
JOB_EVENT_TYPE_INVALID_REQUEST: JobEventType
JOB_LOCAL_EVENT_TYPE_UNSPECIFIED: JobLocalEventType
JOB_LOCAL_EVENT_TYPE_SELECTED: JobLocalEventType
JOB_LOCAL_EVENT_TYPE_BID: JobLocalEventType
JOB_LOCAL_EVENT_TYPE_BID_ACCEPTED: JobLocalEventType
JOB_LOCAL_EVENT_TYPE_BID_REJECTED: JobLocalEventType
JOB_LOCAL_EVENT_TYPE_VERIFIED: JobLocalEventType

class JobEvent(_message.Message):
    __slots__ = ("api_version", "job_id", "shard_index", "client_id", "source_node_id", "target_node_id", "event_name", "spec", "job_execution_plan", "deal", "status", "verification_proposal", "verification_result", "published_result", "event_time", "sender_public_key", "run_output")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    JOB_EXECUTION_PLAN_FIELD_NUMBER: _ClassVar[int]
    DEAL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_RESULT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_RESULT_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    SENDER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    RUN_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    job_id: str
    shard_index: int
    client_id: str
    source_node_id: str
    target_node_id: str
    event_name: JobEventType
    spec: _spec_pb2.Spec
    job_execution_plan: _spec_pb2.JobExecutionPlan
    deal: _spec_pb2.Deal
    status: str
    verification_proposal: bytes
    verification_result: _verifier_pb2.VerificationResult
    published_result: _storage_pb2.StorageSpec
    event_time: _timestamp_pb2.Timestamp
    sender_public_key: bytes
    run_output: _command_pb2.RunCommandResult
    def __init__(self, api_version: _Optional[str] = ..., job_id: _Optional[str] = ..., shard_index: _Optional[int] = ..., client_id: _Optional[str] = ..., source_node_id: _Optional[str] = ..., target_node_id: _Optional[str] = ..., event_name: _Optional[_Union[JobEventType, str]] = ..., spec: _Optional[_Union[_spec_pb2.Spec, _Mapping]] = ..., job_execution_plan: _Optional[_Union[_spec_pb2.JobExecutionPlan, _Mapping]] = ..., deal: _Optional[_Union[_spec_pb2.Deal, _Mapping]] = ..., status: _Optional[str] = ..., verification_proposal: _Optional[bytes] = ..., verification_result: _Optional[_Union[_verifier_pb2.VerificationResult, _Mapping]] = ..., published_result: _Optional[_Union[_storage_pb2.StorageSpec, _Mapping]] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sender_public_key: _Optional[bytes] = ..., run_output: _Optional[_Union[_command_pb2.RunCommandResult, _Mapping]] = ...) -> None: ...

class JobLocalEvent(_message.Message):
    __slots__ = ("event_name", "job_id", "shard_index", "target_node_id")
    EVENT_NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    TARGET_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    event_name: JobLocalEventType
    job_id: str
    shard_index: int
    target_node_id: str
    def __init__(self, event_name: _Optional[_Union[JobLocalEventType, str]] = ..., job_id: _Optional[str] = ..., shard_index: _Optional[int] = ..., target_node_id: _Optional[str] = ...) -> None: ...
