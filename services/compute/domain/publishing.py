"""The publishers a node has, and which one serves a job's `Spec.Publisher` (its fallbacks).

As in Bacalhau, Estuary and Filecoin without their credentials publish to IPFS: a node with an IPFS
publisher takes such jobs, publishes to IPFS and says so in the job's ResultsPublished event.
"""

from collections.abc import Iterable

from bacalhau_grpc.common.model import enums, pb
from bacalhau_grpc.compute.domain.ports import Publisher

P = pb.Publisher
FALL_BACK_TO_IPFS = frozenset({P.PUBLISHER_ESTUARY, P.PUBLISHER_FILECOIN})


class Publishers:
    def __init__(self, publishers: Iterable[Publisher]) -> None:
        self.installed = {p.publisher: p for p in publishers if p.is_installed()}

    def kinds(self) -> frozenset[int]:
        """Every `Spec.Publisher` this node can serve (directly or by falling back to IPFS)."""
        kinds = set(self.installed)
        if P.PUBLISHER_IPFS in self.installed:
            kinds |= FALL_BACK_TO_IPFS
        return frozenset(kinds)

    def resolve(self, kind: int) -> tuple[Publisher, str] | None:
        """The publisher for `kind` and a note for the job's events (empty unless it fell back)."""
        publisher = self.installed.get(kind)
        if publisher is not None:
            return publisher, ""
        ipfs = self.installed.get(P.PUBLISHER_IPFS)
        if kind in FALL_BACK_TO_IPFS and ipfs is not None:
            name = enums.PUBLISHER.name(kind)
            return ipfs, f"{name} is not configured on this node (no credentials): published to IPFS instead"
        return None
