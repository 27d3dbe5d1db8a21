"""The compute nodes a requester knows, and which of them are alive (heard from within node_timeout)."""

from dataclasses import dataclass

from bacalhau_grpc.common.errors import NotFoundError
from bacalhau_grpc.common.model import pb


@dataclass
class NodeEntry:
    info: pb.NodeInfo
    last_seen: float
    available: pb.ResourceUsageData | None = None
    # What the node's last heartbeat said about its executions.
    running: int = 0
    queued: int = 0

    @property
    def node_id(self) -> str:
        return self.info.node_id

    @property
    def address(self) -> str:
        return self.info.address


@dataclass(frozen=True)
class NodeView:
    """A node as ListNodes and GetNode show it: its registry entry and whether it is live now."""

    entry: NodeEntry
    live: bool


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

    def heartbeat(
        self,
        node_id: str,
        available: pb.ResourceUsageData | None,
        now: float,
        *,
        running: int = 0,
        queued: int = 0,
    ) -> bool:
        """Note a sign of life; returns whether the node was taken for alive before it.

        Raises NotFoundError for a node that never registered (it must register again)."""
        entry = self._nodes.get(node_id)
        if entry is None:
            raise NotFoundError(f"node {node_id} is not registered with this requester: register again")
        was_live = now - entry.last_seen <= self.node_timeout
        entry.last_seen = now
        if available is not None:
            entry.available = available
        entry.running = max(running, 0)
        entry.queued = max(queued, 0)
        return was_live

    def remove(self, node_id: str) -> None:
        """Forget the node (retention: lost for longer than node_retention)."""
        self._nodes.pop(node_id, None)

    def entries(self) -> list[NodeEntry]:
        """Every registered node (live or lost), by node ID."""
        return [self._nodes[node_id] for node_id in sorted(self._nodes)]

    def live_node_ids(self, now: float) -> list[str]:
        return [n.node_id for n in self._nodes.values() if now - n.last_seen <= self.node_timeout]

    def address(self, node_id: str) -> str | None:
        entry = self._nodes.get(node_id)
        return None if entry is None else entry.address
