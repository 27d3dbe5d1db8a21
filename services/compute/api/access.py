"""Who may call a compute node over TLS (`common.authz`), checked before any method runs: asks, accepts,
rejections, cancels and logs only the requester; what the node is (GetNodeInfo) any node of the cluster
or an operator; content the requester and other compute nodes."""

from bacalhau_grpc.common.authz import Policy

ANY_NODE_OR_OPERATOR = frozenset({"requester", "compute", "verifier", "client"})
COMPUTE_POLICY = Policy(roles=frozenset({"requester"}), method_roles={"GetNodeInfo": ANY_NODE_OR_OPERATOR})
CONTENT_POLICY = Policy(roles=frozenset({"requester", "compute"}))
