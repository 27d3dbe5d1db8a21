from bacalhau_grpc.pb.model.v1beta1 import command_pb2 as _command_pb2
from bacalhau_grpc.pb.model.v1beta1 import storage_pb2 as _storage_pb2
from bacalhau_grpc.pb.model.v1beta1 import verifier_pb2 as _verifier_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobStateType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_TYPE_UNSPECIFIED: _ClassVar[JobStateType]
    JOB_STATE_TYPE_BIDDING: _ClassVar[JobStateType]
    JOB_STATE_TYPE_WAITING: _ClassVar[JobStateType]
    JOB_STATE_TYPE_RUNNING: _ClassVar[JobStateType]
    JOB_STATE_TYPE_VERIFYING: _ClassVar[JobStateType]
    JOB_STATE_TYPE_CANCELLED: _ClassVar[JobStateType]
    JOB_STATE_TYPE_ERROR: _ClassVar[JobStateType]
    JOB_STATE_TYPE_COMPLETED: _ClassVar[JobStateType]
JOB_STATE_TYPE_UNSPECIFIED: JobStateType
JOB_STATE_TYPE_BIDDING: JobStateType
JOB_STATE_TYPE_WAITING: JobStateType
JOB_STATE_TYPE_RUNNING: JobStateType
JOB_STATE_TYPE_VERIFYING: JobStateType
JOB_STATE_TYPE_CANCELLED: JobStateType
JOB_STATE_TYPE_ERROR: JobStateType
JOB_STATE_TYPE_COMPLETED: JobStateType

class JobState(_message.Message):
    __slots__ = ("nodes",)
    class NodesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: JobNodeState
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[JobNodeState, _Mapping]] = ...) -> None: ...
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.MessageMap[str, JobNodeState]
    def __init__(self, nodes: _Optional[_Mapping[str, JobNodeState]] = ...) -> None: ...

class JobNodeState(_message.Message):
    __slots__ = ("shards",)
    class ShardsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: JobShardState
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[JobShardState, _Mapping]] = ...) -> None: ...
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    shards: _containers.MessageMap[int, JobShardState]
    def __init__(self, shards: _Optional[_Mapping[int, JobShardState]] = ...) -> None: ...

class JobShardState(_message.Message):
    __slots__ = ("node_id", "shard_index", "state", "status", "verification_proposal", "verification_result", "published_result", "run_output")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_RESULT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_RESULT_FIELD_NUMBER: _ClassVar[int]
    RUN_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    shard_index: int
    state: JobStateType
    status: str
    verification_proposal: bytes
    verification_result: _verifier_pb2.VerificationResult
    published_result: _storage_pb2.StorageSpec
    run_output: _command_pb2.RunCommandResult
    def __init__(self, node_id: _Optional[str] = ..., shard_index: _Optional[int] = ..., state: _Optional[_Union[JobStateType, str]] = ..., status: _Optional[str] = ..., verification_proposal: _Optional[bytes] = ..., verification_result: _Optional[_Union[_verifier_pb2.VerificationResult, _Mapping]] = ..., published_result: _Optional[_Union[_storage_pb2.StorageSpec, _Mapping]] = ..., run_output: _Optional[_Union[_command_pb2.RunCommandResult, _Mapping]] = ...) -> None: ...
