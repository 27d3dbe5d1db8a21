"""The library every service shares: model helpers, errors, the gRPC server factory and channels,
telemetry and logging."""
