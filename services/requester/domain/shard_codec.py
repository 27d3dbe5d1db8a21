"""The shard machine as plain data (JSON-ready dicts), format version `FORMAT_VERSION`.

`ShardFSM.to_dict()` / `ShardFSM.from_dict()` delegate here. The layout (keys, their order, base64 for
bytes and serialized messages) is what the store has always written, so machines stored before reload.
"""

import base64
from typing import Any

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.shard_state import Execution, ShardState
from bacalhau_grpc.requester.domain.shard_table import ExecState, Phase

FORMAT_VERSION = 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def to_dict(machine: ShardState) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "job_id": machine.job_id,
        "shard_index": machine.shard_index,
        "requester_node_id": machine.requester_node_id,
        "client_id": machine.client_id,
        "concurrency": machine.concurrency,
        "min_bids": machine.min_bids,
        "timeout": machine.timeout,
        "created_at": machine.created_at,
        "negotiation_deadline": machine.negotiation_deadline,
        "phase": str(machine.phase),
        "status": machine.status,
        "execution_deadline": machine.execution_deadline,
        "asked": list(machine.asked),
        "declined": list(machine.declined),
        "busy": list(machine.busy),
        "verified": machine.verified,
        "replaced": list(machine.replaced),
        "executions": [
            {
                "node_id": e.node_id,
                "execution_id": e.execution_id,
                "state": str(e.state),
                "bid_at": e.bid_at,
                "proposal": _b64(e.proposal),
                "run_output": None if e.run_output is None else _b64(e.run_output.SerializeToString()),
                "reason": e.reason,
            }
            for e in machine.executions.values()
        ],
    }


def fields_from_dict(data: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments of the machine `to_dict` wrote (`ValueError` for another format)."""
    if data.get("v") != FORMAT_VERSION:
        raise ValueError(f"unknown shard state format {data.get('v')!r}")
    executions: dict[str, Execution] = {}
    for item in data["executions"]:
        run_output = None
        if item["run_output"] is not None:
            run_output = pb.RunCommandResult.FromString(base64.b64decode(item["run_output"]))
        executions[item["node_id"]] = Execution(
            node_id=item["node_id"],
            execution_id=item["execution_id"],
            state=ExecState(item["state"]),
            bid_at=item["bid_at"],
            proposal=base64.b64decode(item["proposal"]),
            run_output=run_output,
            reason=item["reason"],
        )
    return {
        "job_id": data["job_id"],
        "shard_index": data["shard_index"],
        "requester_node_id": data["requester_node_id"],
        "client_id": data["client_id"],
        "concurrency": data["concurrency"],
        "min_bids": data["min_bids"],
        "timeout": data["timeout"],
        "created_at": data["created_at"],
        "negotiation_deadline": data["negotiation_deadline"],
        "phase": Phase(data["phase"]),
        "status": data["status"],
        "execution_deadline": data["execution_deadline"],
        "asked": list(data["asked"]),
        "declined": list(data.get("declined", [])),
        "busy": list(data.get("busy", [])),
        "executions": executions,
        "verified": data["verified"],
        "replaced": list(data.get("replaced", [])),
    }
