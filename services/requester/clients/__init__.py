"""Outbound gRPC clients: compute nodes and the verifier (the domain's ports over gRPC)."""
