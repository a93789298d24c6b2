"""The fleet simulator's counters: per miner, and for a whole fleet once merged.

:mod:`proxy.tools.simulate` re-exports both classes; they live here so the simulator's
parts (:mod:`proxy.tools.sim_link`, :mod:`proxy.tools.sim_work`) can count without
importing the module that composes them.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

NO_CODE: Final = -1
"""The rejection key for a pool reply that carried no error code."""


class RttStats:
    """Submit round-trip times: count, mean, max and a bounded uniform sample for percentiles."""

    RESERVOIR: Final = 2048

    def __init__(self, seed: int = 0) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.samples: list[float] = []
        self._rng = random.Random(seed)

    def add(self, seconds: float) -> None:
        """Record one round trip (reservoir sampling keeps memory bounded)."""
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        if len(self.samples) < self.RESERVOIR:
            self.samples.append(seconds)
        else:
            slot = self._rng.randrange(self.count)
            if slot < self.RESERVOIR:
                self.samples[slot] = seconds

    def merge(self, other: RttStats) -> None:
        """Fold another miner's times in (the merged sample stays bounded)."""
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)
        self.samples.extend(other.samples)
        if len(self.samples) > 4 * self.RESERVOIR:
            self.samples = self._rng.sample(self.samples, 4 * self.RESERVOIR)

    @property
    def mean(self) -> float:
        """Mean round trip in seconds (0 without samples)."""
        return self.total / self.count if self.count else 0.0

    def percentile(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the sample, in seconds."""
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class MinerStats:
    """Counters of one miner, or of a fleet once merged."""

    requests_sent: int = 0
    replies_received: int = 0
    unanswered: int = 0
    unexpected_replies: int = 0
    shares_submitted: int = 0
    accepted: int = 0
    rejected: Counter[int] = field(default_factory=Counter)
    accepted_work: float = 0.0
    hashes: int = 0
    block_candidates: int = 0
    jobs: int = 0
    connects: int = 0
    handshakes: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    handshake_failures: int = 0
    bad_lines: int = 0
    kept_work: int = 0  # notifies that left the header unchanged (keep_work_if_header_unchanged)
    ignored_reconnects: int = 0  # client.reconnect without a host (ignore_null_reconnect)
    rtt: RttStats = field(default_factory=RttStats)

    @property
    def rejected_total(self) -> int:
        """Every rejected share, whatever the code."""
        return sum(self.rejected.values())

    def merge(self, other: MinerStats) -> None:
        """Add another miner's counters to these."""
        for name in (
            "requests_sent",
            "replies_received",
            "unanswered",
            "unexpected_replies",
            "shares_submitted",
            "accepted",
            "accepted_work",
            "hashes",
            "block_candidates",
            "jobs",
            "connects",
            "handshakes",
            "reconnects",
            "connect_failures",
            "handshake_failures",
            "bad_lines",
            "kept_work",
            "ignored_reconnects",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejected.update(other.rejected)
        self.rtt.merge(other.rtt)
