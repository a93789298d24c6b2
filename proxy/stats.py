"""The proxy's own counters: plain attributes bumped on the share path, read at scrape time.

The share path touches only a :class:`WorkerStats` object it already holds (looked up
once, at authorize), so counting a share is an integer add, never a dict-of-labels lookup.
The metrics adapter turns these into Prometheus series when it is scraped.
"""

from __future__ import annotations

from typing import Final

from proxy.mining.share import Verdict

REJECT_REASONS: Final = (*(v.reason for v in Verdict if not v.accepted), "upstream_rejected")
"""Every reason a share can be rejected for, in metric-label form."""

UPSTREAM_REJECTED: Final = len(Verdict)
"""Index in :attr:`WorkerStats.counts` for shares the pool refused after we forwarded them."""


class WorkerStats:
    """Counters of one authorized worker name (summed over its connections)."""

    __slots__ = (
        "accepted",
        "blocks",
        "connections",
        "counts",
        "difficulty_sum",
        "last_share",
        "name",
        "upstream_timeouts",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.connections = 0
        self.accepted = 0
        self.blocks = 0
        self.difficulty_sum = 0.0
        self.last_share = 0.0
        self.upstream_timeouts = 0
        # One slot per Verdict plus upstream_rejected; rejects are read by reason at scrape.
        self.counts = [0] * (len(Verdict) + 1)

    def rejected(self, reason: str) -> int:
        """Rejected shares for one reason (metric label form)."""
        if reason == "upstream_rejected":
            return self.counts[UPSTREAM_REJECTED]
        return self.counts[Verdict[reason.upper()]]


class StatsRegistry:
    """All workers' counters, plus fleet-wide totals that are not per worker."""

    __slots__ = ("connections", "upstream_timeouts", "workers")

    def __init__(self) -> None:
        self.workers: dict[str, WorkerStats] = {}
        self.connections: dict[str, int] = {}
        self.upstream_timeouts = 0

    def worker(self, name: str) -> WorkerStats:
        """The counters for ``name``, created on first use (called at authorize, not per share)."""
        stats = self.workers.get(name)
        if stats is None:
            stats = self.workers[name] = WorkerStats(name)
        return stats

    def connection(self, result: str) -> None:
        """Count a miner connection outcome (accepted, rejected_limit, closed_bad_input, ...)."""
        self.connections[result] = self.connections.get(result, 0) + 1
