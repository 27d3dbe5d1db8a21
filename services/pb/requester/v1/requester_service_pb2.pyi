import datetime

from bacalhau_grpc.pb.batch.v1 import outcome_pb2 as _outcome_pb2
from bacalhau_grpc.pb.model.v1beta1 import build_version_pb2 as _build_version_pb2
from bacalhau_grpc.pb.model.v1beta1 import command_pb2 as _command_pb2
from bacalhau_grpc.pb.model.v1beta1 import job_pb2 as _job_pb2
from bacalhau_grpc.pb.model.v1beta1 import job_event_pb2 as _job_event_pb2
from bacalhau_grpc.pb.model.v1beta1 import job_state_pb2 as _job_state_pb2
from bacalhau_grpc.pb.model.v1beta1 import node_info_pb2 as _node_info_pb2
from bacalhau_grpc.pb.model.v1beta1 import resource_usage_pb2 as _resource_usage_pb2
from bacalhau_grpc.pb.model.v1beta1 import storage_pb2 as _storage_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobSortBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_SORT_BY_UNSPECIFIED: _ClassVar[JobSortBy]
    JOB_SORT_BY_ID: _ClassVar[JobSortBy]
    JOB_SORT_BY_CREATED_AT: _ClassVar[JobSortBy]

class NodeRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_ROLE_UNSPECIFIED: _ClassVar[NodeRole]
    NODE_ROLE_COMPUTE: _ClassVar[NodeRole]

class NodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATE_UNSPECIFIED: _ClassVar[NodeState]
    NODE_STATE_LIVE: _ClassVar[NodeState]
    NODE_STATE_LOST: _ClassVar[NodeState]
JOB_SORT_BY_UNSPECIFIED: JobSortBy
JOB_SORT_BY_ID: JobSortBy
JOB_SORT_BY_CREATED_AT: JobSortBy
NODE_ROLE_UNSPECIFIED: NodeRole
NODE_ROLE_COMPUTE: NodeRole
NODE_STATE_UNSPECIFIED: NodeState
NODE_STATE_LIVE: NodeState
NODE_STATE_LOST: NodeState

class Node(_message.Message):
    __slots__ = ("info", "role", "state", "available_capacity", "running_executions", "queued_executions", "last_heartbeat")
    INFO_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    info: _node_info_pb2.NodeInfo
    role: NodeRole
    state: NodeState
    available_capacity: _resource_usage_pb2.ResourceUsageData
    running_executions: int
    queued_executions: int
    last_heartbeat: _timestamp_pb2.Timestamp
    def __init__(self, info: _Optional[_Union[_node_info_pb2.NodeInfo, _Mapping]] = ..., role: _Optional[_Union[NodeRole, str]] = ..., state: _Optional[_Union[NodeState, str]] = ..., available_capacity: _Optional[_Union[_resource_usage_pb2.ResourceUsageData, _Mapping]] = ..., running_executions: _Optional[int] = ..., queued_executions: _Optional[int] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("payload", "signed_payload", "signature", "client_public_key")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNED_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    payload: _job_pb2.JobCreatePayload
    signed_payload: bytes
    signature: bytes
    client_public_key: bytes
    def __init__(self, payload: _Optional[_Union[_job_pb2.JobCreatePayload, _Mapping]] = ..., signed_payload: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., client_public_key: _Optional[bytes] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id", "exclude_events", "exclude_shard_states")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_EVENTS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_SHARD_STATES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    exclude_events: bool
    exclude_shard_states: bool
    def __init__(self, job_id: _Optional[str] = ..., exclude_events: _Optional[bool] = ..., exclude_shard_states: _Optional[bool] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.JobWithInfo
    def __init__(self, job: _Optional[_Union[_job_pb2.JobWithInfo, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("client_id", "id_prefix", "include_tags", "exclude_tags", "sort_by", "sort_reverse", "page_size", "page_token", "states")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    ID_PREFIX_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TAGS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_TAGS_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    SORT_REVERSE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    id_prefix: str
    include_tags: _containers.RepeatedScalarFieldContainer[str]
    exclude_tags: _containers.RepeatedScalarFieldContainer[str]
    sort_by: JobSortBy
    sort_reverse: bool
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[_job_state_pb2.JobStateType]
    def __init__(self, client_id: _Optional[str] = ..., id_prefix: _Optional[str] = ..., include_tags: _Optional[_Iterable[str]] = ..., exclude_tags: _Optional[_Iterable[str]] = ..., sort_by: _Optional[_Union[JobSortBy, str]] = ..., sort_reverse: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_job_state_pb2.JobStateType, str]]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_job_pb2.Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[_job_pb2.Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListJobEventsRequest(_message.Message):
    __slots__ = ("job_id", "page_size", "page_token")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    page_size: int
    page_token: str
    def __init__(self, job_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_job_event_pb2.JobEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[_job_event_pb2.JobEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListJobShardsRequest(_message.Message):
    __slots__ = ("job_id", "page_size", "page_token")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    page_size: int
    page_token: str
    def __init__(self, job_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobShardsResponse(_message.Message):
    __slots__ = ("shards", "next_page_token")
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    shards: _containers.RepeatedCompositeFieldContainer[_job_state_pb2.JobShardState]
    next_page_token: str
    def __init__(self, shards: _Optional[_Iterable[_Union[_job_state_pb2.JobShardState, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchJobEventsRequest(_message.Message):
    __slots__ = ("job_id", "after_sequence")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_sequence: int
    def __init__(self, job_id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class WatchJobEventsResponse(_message.Message):
    __slots__ = ("event", "sequence")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    event: _job_event_pb2.JobEvent
    sequence: int
    def __init__(self, event: _Optional[_Union[_job_event_pb2.JobEvent, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id", "client_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    client_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., client_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class GetJobResultsRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResultsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[_storage_pb2.PublishedResult]
    def __init__(self, results: _Optional[_Iterable[_Union[_storage_pb2.PublishedResult, _Mapping]]] = ...) -> None: ...

class StreamJobLogsRequest(_message.Message):
    __slots__ = ("job_id", "shard_index", "node_id", "follow")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    shard_index: int
    node_id: str
    follow: bool
    def __init__(self, job_id: _Optional[str] = ..., shard_index: _Optional[int] = ..., node_id: _Optional[str] = ..., follow: _Optional[bool] = ...) -> None: ...

class StreamJobLogsResponse(_message.Message):
    __slots__ = ("execution_id", "node_id", "shard_index", "stderr", "data")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    node_id: str
    shard_index: int
    stderr: bool
    data: bytes
    def __init__(self, execution_id: _Optional[str] = ..., node_id: _Optional[str] = ..., shard_index: _Optional[int] = ..., stderr: _Optional[bool] = ..., data: _Optional[bytes] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: _build_version_pb2.BuildVersionInfo
    def __init__(self, version: _Optional[_Union[_build_version_pb2.BuildVersionInfo, _Mapping]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes", "next_page_token")
    NODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    next_page_token: str
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class GetNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: Node
    def __init__(self, node: _Optional[_Union[Node, _Mapping]] = ...) -> None: ...

class RegisterNodeRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _node_info_pb2.NodeInfo
    def __init__(self, node: _Optional[_Union[_node_info_pb2.NodeInfo, _Mapping]] = ...) -> None: ...

class RegisterNodeResponse(_message.Message):
    __slots__ = ("requester_node_id", "heartbeat_interval")
    REQUESTER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    requester_node_id: str
    heartbeat_interval: _duration_pb2.Duration
    def __init__(self, requester_node_id: _Optional[str] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node_id", "available_capacity", "running_executions", "queued_executions")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    available_capacity: _resource_usage_pb2.ResourceUsageData
    running_executions: int
    queued_executions: int
    def __init__(self, node_id: _Optional[str] = ..., available_capacity: _Optional[_Union[_resource_usage_pb2.ResourceUsageData, _Mapping]] = ..., running_executions: _Optional[int] = ..., queued_executions: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OnRunCompleteRequest(_message.Message):
    __slots__ = ("execution_id", "job_id", "shard_index", "node_id", "verification_proposal", "run_output", "status")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    RUN_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    job_id: str
    shard_index: int
    node_id: str
    verification_proposal: bytes
    run_output: _command_pb2.RunCommandResult
    status: str
    def __init__(self, execution_id: _Optional[str] = ..., job_id: _Optional[str] = ..., shard_index: _Optional[int] = ..., node_id: _Optional[str] = ..., verification_proposal: _Optional[bytes] = ..., run_output: _Optional[_Union[_command_pb2.RunCommandResult, _Mapping]] = ..., status: _Optional[str] = ...) -> None: ...

class OnRunCompleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OnPublishCompleteRequest(_message.Message):
    __slots__ = ("execution_id", "job_id", "shard_index", "node_id", "published_result", "status")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_RESULT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    job_id: str
    shard_index: int
    node_id: str
    published_result: _storage_pb2.StorageSpec
    status: str
    def __init__(self, execution_id: _Optional[str] = ..., job_id: _Optional[str] = ..., shard_index: _Optional[int] = ..., node_id: _Optional[str] = ..., published_result: _Optional[_Union[_storage_pb2.StorageSpec, _Mapping]] = ..., status: _Optional[str] = ...) -> None: ...

class OnPublishCompleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OnComputeFailureRequest(_message.Message):
    __slots__ = ("execution_id", "job_id", "shard_index", "node_id", "error")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    job_id: str
    shard_index: int
    node_id: str
    error: str
    def __init__(self, execution_id: _Optional[str] = ..., job_id: _Optional[str] = ..., shard_index: _Optional[int] = ..., node_id: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class OnComputeFailureResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OnCancelCompleteRequest(_message.Message):
    __slots__ = ("execution_id", "job_id", "shard_index", "node_id")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    job_id: str
    shard_index: int
    node_id: str
    def __init__(self, execution_id: _Optional[str] = ..., job_id: _Optional[str] = ..., shard_index: _Optional[int] = ..., node_id: _Optional[str] = ...) -> None: ...

class OnCancelCompleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExecutionReport(_message.Message):
    __slots__ = ("run_complete", "publish_complete", "compute_failure", "cancel_complete")
    RUN_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_FAILURE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    run_complete: OnRunCompleteRequest
    publish_complete: OnPublishCompleteRequest
    compute_failure: OnComputeFailureRequest
    cancel_complete: OnCancelCompleteRequest
    def __init__(self, run_complete: _Optional[_Union[OnRunCompleteRequest, _Mapping]] = ..., publish_complete: _Optional[_Union[OnPublishCompleteRequest, _Mapping]] = ..., compute_failure: _Optional[_Union[OnComputeFailureRequest, _Mapping]] = ..., cancel_complete: _Optional[_Union[OnCancelCompleteRequest, _Mapping]] = ...) -> None: ...

class ReportExecutionsRequest(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[ExecutionReport]
    def __init__(self, reports: _Optional[_Iterable[_Union[ExecutionReport, _Mapping]]] = ...) -> None: ...

class ReportExecutionsResponse(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[_outcome_pb2.Outcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[_outcome_pb2.Outcome, _Mapping]]] = ...) -> None: ...
