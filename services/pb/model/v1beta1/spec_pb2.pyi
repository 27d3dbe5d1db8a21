from bacalhau_grpc.pb.model.v1beta1 import engine_pb2 as _engine_pb2
from bacalhau_grpc.pb.model.v1beta1 import publisher_pb2 as _publisher_pb2
from bacalhau_grpc.pb.model.v1beta1 import resource_usage_pb2 as _resource_usage_pb2
from bacalhau_grpc.pb.model.v1beta1 import storage_pb2 as _storage_pb2
from bacalhau_grpc.pb.model.v1beta1 import verifier_pb2 as _verifier_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Spec(_message.Message):
    __slots__ = ("engine", "verifier", "publisher", "docker", "language", "wasm", "resources", "timeout", "inputs", "contexts", "outputs", "annotations", "sharding", "do_not_track")
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    VERIFIER_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    DOCKER_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    WASM_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    CONTEXTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    SHARDING_FIELD_NUMBER: _ClassVar[int]
    DO_NOT_TRACK_FIELD_NUMBER: _ClassVar[int]
    engine: _engine_pb2.Engine
    verifier: _verifier_pb2.Verifier
    publisher: _publisher_pb2.Publisher
    docker: JobSpecDocker
    language: JobSpecLanguage
    wasm: JobSpecWasm
    resources: _resource_usage_pb2.ResourceUsageConfig
    timeout: float
    inputs: _containers.RepeatedCompositeFieldContainer[_storage_pb2.StorageSpec]
    contexts: _containers.RepeatedCompositeFieldContainer[_storage_pb2.StorageSpec]
    outputs: _containers.RepeatedCompositeFieldContainer[_storage_pb2.StorageSpec]
    annotations: _containers.RepeatedScalarFieldContainer[str]
    sharding: JobShardingConfig
    do_not_track: bool
    def __init__(self, engine: _Optional[_Union[_engine_pb2.Engine, str]] = ..., verifier: _Optional[_Union[_verifier_pb2.Verifier, str]] = ..., publisher: _Optional[_Union[_publisher_pb2.Publisher, str]] = ..., docker: _Optional[_Union[JobSpecDocker, _Mapping]] = ..., language: _Optional[_Union[JobSpecLanguage, _Mapping]] = ..., wasm: _Optional[_Union[JobSpecWasm, _Mapping]] = ..., resources: _Optional[_Union[_resource_usage_pb2.ResourceUsageConfig, _Mapping]] = ..., timeout: _Optional[float] = ..., inputs: _Optional[_Iterable[_Union[_storage_pb2.StorageSpec, _Mapping]]] = ..., contexts: _Optional[_Iterable[_Union[_storage_pb2.StorageSpec, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[_storage_pb2.StorageSpec, _Mapping]]] = ..., annotations: _Optional[_Iterable[str]] = ..., sharding: _Optional[_Union[JobShardingConfig, _Mapping]] = ..., do_not_track: _Optional[bool] = ...) -> None: ...

class JobSpecDocker(_message.Message):
    __slots__ = ("image", "entrypoint", "environment_variables", "working_directory")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    image: str
    entrypoint: _containers.RepeatedScalarFieldContainer[str]
    environment_variables: _containers.RepeatedScalarFieldContainer[str]
    working_directory: str
    def __init__(self, image: _Optional[str] = ..., entrypoint: _Optional[_Iterable[str]] = ..., environment_variables: _Optional[_Iterable[str]] = ..., working_directory: _Optional[str] = ...) -> None: ...

class JobSpecLanguage(_message.Message):
    __slots__ = ("language", "language_version", "deterministic", "context", "command", "program_path", "requirements_path")
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_VERSION_FIELD_NUMBER: _ClassVar[int]
    DETERMINISTIC_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_PATH_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_PATH_FIELD_NUMBER: _ClassVar[int]
    language: str
    language_version: str
    deterministic: bool
    context: _storage_pb2.StorageSpec
    command: str
    program_path: str
    requirements_path: str
    def __init__(self, language: _Optional[str] = ..., language_version: _Optional[str] = ..., deterministic: _Optional[bool] = ..., context: _Optional[_Union[_storage_pb2.StorageSpec, _Mapping]] = ..., command: _Optional[str] = ..., program_path: _Optional[str] = ..., requirements_path: _Optional[str] = ...) -> None: ...

class JobSpecWasm(_message.Message):
    __slots__ = ("entry_point", "parameters", "environment_variables", "import_modules")
    class EnvironmentVariablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENTRY_POINT_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    IMPORT_MODULES_FIELD_NUMBER: _ClassVar[int]
    entry_point: str
    parameters: _containers.RepeatedScalarFieldContainer[str]
    environment_variables: _containers.ScalarMap[str, str]
    import_modules: _containers.RepeatedCompositeFieldContainer[_storage_pb2.StorageSpec]
    def __init__(self, entry_point: _Optional[str] = ..., parameters: _Optional[_Iterable[str]] = ..., environment_variables: _Optional[_Mapping[str, str]] = ..., import_modules: _Optional[_Iterable[_Union[_storage_pb2.StorageSpec, _Mapping]]] = ...) -> None: ...

class JobShardingConfig(_message.Message):
    __slots__ = ("glob_pattern", "batch_size", "base_path")
    GLOB_PATTERN_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BASE_PATH_FIELD_NUMBER: _ClassVar[int]
    glob_pattern: str
    batch_size: int
    base_path: str
    def __init__(self, glob_pattern: _Optional[str] = ..., batch_size: _Optional[int] = ..., base_path: _Optional[str] = ...) -> None: ...

class Deal(_message.Message):
    __slots__ = ("concurrency", "confidence", "min_bids")
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MIN_BIDS_FIELD_NUMBER: _ClassVar[int]
    concurrency: int
    confidence: int
    min_bids: int
    def __init__(self, concurrency: _Optional[int] = ..., confidence: _Optional[int] = ..., min_bids: _Optional[int] = ...) -> None: ...

class JobExecutionPlan(_message.Message):
    __slots__ = ("total_shards",)
    TOTAL_SHARDS_FIELD_NUMBER: _ClassVar[int]
    total_shards: int
    def __init__(self, total_shards: _Optional[int] = ...) -> None: ...
