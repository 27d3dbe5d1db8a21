"""The public Python SDK of Bacalhau-gRPC: `Client` (asyncio) and `SyncClient` over a requester's gRPC API,
with Bacalhau's types as betterproto2 dataclasses (`sdk_types`). See `bacalhau_grpc.sdk.client`."""

import bacalhau_grpc.sdk.types.bacalhau.model.v1beta1 as sdk_types
from bacalhau_grpc.sdk.client import Client, JobPage, WaitTimeoutError, api_address, default_address
from bacalhau_grpc.sdk.download import DownloadTooLargeError
from bacalhau_grpc.sdk.sync import SyncClient
from bacalhau_grpc.sdk.tls import ClientTls, client_tls

__all__ = [
    "Client",
    "ClientTls",
    "DownloadTooLargeError",
    "JobPage",
    "SyncClient",
    "WaitTimeoutError",
    "api_address",
    "client_tls",
    "default_address",
    "sdk_types",
]
