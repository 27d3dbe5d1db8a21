"""The web dashboard (`bacalhau-grpc dashboard`): the network, its jobs and their shards at a glance, read
from the requester through the SDK. See `bacalhau_grpc.dashboard.server`."""
