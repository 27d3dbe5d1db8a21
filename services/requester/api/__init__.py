"""The requester's gRPC servicer."""
