"""The proxy's own counters: plain attributes bumped on the share path, read at scrape time.

The share path touches only a :class:`WorkerStats` object it already holds (looked up
once, at authorize), so counting a share is an integer add, never a dict-of-labels lookup.
The metrics adapter turns these into Prometheus series when it is scraped.

Cardinality follows the live fleet: a worker with no connection left is forgotten after
``worker_expiry`` seconds, and past ``max_workers`` distinct names new ones are counted
together under :data:`OVERFLOW_WORKER` so a flood of names cannot exhaust memory.
"""

from __future__ import annotations

import math
from typing import Final

from proxy.mining.share import Verdict

REJECT_REASONS: Final = (*(v.reason for v in Verdict if not v.accepted), "upstream_rejected")
"""Every reason a share can be rejected for, in metric-label form."""

UPSTREAM_REJECTED: Final = len(Verdict)
"""Index in :attr:`WorkerStats.counts` for shares the pool refused after we forwarded them."""

REASON_SLOTS: Final = (*(v.value for v in Verdict if not v.accepted), UPSTREAM_REJECTED)
"""The :attr:`WorkerStats.counts` index of each reason in :data:`REJECT_REASONS`."""

OVERFLOW_WORKER: Final = "_other"
"""The worker name every name past ``max_workers`` is counted under."""

HASHES_PER_DIFFICULTY: Final = 2**32 * 65536 / 65535
"""Expected hashes per share of difficulty 1 (2**256 / the difficulty-1 target)."""

WINDOWS: Final = (60.0, 900.0)
"""The hashrate estimate windows (1 and 15 minutes), exponentially weighted."""


def escape_label(value: str) -> str:
    """A Prometheus label value, escaped once (text format: backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Tally:
    """Accepted share difficulty one group delivered to one pool: what a weighted split
    is measured by. The share path adds to the tally its session holds (an attribute, no
    lookup); routing reads it."""

    __slots__ = ("work",)

    def __init__(self) -> None:
        self.work = 0.0


class WorkerStats:
    """Counters of one authorized worker name (summed over its connections)."""

    __slots__ = (
        "_sampled_at",
        "_sampled_sum",
        "accepted",
        "blocks",
        "connections",
        "counts",
        "difficulty_sum",
        "hashrate",
        "label",
        "last_seen",
        "last_share",
        "name",
        "upstream_timeouts",
    )

    def __init__(self, name: str, now: float = 0.0) -> None:
        self.name = name
        self.label = escape_label(name)
        self.connections = 0
        self.accepted = 0
        self.blocks = 0
        self.difficulty_sum = 0.0
        self.last_share = 0.0
        self.last_seen = now
        self.upstream_timeouts = 0
        # One slot per Verdict plus upstream_rejected; rejects are read by reason at scrape.
        self.counts = [0] * (len(Verdict) + 1)
        self.hashrate = [0.0] * len(WINDOWS)
        self._sampled_sum = 0.0
        self._sampled_at: float | None = None

    def rejected(self, reason: str) -> int:
        """Rejected shares for one reason (metric label form)."""
        if reason == "upstream_rejected":
            return self.counts[UPSTREAM_REJECTED]
        return self.counts[Verdict[reason.upper()]]

    def rejected_by_reason(self) -> dict[str, int]:
        """Every reject reason with its count (zeros included)."""
        return {reason: self.counts[slot] for reason, slot in zip(REJECT_REASONS, REASON_SLOTS, strict=True)}

    def sample(self, now: float) -> None:
        """Fold the work done since the last sample into the hashrate estimates.

        Exponentially weighted like the Unix load average: each window's estimate moves
        towards the latest rate by ``1 - exp(-dt / window)``, so it needs two floats per
        worker instead of a history of samples.
        """
        if self._sampled_at is None:
            self._sampled_at, self._sampled_sum = now, self.difficulty_sum
            return
        dt = now - self._sampled_at
        if dt <= 0:
            return
        rate = (self.difficulty_sum - self._sampled_sum) * HASHES_PER_DIFFICULTY / dt
        for i, window in enumerate(WINDOWS):
            self.hashrate[i] += (1 - math.exp(-dt / window)) * (rate - self.hashrate[i])
        self._sampled_at, self._sampled_sum = now, self.difficulty_sum


class StatsRegistry:
    """All workers' counters, plus fleet-wide totals that are not per worker."""

    __slots__ = ("connections", "max_workers", "overflowed", "upstream_timeouts", "worker_expiry", "workers")

    def __init__(self, *, max_workers: int = 100_000, worker_expiry: float = 86_400.0) -> None:
        self.workers: dict[str, WorkerStats] = {}
        self.connections: dict[str, int] = {}
        self.upstream_timeouts = 0
        self.max_workers = max_workers
        self.worker_expiry = worker_expiry
        self.overflowed = 0

    def worker(self, name: str, now: float = 0.0) -> WorkerStats:
        """The counters for ``name``, created on first use (called at authorize, not per share)."""
        stats = self.workers.get(name)
        if stats is None:
            if len(self.workers) >= self.max_workers and name != OVERFLOW_WORKER:
                self.overflowed += 1
                return self.worker(OVERFLOW_WORKER, now)
            stats = self.workers[name] = WorkerStats(name, now)
        stats.last_seen = max(stats.last_seen, now)
        return stats

    def connection(self, result: str) -> None:
        """Count a miner connection outcome (accepted, rejected_limit, closed_bad_input, ...)."""
        self.connections[result] = self.connections.get(result, 0) + 1

    def sample(self, now: float) -> None:
        """Update hashrate estimates and forget workers idle past the expiry."""
        expired = []
        for name, stats in self.workers.items():
            stats.sample(now)
            if stats.connections <= 0 and now - max(stats.last_seen, stats.last_share) > self.worker_expiry:
                expired.append(name)
        for name in expired:
            del self.workers[name]
