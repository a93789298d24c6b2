"""Vardiff with fake time: convergence, bounds, clamps, suggestions (pure, no sleeps)."""

from __future__ import annotations

import math
import random

import pytest

from proxy.mining.vardiff import MAX_STEP, SHARES_PER_RETARGET, Vardiff


def make(**overrides: float | bool) -> Vardiff:
    options: dict[str, float | bool] = {
        "initial": 1.0,
        "minimum": 0.01,
        "maximum": 1e6,
        "target_interval": 10.0,
        "retarget_interval": 30.0,
        "now": 0.0,
    }
    options.update(overrides)
    return Vardiff(**options)  # type: ignore[arg-type]


def simulate(vd: Vardiff, hashrate_in_diff1_per_s: float, seconds: float, seed: int = 1) -> float:
    """Feed Poisson share arrivals for a miner of the given hashrate; return the final time."""
    rng = random.Random(seed)
    now = 0.0
    while now < seconds:
        rate = hashrate_in_diff1_per_s / vd.difficulty  # shares per second at this difficulty
        now += rng.expovariate(rate)
        if vd.on_share(now) is None:
            vd.poll(now)
    return now


def test_converges_to_the_target_interval() -> None:
    vd = make(initial=1.0)
    # A miner doing 500 diff-1 shares/s wants difficulty 5000 for one share per 10 s.
    simulate(vd, 500.0, seconds=3600)
    assert 5000 / 1.6 < vd.difficulty < 5000 * 1.6


def test_step_is_bounded() -> None:
    vd = make(initial=1.0)
    for i in range(SHARES_PER_RETARGET - 1):
        assert vd.on_share(0.001 * i) is None
    new = vd.on_share(0.02)
    assert new == MAX_STEP  # far too fast, but at most x8 in one retarget


def test_never_exceeds_ceiling_or_maximum_and_never_below_minimum() -> None:
    vd = make(initial=100.0, maximum=1000.0, ceiling=50.0)
    assert vd.difficulty == 50.0
    assert vd.set_ceiling(20.0, 1.0) == 20.0
    simulate(vd, 2000.0, seconds=120)
    assert vd.difficulty == 20.0
    slow = make(initial=1.0, minimum=0.5)
    assert slow.poll(1000.0) == 0.5  # silent miner: cut, but not below the minimum


def test_silent_miner_is_lowered_only_after_a_long_gap() -> None:
    vd = make(initial=64.0)
    assert vd.poll(35.0) is None  # 3.5 intervals without a share: could be bad luck
    lowered = vd.poll(80.0)
    assert lowered is not None and lowered < 64.0


def test_deadband_avoids_flapping() -> None:
    vd = make(initial=10.0)
    now = 0.0
    for _ in range(SHARES_PER_RETARGET):
        now += 10.5  # close enough to the 10 s target
        assert vd.on_share(now) is None
    assert vd.difficulty == 10.0


def test_suggest_and_floor_are_clamped() -> None:
    vd = make(initial=1.0, minimum=0.5, maximum=100.0)
    assert vd.suggest(1e9, 0.0) == 100.0
    assert vd.suggest(0.001, 0.0) == 0.5
    assert vd.set_floor(20.0, 0.0) == 20.0
    assert vd.suggest(1.0, 0.0) is None  # the floor holds against a lower suggestion
    assert vd.difficulty == 20.0


def test_disabled_stays_at_initial() -> None:
    vd = make(initial=3.0, enabled=False)
    simulate(vd, 100.0, seconds=120)
    assert vd.difficulty == 3.0


def test_reconfigure_applies_new_bounds() -> None:
    vd = make(initial=10.0)
    changed = vd.reconfigure(
        initial=1.0,
        minimum=20.0,
        maximum=50.0,
        target_interval=5.0,
        retarget_interval=9.0,
        enabled=True,
        now=0.0,
    )
    assert changed == 20.0 and vd.retarget_interval == 9.0
    # With vardiff off, every miner goes to the new initial difficulty (within bounds).
    fixed = vd.reconfigure(
        initial=30.0,
        minimum=20.0,
        maximum=50.0,
        target_interval=5.0,
        retarget_interval=9.0,
        enabled=False,
        now=0.0,
    )
    assert fixed == 30.0


@pytest.mark.parametrize("bad", [math.inf])
def test_ceiling_infinite_means_unbounded(bad: float) -> None:
    vd = make(initial=10.0, ceiling=bad)
    assert vd.difficulty == 10.0


def test_a_ceiling_that_rises_again_gives_the_miner_back_its_difficulty() -> None:
    # A time split between a pool at 1000 and one at 250: down at once on the easy pool,
    # back up when it returns to the hard one (vardiff off: nothing else would raise it).
    vd = make(initial=1000.0, enabled=False)
    assert vd.set_ceiling(250.0, 1.0) == 250.0
    assert vd.set_ceiling(1000.0, 2.0) == 1000.0
    assert vd.set_ceiling(4000.0, 3.0) is None  # never above what it wants
    assert vd.difficulty == 1000.0


def test_a_reload_with_vardiff_off_sets_what_the_miner_wants_too() -> None:
    vd = make(initial=1000.0, enabled=False)
    settings = {"minimum": 0.01, "maximum": 1e6, "target_interval": 10.0, "retarget_interval": 30.0}
    assert vd.reconfigure(initial=500.0, enabled=False, now=1.0, **settings) == 500.0
    # Moved to another pool afterwards: it keeps the reloaded difficulty, not the old one.
    assert vd.set_ceiling(1e9, 2.0) is None
    assert vd.difficulty == 500.0
