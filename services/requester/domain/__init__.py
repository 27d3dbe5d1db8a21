"""The requester's domain: submission rules, the job state projection, the per-shard state machine and
the lifecycle service that drives them (transport-free: no gRPC here)."""
