from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StorageSourceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORAGE_SOURCE_TYPE_UNSPECIFIED: _ClassVar[StorageSourceType]
    STORAGE_SOURCE_TYPE_IPFS: _ClassVar[StorageSourceType]
    STORAGE_SOURCE_TYPE_URL_DOWNLOAD: _ClassVar[StorageSourceType]
    STORAGE_SOURCE_TYPE_FILECOIN_UNSEALED: _ClassVar[StorageSourceType]
    STORAGE_SOURCE_TYPE_FILECOIN: _ClassVar[StorageSourceType]
    STORAGE_SOURCE_TYPE_ESTUARY: _ClassVar[StorageSourceType]
STORAGE_SOURCE_TYPE_UNSPECIFIED: StorageSourceType
STORAGE_SOURCE_TYPE_IPFS: StorageSourceType
STORAGE_SOURCE_TYPE_URL_DOWNLOAD: StorageSourceType
STORAGE_SOURCE_TYPE_FILECOIN_UNSEALED: StorageSourceType
STORAGE_SOURCE_TYPE_FILECOIN: StorageSourceType
STORAGE_SOURCE_TYPE_ESTUARY: StorageSourceType

class StorageSpec(_message.Message):
    __slots__ = ("storage_source", "name", "cid", "url", "path", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STORAGE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    storage_source: StorageSourceType
    name: str
    cid: str
    url: str
    path: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, storage_source: _Optional[_Union[StorageSourceType, str]] = ..., name: _Optional[str] = ..., cid: _Optional[str] = ..., url: _Optional[str] = ..., path: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PublishedResult(_message.Message):
    __slots__ = ("node_id", "shard_index", "data")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    shard_index: int
    data: StorageSpec
    def __init__(self, node_id: _Optional[str] = ..., shard_index: _Optional[int] = ..., data: _Optional[_Union[StorageSpec, _Mapping]] = ...) -> None: ...
