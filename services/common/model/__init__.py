"""The Bacalhau model (pkg/model) in Python: Go's helpers over the generated protobuf messages."""
