"""gRPC server reflection under both `grpc.reflection.v1` and `grpc.reflection.v1alpha`.

grpcio-reflection ships only v1alpha (what grpcurl 1.8 speaks); newer clients (grpcurl >= 1.8.8,
grpcui, Postman, ...) ask for v1 first. The two protocols are the same messages under another package,
so the v1 classes are built at runtime from v1alpha's descriptor and one servicer class answers both.

Compared with grpcio-reflection's servicer, this one also
- finds the file of a method or enum value (`grpcurl describe pkg.Service.Method`): a failed symbol lookup
  is retried with the last dotted component stripped before answering NOT_FOUND;
- serves `google/protobuf/*.proto` by file name even when no loaded module imported it yet;
- serves the v1 reflection file itself, and caches serialized files (descriptors are immutable).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc as v1alpha_pb2_grpc

V1ALPHA_SERVICE = "grpc.reflection.v1alpha.ServerReflection"
V1_SERVICE = "grpc.reflection.v1.ServerReflection"
V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
METHOD = "ServerReflectionInfo"
SERVICE_NAMES = (V1_SERVICE, V1ALPHA_SERVICE)
_WELL_KNOWN_FILE = re.compile(r"google/protobuf/([a-z_]+(?:/[a-z_]+)*)\.proto")


@dataclass(frozen=True)
class ReflectionMessages:
    """The message classes of one version of the reflection protocol."""

    ServerReflectionRequest: Any
    ServerReflectionResponse: Any
    FileDescriptorResponse: Any
    ExtensionNumberResponse: Any
    ListServiceResponse: Any
    ServiceResponse: Any
    ErrorResponse: Any


def _messages_of(lookup: Any) -> ReflectionMessages:
    return ReflectionMessages(**{name: lookup(name) for name in ReflectionMessages.__dataclass_fields__})


V1ALPHA = _messages_of(lambda name: getattr(v1alpha_pb2, name))


def _rename_types(message: descriptor_pb2.DescriptorProto, old: str, new: str) -> None:
    for field in message.field:
        if field.type_name.startswith(old):
            field.type_name = new + field.type_name[len(old) :]
    for nested in message.nested_type:
        _rename_types(nested, old, new)


@cache
def _v1_pool() -> descriptor_pool.DescriptorPool:
    """A private pool holding `grpc/reflection/v1/reflection.proto`, made from v1alpha's file."""
    proto = descriptor_pb2.FileDescriptorProto()
    v1alpha_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = f".{proto.package}.", f".{V1_PACKAGE}."
    proto.name = V1_FILE
    proto.package = V1_PACKAGE
    proto.options.Clear()
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.java_outer_classname = "ServerReflectionProto"
    proto.options.java_multiple_files = True
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    for message in proto.message_type:
        _rename_types(message, old, new)
    for service in proto.service:
        for method in service.method:
            method.input_type = new + method.input_type[len(old) :]
            method.output_type = new + method.output_type[len(old) :]
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return pool


@cache
def v1_messages() -> ReflectionMessages:
    """The `grpc.reflection.v1` message classes (wire-identical to v1alpha's)."""
    pool = _v1_pool()
    return _messages_of(
        lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{V1_PACKAGE}.{name}"))
    )


# ------------------------------------------------------------------------------------------ lookups


class _Files:
    """Finds files and symbols in the default pool (every loaded `_pb2`), then in the v1 pool."""

    def __init__(self) -> None:
        self._pools = (descriptor_pool.Default(), _v1_pool())
        self._serialized: dict[str, bytes] = {}

    def by_name(self, filename: str) -> FileDescriptor | None:
        found = self._first(lambda pool: pool.FindFileByName(filename))
        well_known = _WELL_KNOWN_FILE.fullmatch(filename)
        if found is None and well_known:
            # A well-known type no loaded module needed yet: its module is part of protobuf itself.
            try:
                importlib.import_module(f"google.protobuf.{well_known[1].replace('/', '.')}_pb2")
            except ImportError:
                return None
            found = self._first(lambda pool: pool.FindFileByName(filename))
        return found

    def containing_symbol(self, symbol: str) -> FileDescriptor | None:
        found = self._first(lambda pool: pool.FindFileContainingSymbol(symbol))
        if found is None and "." in symbol:
            # A method (pkg.Service.Method) or a nested enum value: the file of its parent.
            parent = symbol.rpartition(".")[0]
            found = self._first(lambda pool: pool.FindFileContainingSymbol(parent))
        return found

    def containing_extension(self, containing_type: str, number: int) -> FileDescriptor | None:
        for pool in self._pools:
            try:
                message = pool.FindMessageTypeByName(containing_type)
                extension = pool.FindExtensionByNumber(message, number)
                return pool.FindFileContainingSymbol(extension.full_name)
            except KeyError:
                continue
        return None

    def extension_numbers(self, containing_type: str) -> tuple[str, list[int]] | None:
        for pool in self._pools:
            try:
                message = pool.FindMessageTypeByName(containing_type)
            except KeyError:
                continue
            return message.full_name, sorted(ext.number for ext in pool.FindAllExtensions(message))
        return None

    def serialized_with_dependencies(self, file: FileDescriptor) -> list[bytes]:
        """The file first, then every file it depends on (transitively), each once."""
        seen: dict[str, FileDescriptor] = {}
        stack = [file]
        while stack:
            current = stack.pop()
            if current.name in seen:
                continue
            seen[current.name] = current
            stack.extend(dep for dep in reversed(current.dependencies) if dep.name not in seen)
        return [self._serialize(f) for f in seen.values()]

    def _serialize(self, file: FileDescriptor) -> bytes:
        data = self._serialized.get(file.name)
        if data is None:
            proto = descriptor_pb2.FileDescriptorProto()
            file.CopyToProto(proto)
            data = self._serialized[file.name] = proto.SerializeToString()
        return data

    def _first(self, find: Any) -> Any:
        for pool in self._pools:
            try:
                return find(pool)
            except KeyError:
                continue
        return None


# ------------------------------------------------------------------------------------------ servicer


class ReflectionServicer:
    """Answers `ServerReflectionInfo` streams for one protocol version (its message classes)."""

    def __init__(self, service_names: Iterable[str], messages: ReflectionMessages, files: _Files) -> None:
        self._messages = messages
        self._files = files
        self._service_names = tuple(sorted(set(service_names)))

    async def ServerReflectionInfo(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        async for request in request_iterator:
            yield self.answer(request)

    def answer(self, request: Any) -> Any:
        m = self._messages
        kind = request.WhichOneof("message_request")
        if kind == "file_by_filename":
            return self._files_response(request, self._files.by_name(request.file_by_filename))
        if kind == "file_containing_symbol":
            return self._files_response(
                request, self._files.containing_symbol(request.file_containing_symbol)
            )
        if kind == "file_containing_extension":
            ext = request.file_containing_extension
            return self._files_response(
                request, self._files.containing_extension(ext.containing_type, ext.extension_number)
            )
        if kind == "all_extension_numbers_of_type":
            found = self._files.extension_numbers(request.all_extension_numbers_of_type)
            if found is None:
                return self._error(request, grpc.StatusCode.NOT_FOUND)
            base, numbers = found
            return m.ServerReflectionResponse(
                valid_host=request.host,
                original_request=request,
                all_extension_numbers_response=m.ExtensionNumberResponse(
                    base_type_name=base, extension_number=numbers
                ),
            )
        if kind == "list_services":
            return m.ServerReflectionResponse(
                valid_host=request.host,
                original_request=request,
                list_services_response=m.ListServiceResponse(
                    service=[m.ServiceResponse(name=name) for name in self._service_names]
                ),
            )
        return self._error(request, grpc.StatusCode.INVALID_ARGUMENT)

    def _files_response(self, request: Any, file: FileDescriptor | None) -> Any:
        if file is None:
            return self._error(request, grpc.StatusCode.NOT_FOUND)
        m = self._messages
        return m.ServerReflectionResponse(
            valid_host=request.host,
            original_request=request,
            file_descriptor_response=m.FileDescriptorResponse(
                file_descriptor_proto=self._files.serialized_with_dependencies(file)
            ),
        )

    def _error(self, request: Any, code: grpc.StatusCode) -> Any:
        m = self._messages
        return m.ServerReflectionResponse(
            valid_host=request.host,
            original_request=request,
            error_response=m.ErrorResponse(error_code=code.value[0], error_message=code.value[1]),
        )


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> tuple[str, ...]:
    """Serves reflection v1 and v1alpha on `server`, listing `service_names` plus both reflection services.

    Returns the names listed.
    """
    names = tuple(sorted({*service_names, *SERVICE_NAMES}))
    files = _Files()
    v1alpha_pb2_grpc.add_ServerReflectionServicer_to_server(ReflectionServicer(names, V1ALPHA, files), server)

    v1 = v1_messages()
    v1_servicer = ReflectionServicer(names, v1, files)
    handlers = {
        METHOD: grpc.stream_stream_rpc_method_handler(
            v1_servicer.ServerReflectionInfo,
            request_deserializer=v1.ServerReflectionRequest.FromString,
            response_serializer=v1.ServerReflectionResponse.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1_SERVICE, handlers),))
    server.add_registered_method_handlers(V1_SERVICE, handlers)
    return names
