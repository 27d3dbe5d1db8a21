"""The bacalhau-grpc command line."""
