"""proxy.routing.health: healthy, degraded and down, each with its reason, in fake time."""

from __future__ import annotations

from typing import cast

from proxy.config import PoolConfig
from proxy.routing.health import DEGRADED, DOWN, HEALTHY, MAX_VERDICTS, HealthLimits, Verdicts, assess
from proxy.routing.state import Conn, PoolState

LIMITS = HealthLimits(job_timeout=300.0, reject_ratio=0.5, latency_p99=5.0, window=300.0, min_shares=20)


def verdicts(
    accepted: int, rejected: int, latency: float = 0.05, *, code: int | None = 23, now: float = 0.0
) -> Verdicts:
    window = Verdicts()
    for _ in range(accepted):
        window.add(now, True, latency, None)
    for _ in range(rejected):
        window.add(now, False, latency, code)
    return window


def test_a_pool_with_no_ready_connection_is_down_with_the_failure() -> None:
    assert assess(False, "connect failed: refused", None, Verdicts().summary(), 0.0, LIMITS) == (
        DOWN,
        "connect failed: refused",
    )
    assert assess(False, None, None, Verdicts().summary(), 0.0, LIMITS)[0] == DOWN


def test_a_ready_pool_doing_its_job_is_healthy() -> None:
    assert assess(True, None, 100.0, verdicts(100, 10).summary(), 200.0, LIMITS) == (HEALTHY, "")


def test_no_new_job_for_job_timeout_degrades() -> None:
    health, reason = assess(True, None, 0.0, Verdicts().summary(), 301.0, LIMITS)
    assert health == DEGRADED and "no new job for 301 s" in reason
    assert assess(True, None, 0.0, Verdicts().summary(), 299.0, LIMITS)[0] == HEALTHY
    off = LIMITS._replace(job_timeout=0.0)
    assert assess(True, None, 0.0, Verdicts().summary(), 10_000.0, off)[0] == HEALTHY


def test_a_reject_storm_degrades_once_the_window_has_enough_shares() -> None:
    health, reason = assess(True, None, 0.0, verdicts(10, 30).summary(), 1.0, LIMITS)
    assert health == DEGRADED and "rejected 75% of 40 shares" in reason
    # Below the minimum sample a few early rejects do not.
    assert assess(True, None, 0.0, verdicts(1, 5).summary(), 1.0, LIMITS)[0] == HEALTHY
    # At the threshold exactly: still healthy (it must be above).
    assert assess(True, None, 0.0, verdicts(20, 20).summary(), 1.0, LIMITS)[0] == HEALTHY


def test_a_slow_pool_degrades_on_its_p99() -> None:
    window = verdicts(99, 0, latency=0.05)
    window.add(0.0, True, 9.0, None)
    window.add(0.0, True, 9.0, None)  # 2 of 101 slow: the p99 is slow
    health, reason = assess(True, None, 0.0, window.summary(), 1.0, LIMITS)
    assert health == DEGRADED and "p99 9.00 s" in reason
    fast = verdicts(200, 0, latency=0.05)
    fast.add(0.0, True, 9.0, None)  # 1 of 201: under the 99th percentile
    assert assess(True, None, 0.0, fast.summary(), 1.0, LIMITS)[0] == HEALTHY


def test_an_unauthorized_answer_degrades_at_once() -> None:
    health, reason = assess(True, None, 0.0, verdicts(50, 1, code=24).summary(), 1.0, LIMITS)
    assert (health, reason) == (DEGRADED, "the pool answered unauthorized")


def test_verdicts_leave_the_window_and_memory_is_bounded() -> None:
    window = verdicts(0, 30, now=0.0)
    window.expire(301.0, 300.0)
    assert window.summary() == (0, 0, 0.0, False)
    big = Verdicts()
    for i in range(MAX_VERDICTS + 100):
        big.add(float(i), True, 0.01, None)
    assert big.summary()[0] == MAX_VERDICTS


class FakeReadyPool(PoolState):
    """A pool whose readiness the test sets (no connection needed to judge health)."""

    up = True

    def ready_connections(self) -> list[Conn]:
        return [cast(Conn, object())] if self.up else []


def since(pool: PoolState) -> float | None:
    """Its healthy_since, read afresh (the state changes under each assess)."""
    return pool.healthy_since


def test_a_pool_leaving_health_needs_primary_hold_again() -> None:
    pool = FakeReadyPool(PoolConfig(name="p", url="stratum+tcp://127.0.0.1:1", user="u"), 0)
    pool.assess(0.0, LIMITS)
    assert (pool.health, since(pool)) == (HEALTHY, 0.0)
    for _ in range(30):
        pool.count_verdict(False, 0.05, 23, 10.0)
    pool.assess(10.0, LIMITS)
    assert pool.degraded and since(pool) is None
    assert "rejected 100% of 30 shares" in pool.health_reason
    pool.assess(400.0, LIMITS)  # the rejects left the window; jobs still "new" as of start
    assert pool.health == DEGRADED and "no new job" in pool.health_reason
    pool.job_received(400.0, new=True)
    pool.assess(401.0, LIMITS)
    assert (pool.health, since(pool)) == (HEALTHY, 401.0)  # the hold counts from here
    pool.up = False
    pool.failed("connect failed: refused")
    pool.assess(402.0, LIMITS)
    assert (pool.health, pool.health_reason) == (DOWN, "connect failed: refused")
