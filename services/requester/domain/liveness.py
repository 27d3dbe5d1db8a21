"""The requester's view of compute node liveness: registration (and what a restarted node must redo),
heartbeats, one exact liveness timer per node (a node silent for node_timeout loses its executions, which
are replaced), and offering bidding shards to nodes that appear or have room again (`_busy_nodes`).

A mixin of `Requester` (`lifecycle.py`): the state it uses is set by the orchestrator, declared below.
"""

import asyncio
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from bacalhau_grpc.common.errors import InvalidArgumentError, NotFoundError, UnauthenticatedError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.node_ids import check_node_id
from bacalhau_grpc.requester.domain.nodes import NodeRegistry, NodeView
from bacalhau_grpc.requester.domain.page_tokens import decode_token, encode_token
from bacalhau_grpc.requester.domain.ports import JobStore
from bacalhau_grpc.requester.domain.records import JobRecord
from bacalhau_grpc.requester.domain.shard_fsm import ShardFSM, Transition
from bacalhau_grpc.requester.domain.visibility import IDENTITY_HINT, OWNER

# The lifecycle's logger: these records kept their logger name when this part moved out of lifecycle.py.
log = logging.getLogger("bacalhau_grpc.requester.domain.lifecycle")
# The least time between two offers of its shards to a busy node (seconds).
REOFFER_GAP = 0.1
DEFAULT_NODES_PAGE_SIZE = 100
MAX_NODES_PAGE_SIZE = 1000


class NodeLiveness:
    """Compute nodes coming, heartbeating and going (mixed into `Requester`)."""

    # Set by `Requester.__init__`.
    node_id: str
    job_visibility: str
    store: JobStore
    nodes: NodeRegistry
    _clock: Callable[[], float]
    _rng: random.Random
    _active: dict[str, JobRecord]
    _bidding: dict[tuple[str, int], None]
    _busy_nodes: set[str]
    _reoffered_at: dict[str, float]
    _reoffer_timers: dict[str, asyncio.TimerHandle]
    _node_timers: dict[str, asyncio.TimerHandle]
    _draining: bool
    _loop: asyncio.AbstractEventLoop | None

    if TYPE_CHECKING:

        def _apply(
            self, record: JobRecord, shard: ShardFSM, transition: Transition
        ) -> None: ...  # lifecycle.py

    async def register_node(self, info: pb.NodeInfo) -> None:
        check_node_id(info.node_id, field="node.node_id")
        if not info.address:
            raise InvalidArgumentError(
                "the node's compute service address (host:port) is required", field="node.address"
            )
        now = self._clock()
        stored = pb.NodeInfo()
        stored.CopyFrom(info)
        self.nodes.register(stored, now)
        self.store.put_node(stored, now)
        self._watch_node(info.node_id)
        log.info(
            "compute node %s registered at %s", info.node_id, info.address, extra={"node_id": self.node_id}
        )
        self._resume_node(info.node_id)
        self._offer_to(info.node_id)

    def _resume_node(self, node_id: str) -> None:
        """A node (re)registered: repeat what it must still do for the active shards (see
        `ShardFSM.resume_node`); a restarted node may have lost its last updates."""
        for record in list(self._active.values()):
            for shard in record.shards:
                if shard.is_terminal or shard.execution(node_id) is None:
                    continue
                transition = shard.resume_node(node_id)
                if transition.actions:
                    self._apply(record, shard, transition)

    async def heartbeat(
        self,
        node_id: str,
        available: pb.ResourceUsageData | None = None,
        *,
        running: int = 0,
        queued: int = 0,
    ) -> None:
        check_node_id(node_id, field="node_id")
        was_live = self.nodes.heartbeat(node_id, available, self._clock(), running=running, queued=queued)
        self._watch_node(node_id)
        if not was_live:
            self._offer_to(node_id)
        elif node_id in self._busy_nodes:
            self._reoffer_busy(node_id)

    def _reoffer_busy(self, node_id: str) -> None:
        """Offer a busy node its shards again, at most once every REOFFER_GAP seconds (a node that heartbeats
        in a tight loop costs one pass over the bidding shards per gap, not one per heartbeat); a heartbeat
        that comes sooner puts the offer off to the end of the gap."""
        loop = self._loop or asyncio.get_running_loop()
        wait = self._reoffered_at.get(node_id, float("-inf")) + REOFFER_GAP - loop.time()
        if wait > 0:
            if node_id not in self._reoffer_timers and not self._draining:
                self._reoffer_timers[node_id] = loop.call_later(wait, self._reoffer_due, node_id)
            return
        self._reoffered_at[node_id] = loop.time()
        self._busy_nodes.discard(node_id)
        self._offer_to(node_id)

    def _reoffer_due(self, node_id: str) -> None:
        self._reoffer_timers.pop(node_id, None)
        if node_id in self._busy_nodes and self.nodes.is_live(node_id, self._clock()):
            self._reoffer_busy(node_id)

    def _watch_node(self, node_id: str) -> None:
        """Arm the node's liveness timer (once; it re-arms itself while the node keeps heartbeating)."""
        entry = self.nodes.get(node_id)
        if self._draining or entry is None or node_id in self._node_timers:
            return
        loop = self._loop or asyncio.get_running_loop()
        expires = entry.last_seen + self.nodes.node_timeout
        when = loop.time() + max(expires - self._clock(), 0.0) + 0.01
        self._node_timers[node_id] = loop.call_at(when, self._check_node, node_id)

    def _check_node(self, node_id: str) -> None:
        """The node's timeout ran out: re-arm if it was heard from meanwhile, else replace its executions."""
        self._node_timers.pop(node_id, None)
        entry = self.nodes.get(node_id)
        now = self._clock()
        if entry is None or self._draining:
            return
        if self.nodes.is_live(node_id, now):
            self._watch_node(node_id)
            return
        reason = (
            f"node {node_id} stopped sending heartbeats (silent for {now - entry.last_seen:.1f}s, "
            f"node timeout {self.nodes.node_timeout:g}s)"
        )
        log.warning("%s", reason, extra={"node_id": self.node_id})
        for record in list(self._active.values()):
            for shard in record.shards:
                if shard.is_terminal or shard.execution(node_id) is None:
                    continue
                transition = shard.on_node_lost(node_id, reason, now)
                if transition.actions:
                    self._refill(shard, transition, now)
                    self._apply(record, shard, transition)

    def _refill(self, shard: ShardFSM, transition: Transition, now: float) -> None:
        """After a bid was lost (refused, failed, its node gone): ask other live nodes to fill the slot."""
        if shard.is_bidding and transition.denied is None:
            transition.actions += shard.refill(self.nodes.live_node_ids(now), now, self._rng).actions

    def _offer_to(self, node_id: str) -> None:
        """Offer every bidding shard to a node that (re)appeared or has room again (`offer_again`)."""
        for job_id, shard_index in list(self._bidding):
            record = self._active.get(job_id)
            if record is None:
                continue
            shard = record.shards[shard_index]
            transition = shard.offer_again(node_id, self._rng)
            if transition.actions:
                self._apply(record, shard, transition)

    def forget_lost_nodes(self, now: float, lost_for: float) -> list[str]:
        """Drop the nodes silent for longer than their node timeout plus `lost_for` seconds, whose loss was
        handled already (their executions replaced), from the registry; returns their IDs (the caller
        removes them from the store). A forgotten node that comes back registers anew."""
        registry = self.nodes
        gone = [
            entry.node_id
            for entry in registry.entries()
            if now - entry.last_seen > registry.node_timeout + lost_for
            and entry.node_id not in self._node_timers
        ]
        for node_id in gone:
            registry.remove(node_id)
            self._busy_nodes.discard(node_id)
            self._reoffered_at.pop(node_id, None)
            timer = self._reoffer_timers.pop(node_id, None)
            if timer is not None:
                timer.cancel()
        return gone

    def live_node_count(self) -> int:
        return len(self.nodes.live_node_ids(self._clock()))

    def live_node_addresses(self) -> list[str]:
        """Where the live compute nodes listen (e.g. to fetch content they hold)."""
        addresses = (self.nodes.address(node_id) for node_id in self.nodes.live_node_ids(self._clock()))
        return [address for address in addresses if address]

    # ------------------------------------------------------------------------------------------
    # reading the nodes (ListNodes, GetNode)
    # ------------------------------------------------------------------------------------------

    def _check_node_reader(self, caller: str | None) -> None:
        """Nodes are read as jobs are: by anyone under the public job visibility, by identified callers
        only (a signed call, or an operator's client certificate) under `owner`. A node's address tells
        nothing that lets one act as or on the node: its node protocol wants the cluster's certificates."""
        if self.job_visibility == OWNER and not caller:
            raise UnauthenticatedError(
                f"this requester shows its nodes to identified clients only (job visibility {OWNER}): "
                f"{IDENTITY_HINT}"
            )

    async def list_nodes(
        self, *, page_size: int = 0, page_token: str = "", caller: str | None = None
    ) -> tuple[list[NodeView], str]:
        """A page of the registered compute nodes (live or lost), by node ID, and the next page's token."""
        self._check_node_reader(caller)
        if page_size < 0:
            raise InvalidArgumentError(
                f"page_size must be >= 0 (0 means {DEFAULT_NODES_PAGE_SIZE})", field="page_size"
            )
        size = min(page_size or DEFAULT_NODES_PAGE_SIZE, MAX_NODES_PAGE_SIZE)
        after = ""
        if page_token:
            token = decode_token(page_token)
            after = token.get("n", "")
            if not isinstance(after, str) or not after:
                raise InvalidArgumentError(
                    "this page token does not belong to a node listing", field="page_token"
                )
        now = self._clock()
        entries = [entry for entry in self.nodes.entries() if entry.node_id > after]
        page = entries[:size]
        next_token = encode_token({"n": page[-1].node_id}) if len(entries) > size else ""
        return [NodeView(entry, self.nodes.is_live(entry.node_id, now)) for entry in page], next_token

    async def get_node(self, node_id: str, *, caller: str | None = None) -> NodeView:
        """The registered node with this ID, or the only one whose ID starts with it."""
        self._check_node_reader(caller)
        if not node_id:
            raise InvalidArgumentError("a node ID (or a unique prefix of one) is required", field="node_id")
        entry = self.nodes.get(node_id)
        if entry is None:
            matches = [e for e in self.nodes.entries() if e.node_id.startswith(node_id)]
            if not matches:
                raise NotFoundError(f"node {node_id} not found: no compute node with this ID registered")
            if len(matches) > 1:
                shown = ", ".join(e.node_id for e in matches[:5]) + (", ..." if len(matches) > 5 else "")
                raise InvalidArgumentError(
                    f"node ID prefix {node_id!r} matches more than one node ({shown}): give more of the ID",
                    field="node_id",
                )
            entry = matches[0]
        return NodeView(entry, self.nodes.is_live(entry.node_id, self._clock()))
