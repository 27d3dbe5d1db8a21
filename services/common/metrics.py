"""The metrics port of domain code: what the requester and compute domains count and time, with no
OpenTelemetry (or transport) in sight.

Domain objects take a `Metrics` (default `NO_METRICS`, whose methods do nothing, so unit tests need
nothing) and call it where things happen; the service apps hand them `telemetry.OtelMetrics`, which
records the calls as OpenTelemetry instruments (`telemetry.setup_metrics`). Gauges (active jobs, running
executions, capacity) are not pushed through this port: the apps read domain state in observable-gauge
callbacks.

Labels stay few and bounded: states, outcomes, reasons, engines - never a job ID.
"""

from __future__ import annotations


class Metrics:
    """The metrics domain code records; this base records nothing (the no-op default)."""

    def job_submitted(self) -> None:
        """A job was accepted (the requester)."""

    def job_ended(self, state: str) -> None:
        """A job ended: `state` is Completed, Error or Cancelled (the requester)."""

    def shard_transition(self, phase: str) -> None:
        """A shard moved to `phase` (the requester's shard machine: SelectingBids, Completed, ...)."""

    def bid(self, outcome: str, reason: str = "") -> None:
        """A compute node answered an ask for a bid: `outcome` "bid" or "refused"; `reason` names the check
        that refused (e.g. "AvailableCapacity"), "" for a bid."""

    def execution_ended(self, engine: str, seconds: float, outcome: str) -> None:
        """A compute node's run of a shard ended after `seconds`: `outcome` "completed", "failed" or
        "cancelled"."""

    def store_commit(self, store: str, seconds: float) -> None:
        """A store committed one batch (one SQLite transaction) in `seconds`."""


NO_METRICS = Metrics()
