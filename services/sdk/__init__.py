"""The public Python SDK of Bacalhau-gRPC: `Client` (asyncio) and `SyncClient` over a requester's gRPC API,
with Bacalhau's types as betterproto2 dataclasses (`sdk_types`). See `bacalhau_grpc.sdk.client`."""

import bacalhau_sdk.bacalhau.model.v1beta1 as sdk_types
from bacalhau_grpc.sdk.client import Client, api_address, default_address
from bacalhau_grpc.sdk.sync import SyncClient

__all__ = ["Client", "SyncClient", "api_address", "default_address", "sdk_types"]
