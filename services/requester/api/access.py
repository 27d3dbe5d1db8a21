"""Who may call the requester's services over TLS (`common.authz`), checked before any method runs."""

from collections.abc import Iterable
from typing import Any

from bacalhau_grpc.common.authz import Policy

_REPORTS = ("run_complete", "publish_complete", "compute_failure", "cancel_complete")


def node_ids_claimed(method: str, request: Any) -> Iterable[str]:
    """The nodes a node-protocol request speaks for: the registering node, the heartbeating one, or the
    reporting one of each report."""
    if method == "RegisterNode":
        return [request.node.node_id]
    if method == "ReportExecutions":
        return [
            getattr(report, report.WhichOneof("report")).node_id
            for report in request.reports
            if report.WhichOneof("report")
        ]
    return [request.node_id]


# RequesterNodeService: compute certificates only, each node only as itself.
NODE_POLICY = Policy(roles=frozenset({"compute"}), speaks_for=node_ids_claimed)
# The client API on the node port: operators' client certificates.
OPERATOR_POLICY = Policy(roles=frozenset({"client"}))
# Content on the node port: compute nodes fetch contexts and inputs; operators download.
NODE_CONTENT_POLICY = Policy(roles=frozenset({"compute", "client"}))
