"""The bacalhau-grpc command line (issue 7)."""
