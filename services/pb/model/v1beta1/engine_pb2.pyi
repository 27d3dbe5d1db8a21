from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class Engine(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENGINE_UNSPECIFIED: _ClassVar[Engine]
    ENGINE_NOOP: _ClassVar[Engine]
    ENGINE_DOCKER: _ClassVar[Engine]
    ENGINE_WASM: _ClassVar[Engine]
    ENGINE_LANGUAGE: _ClassVar[Engine]
    ENGINE_PYTHON_WASM: _ClassVar[Engine]
ENGINE_UNSPECIFIED: Engine
ENGINE_NOOP: Engine
ENGINE_DOCKER: Engine
ENGINE_WASM: Engine
ENGINE_LANGUAGE: Engine
ENGINE_PYTHON_WASM: Engine
