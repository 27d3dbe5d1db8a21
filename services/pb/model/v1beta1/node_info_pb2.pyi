from bacalhau_grpc.pb.model.v1beta1 import engine_pb2 as _engine_pb2
from bacalhau_grpc.pb.model.v1beta1 import publisher_pb2 as _publisher_pb2
from bacalhau_grpc.pb.model.v1beta1 import resource_usage_pb2 as _resource_usage_pb2
from bacalhau_grpc.pb.model.v1beta1 import verifier_pb2 as _verifier_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "address", "engines", "verifiers", "publishers", "total_capacity", "max_job_capacity", "version")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ENGINES_FIELD_NUMBER: _ClassVar[int]
    VERIFIERS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHERS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    MAX_JOB_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    engines: _containers.RepeatedScalarFieldContainer[_engine_pb2.Engine]
    verifiers: _containers.RepeatedScalarFieldContainer[_verifier_pb2.Verifier]
    publishers: _containers.RepeatedScalarFieldContainer[_publisher_pb2.Publisher]
    total_capacity: _resource_usage_pb2.ResourceUsageData
    max_job_capacity: _resource_usage_pb2.ResourceUsageData
    version: str
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., engines: _Optional[_Iterable[_Union[_engine_pb2.Engine, str]]] = ..., verifiers: _Optional[_Iterable[_Union[_verifier_pb2.Verifier, str]]] = ..., publishers: _Optional[_Iterable[_Union[_publisher_pb2.Publisher, str]]] = ..., total_capacity: _Optional[_Union[_resource_usage_pb2.ResourceUsageData, _Mapping]] = ..., max_job_capacity: _Optional[_Union[_resource_usage_pb2.ResourceUsageData, _Mapping]] = ..., version: _Optional[str] = ...) -> None: ...
