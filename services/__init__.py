"""Bacalhau-gRPC: Bacalhau v0.3's compute-over-data network as gRPC microservices."""
