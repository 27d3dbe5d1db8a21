from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as _requester_service_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
