"""The requester's SQLite store: jobs, events, shard rows, shard state machines and nodes."""
