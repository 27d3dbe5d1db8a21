from bacalhau_grpc.pb.model.v1beta1 import command_pb2 as _command_pb2
from bacalhau_grpc.pb.model.v1beta1 import job_pb2 as _job_pb2
from bacalhau_grpc.pb.model.v1beta1 import verifier_pb2 as _verifier_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecutionProposal(_message.Message):
    __slots__ = ("execution_id", "node_id", "verification_proposal", "run_output")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    RUN_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    node_id: str
    verification_proposal: bytes
    run_output: _command_pb2.RunCommandResult
    def __init__(self, execution_id: _Optional[str] = ..., node_id: _Optional[str] = ..., verification_proposal: _Optional[bytes] = ..., run_output: _Optional[_Union[_command_pb2.RunCommandResult, _Mapping]] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("execution_id", "node_id", "accepted", "reason")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    node_id: str
    accepted: bool
    reason: str
    def __init__(self, execution_id: _Optional[str] = ..., node_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("job", "shard_index", "executions")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    shard_index: int
    executions: _containers.RepeatedCompositeFieldContainer[ExecutionProposal]
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ..., shard_index: _Optional[int] = ..., executions: _Optional[_Iterable[_Union[ExecutionProposal, _Mapping]]] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("verdicts",)
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedCompositeFieldContainer[Verdict]
    def __init__(self, verdicts: _Optional[_Iterable[_Union[Verdict, _Mapping]]] = ...) -> None: ...

class VerifyShardsRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[VerifyRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[VerifyRequest, _Mapping]]] = ...) -> None: ...

class VerifyShardsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[VerifyResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[VerifyResponse, _Mapping]]] = ...) -> None: ...

class GetVerifierInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProposalFormat(_message.Message):
    __slots__ = ("verifier", "description")
    VERIFIER_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    verifier: _verifier_pb2.Verifier
    description: str
    def __init__(self, verifier: _Optional[_Union[_verifier_pb2.Verifier, str]] = ..., description: _Optional[str] = ...) -> None: ...

class GetVerifierInfoResponse(_message.Message):
    __slots__ = ("formats",)
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    formats: _containers.RepeatedCompositeFieldContainer[ProposalFormat]
    def __init__(self, formats: _Optional[_Iterable[_Union[ProposalFormat, _Mapping]]] = ...) -> None: ...
