"""The public Python client over grpc.aio and the betterproto2 types (issue 7)."""
