"""Fair share between clients: how many jobs in progress and how many followers one client may have.

Counts are kept per ClientID (a dict of counts, O(1) per change). A client at its limit is refused at
once with ResourceExhaustedError (never made to wait), carrying a retry hint (`retry_after`, sent as a
`google.rpc.RetryInfo`); other clients are not affected. Anonymous callers (no verified ClientID) share
one bucket, "anonymous". Transport-free: the servicer passes the caller's ClientID.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from bacalhau_grpc.common.errors import ResourceExhaustedError

ANONYMOUS_BUCKET = "anonymous"
# Seconds a refused client is told to wait before trying again (a hint: a job or follower may end sooner).
RETRY_AFTER = 1.0


def _bucket(client_id: str | None) -> str:
    return client_id or ANONYMOUS_BUCKET


class ClientCounts:
    """How many of something each client holds, with a per-client limit (None: none)."""

    def __init__(self, limit: int | None, *, what: str, setting: str, until: str) -> None:
        self.limit = limit
        self.what = what
        self.setting = setting
        self.until = until
        self._counts: dict[str, int] = {}

    def count(self, client_id: str | None) -> int:
        return self._counts.get(_bucket(client_id), 0)

    def check(self, client_id: str | None) -> None:
        """ResourceExhaustedError when the client holds its limit already."""
        held = self.count(client_id)
        if self.limit is not None and held >= self.limit:
            raise ResourceExhaustedError(
                f"client {_bucket(client_id)} has {held} {self.what}, the most one client may have "
                f"({self.setting}={self.limit}); retry when {self.until}",
                retry_after=RETRY_AFTER,
            )

    def add(self, client_id: str | None) -> None:
        key = _bucket(client_id)
        self._counts[key] = self._counts.get(key, 0) + 1

    def remove(self, client_id: str | None) -> None:
        key = _bucket(client_id)
        left = self._counts.get(key, 0) - 1
        if left > 0:
            self._counts[key] = left
        else:
            self._counts.pop(key, None)

    @contextmanager
    def held(self, client_id: str | None) -> Iterator[None]:
        """Checks the limit, then holds one for the client until the block ends."""
        self.check(client_id)
        self.add(client_id)
        try:
            yield
        finally:
            self.remove(client_id)

    def __len__(self) -> int:
        """How many clients hold at least one."""
        return len(self._counts)
