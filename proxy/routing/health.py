"""Pool health beyond TCP, pure: what a pool did in, ``now`` in, healthy/degraded/down out.

A pool is *down* when it has no ready connection (connect or handshake failure, silence),
with the last failure as the reason. A ready pool is *degraded* when it does not do its
job: no new job for ``job_timeout`` (its miners work on an old block), a reject ratio over
the window above ``reject_ratio``, a 99th-percentile submit round trip above
``latency_p99`` (both once the window holds ``min_shares`` verdicts), or an
"unauthorized" answer in the window (the pool no longer takes our account). Routing skips
degraded pools like down ones; a pool takes miners back after ``primary_hold`` of health.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final, NamedTuple

UNAUTHORIZED_CODE: Final = 24
"""The Stratum error code of "unauthorized worker"."""

MAX_VERDICTS: Final = 20_000
"""Verdicts kept per pool: a window of 5 minutes at ~60 forwarded shares per second; past
that the oldest go (the window then covers less time, never more memory)."""

HEALTHY: Final = "healthy"
DEGRADED: Final = "degraded"
DOWN: Final = "down"


class HealthLimits(NamedTuple):
    """The thresholds of ``[upstream]``."""

    job_timeout: float
    reject_ratio: float
    latency_p99: float
    window: float
    min_shares: int


class Verdicts:
    """A pool's recent verdicts on forwarded shares: when, accepted or not, how long."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: deque[tuple[float, bool, float, bool]] = deque(maxlen=MAX_VERDICTS)

    def add(self, now: float, accepted: bool, latency: float, code: int | None) -> None:
        """One verdict (``code``: the pool's error code, if it gave one)."""
        self._items.append((now, accepted, latency, code == UNAUTHORIZED_CODE))

    def expire(self, now: float, window: float) -> None:
        """Forget verdicts older than ``window`` seconds."""
        items = self._items
        while items and now - items[0][0] > window:
            items.popleft()

    def summary(self) -> tuple[int, int, float, bool]:
        """(verdicts, rejected, p99 latency, any unauthorized) over what is kept."""
        items = self._items
        if not items:
            return 0, 0, 0.0, False
        latencies = sorted(item[2] for item in items)
        p99 = latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)]
        rejected = sum(1 for item in items if not item[1])
        return len(items), rejected, p99, any(item[3] for item in items)


def assess(
    ready: bool,
    failure: str | None,
    last_new_job: float | None,
    verdicts: tuple[int, int, float, bool],
    now: float,
    limits: HealthLimits,
) -> tuple[str, str]:
    """A pool's health and why: (``healthy`` | ``degraded`` | ``down``, reason)."""
    if not ready:
        return DOWN, failure or "not connected"
    count, rejected, p99, unauthorized = verdicts
    if unauthorized:
        return DEGRADED, "the pool answered unauthorized"
    if limits.job_timeout and last_new_job is not None and now - last_new_job > limits.job_timeout:
        return DEGRADED, f"no new job for {now - last_new_job:.0f} s (job_timeout {limits.job_timeout:g} s)"
    if count >= limits.min_shares:
        ratio = rejected / count
        if ratio > limits.reject_ratio:
            return DEGRADED, f"rejected {ratio:.0%} of {count} shares (reject_ratio {limits.reject_ratio:g})"
        if p99 > limits.latency_p99:
            return DEGRADED, f"submit p99 {p99:.2f} s (latency_p99 {limits.latency_p99:g} s)"
    return HEALTHY, ""
