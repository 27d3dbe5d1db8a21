"""The compute nodes a requester knows, and which of them are alive (heard from within node_timeout)."""

from dataclasses import dataclass

from bacalhau_grpc.common.errors import NotFoundError
from bacalhau_grpc.common.model import pb


@dataclass
class NodeEntry:
    info: pb.NodeInfo
    last_seen: float
    available: pb.ResourceUsageData | None = None

    @property
    def node_id(self) -> str:
        return self.info.node_id

    @property
    def address(self) -> str:
        return self.info.address


class NodeRegistry:
    def __init__(self, node_timeout: float) -> None:
        self.node_timeout = node_timeout
        self._nodes: dict[str, NodeEntry] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node_id: str) -> bool:
        return node_id in self._nodes

    def get(self, node_id: str) -> NodeEntry | None:
        return self._nodes.get(node_id)

    def is_live(self, node_id: str, now: float) -> bool:
        entry = self._nodes.get(node_id)
        return entry is not None and now - entry.last_seen <= self.node_timeout

    def register(self, info: pb.NodeInfo, now: float) -> None:
        entry = self._nodes.get(info.node_id)
        if entry is None:
            self._nodes[info.node_id] = NodeEntry(info=info, last_seen=now)
        else:
            entry.info = info
            entry.last_seen = now

    def heartbeat(self, node_id: str, available: pb.ResourceUsageData | None, now: float) -> bool:
        """Note a sign of life; returns whether the node was taken for alive before it.

        Raises NotFoundError for a node that never registered (it must register again)."""
        entry = self._nodes.get(node_id)
        if entry is None:
            raise NotFoundError(f"node {node_id} is not registered with this requester: register again")
        was_live = now - entry.last_seen <= self.node_timeout
        entry.last_seen = now
        if available is not None:
            entry.available = available
        return was_live

    def live_node_ids(self, now: float) -> list[str]:
        return [n.node_id for n in self._nodes.values() if now - n.last_seen <= self.node_timeout]

    def address(self, node_id: str) -> str | None:
        entry = self._nodes.get(node_id)
        return None if entry is None else entry.address
