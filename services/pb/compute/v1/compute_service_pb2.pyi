from bacalhau_grpc.pb.batch.v1 import outcome_pb2 as _outcome_pb2
from bacalhau_grpc.pb.model.v1beta1 import build_version_pb2 as _build_version_pb2
from bacalhau_grpc.pb.model.v1beta1 import job_pb2 as _job_pb2
from bacalhau_grpc.pb.model.v1beta1 import node_info_pb2 as _node_info_pb2
from bacalhau_grpc.pb.model.v1beta1 import resource_usage_pb2 as _resource_usage_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AskForBidRequest(_message.Message):
    __slots__ = ("job", "shard_index")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    shard_index: int
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ..., shard_index: _Optional[int] = ...) -> None: ...

class AskForBidResponse(_message.Message):
    __slots__ = ("accepted", "execution_id", "reason", "node_id", "busy")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    execution_id: str
    reason: str
    node_id: str
    busy: bool
    def __init__(self, accepted: _Optional[bool] = ..., execution_id: _Optional[str] = ..., reason: _Optional[str] = ..., node_id: _Optional[str] = ..., busy: _Optional[bool] = ...) -> None: ...

class AskForBidsRequest(_message.Message):
    __slots__ = ("asks",)
    ASKS_FIELD_NUMBER: _ClassVar[int]
    asks: _containers.RepeatedCompositeFieldContainer[AskForBidRequest]
    def __init__(self, asks: _Optional[_Iterable[_Union[AskForBidRequest, _Mapping]]] = ...) -> None: ...

class AskForBidsResponse(_message.Message):
    __slots__ = ("answers", "outcomes")
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    answers: _containers.RepeatedCompositeFieldContainer[AskForBidResponse]
    outcomes: _containers.RepeatedCompositeFieldContainer[_outcome_pb2.Outcome]
    def __init__(self, answers: _Optional[_Iterable[_Union[AskForBidResponse, _Mapping]]] = ..., outcomes: _Optional[_Iterable[_Union[_outcome_pb2.Outcome, _Mapping]]] = ...) -> None: ...

class ExecutionUpdate(_message.Message):
    __slots__ = ("bid_accepted", "bid_rejected", "result_accepted", "result_rejected", "cancel_execution")
    BID_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    BID_REJECTED_FIELD_NUMBER: _ClassVar[int]
    RESULT_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    RESULT_REJECTED_FIELD_NUMBER: _ClassVar[int]
    CANCEL_EXECUTION_FIELD_NUMBER: _ClassVar[int]
    bid_accepted: BidAcceptedRequest
    bid_rejected: BidRejectedRequest
    result_accepted: ResultAcceptedRequest
    result_rejected: ResultRejectedRequest
    cancel_execution: CancelExecutionRequest
    def __init__(self, bid_accepted: _Optional[_Union[BidAcceptedRequest, _Mapping]] = ..., bid_rejected: _Optional[_Union[BidRejectedRequest, _Mapping]] = ..., result_accepted: _Optional[_Union[ResultAcceptedRequest, _Mapping]] = ..., result_rejected: _Optional[_Union[ResultRejectedRequest, _Mapping]] = ..., cancel_execution: _Optional[_Union[CancelExecutionRequest, _Mapping]] = ...) -> None: ...

class UpdateExecutionsRequest(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[ExecutionUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[ExecutionUpdate, _Mapping]]] = ...) -> None: ...

class UpdateExecutionsResponse(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[_outcome_pb2.Outcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[_outcome_pb2.Outcome, _Mapping]]] = ...) -> None: ...

class BidAcceptedRequest(_message.Message):
    __slots__ = ("execution_id",)
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    def __init__(self, execution_id: _Optional[str] = ...) -> None: ...

class BidAcceptedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BidRejectedRequest(_message.Message):
    __slots__ = ("execution_id", "reason")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    reason: str
    def __init__(self, execution_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class BidRejectedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResultAcceptedRequest(_message.Message):
    __slots__ = ("execution_id",)
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    def __init__(self, execution_id: _Optional[str] = ...) -> None: ...

class ResultAcceptedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResultRejectedRequest(_message.Message):
    __slots__ = ("execution_id", "reason")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    reason: str
    def __init__(self, execution_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResultRejectedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CancelExecutionRequest(_message.Message):
    __slots__ = ("execution_id", "reason")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    reason: str
    def __init__(self, execution_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelExecutionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamExecutionLogsRequest(_message.Message):
    __slots__ = ("execution_id", "follow")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    follow: bool
    def __init__(self, execution_id: _Optional[str] = ..., follow: _Optional[bool] = ...) -> None: ...

class StreamExecutionLogsResponse(_message.Message):
    __slots__ = ("stderr", "data")
    STDERR_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    stderr: bool
    data: bytes
    def __init__(self, stderr: _Optional[bool] = ..., data: _Optional[bytes] = ...) -> None: ...

class GetNodeInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetNodeInfoResponse(_message.Message):
    __slots__ = ("node", "available_capacity", "active_executions", "debug_info")
    NODE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    DEBUG_INFO_FIELD_NUMBER: _ClassVar[int]
    node: _node_info_pb2.NodeInfo
    available_capacity: _resource_usage_pb2.ResourceUsageData
    active_executions: int
    debug_info: _containers.RepeatedCompositeFieldContainer[_build_version_pb2.DebugInfo]
    def __init__(self, node: _Optional[_Union[_node_info_pb2.NodeInfo, _Mapping]] = ..., available_capacity: _Optional[_Union[_resource_usage_pb2.ResourceUsageData, _Mapping]] = ..., active_executions: _Optional[int] = ..., debug_info: _Optional[_Iterable[_Union[_build_version_pb2.DebugInfo, _Mapping]]] = ...) -> None: ...
