"""Priority failover as pure decisions: fake time, no sockets."""

from __future__ import annotations

from proxy.routing.policy import PoolHealth, best_ready, choose_active, keep_open, pool_states

UP = PoolHealth(ready=True, healthy_since=0.0)
DOWN = PoolHealth(ready=False, healthy_since=None)


def up_since(t: float) -> PoolHealth:
    return PoolHealth(ready=True, healthy_since=t)


def test_first_ready_pool_becomes_active_at_once() -> None:
    assert choose_active([DOWN, up_since(5.0), UP], None, now=5.0, hold=60.0) == 1


def test_failover_when_the_active_pool_goes_down() -> None:
    assert choose_active([DOWN, UP, UP], 0, now=10.0, hold=60.0) == 1


def test_no_ready_pool_keeps_the_active_one() -> None:
    assert choose_active([DOWN, DOWN], 1, now=10.0, hold=60.0) == 1
    assert choose_active([DOWN, DOWN], None, now=10.0, hold=60.0) is None


def test_failback_waits_for_the_hold() -> None:
    pools = [up_since(100.0), UP]
    assert choose_active(pools, 1, now=159.0, hold=60.0) == 1  # healthy 59 s: not yet
    assert choose_active(pools, 1, now=160.0, hold=60.0) == 0  # 60 s: back to the primary


def test_a_flapping_primary_never_takes_the_miners_back() -> None:
    now, active = 0.0, 1
    for step in range(20):  # up for 30 s, down for 30 s, again and again
        now = 30.0 * step
        primary = up_since(now) if step % 2 == 0 else DOWN
        active_next = choose_active([primary, UP], active, now=now + 29.0, hold=60.0)
        assert active_next == 1
        active = active_next


def test_lower_priority_pool_never_preempts() -> None:
    assert choose_active([UP, up_since(0.0)], 0, now=1e6, hold=1.0) == 0


def test_a_removed_pool_is_left_once_another_is_ready() -> None:
    removed = PoolHealth(ready=True, healthy_since=0.0, removed=True)
    assert choose_active([removed, DOWN], 0, now=1.0, hold=60.0) == 0  # nowhere else to go
    assert choose_active([removed, UP], 0, now=1.0, hold=60.0) == 1
    assert best_ready([removed, DOWN]) is None


def test_connections_kept_open_to_the_active_pool_and_those_above_it() -> None:
    assert keep_open([DOWN, UP, UP], 1) == 2
    assert keep_open([DOWN, DOWN, UP], None) == 3
    assert keep_open([UP, DOWN, UP], 1) == 3  # the active pool is down: try them all


def test_pool_states_call_an_idle_backup_standby_not_down() -> None:
    # Primary active and ready: the backup has no connection and needs none.
    assert pool_states([UP, DOWN], [True, False], [True, False]) == ["ready", "standby"]
    # Primary down: now every pool is wanted, so a backup that is not up is down.
    assert pool_states([DOWN, DOWN], [True, True], [False, False]) == ["down", "down"]
    assert pool_states([DOWN, UP], [True, True], [True, True]) == ["connecting", "ready"]
