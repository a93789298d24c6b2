"""proxy.routing.split: group matching and the weighted split, with fake time."""

from __future__ import annotations

import ipaddress
import random

import pytest

from proxy.config_groups import GroupMatch
from proxy.routing.split import (
    MINERS_BAND,
    Matcher,
    choose_group,
    move_budget,
    next_switch,
    parse_source,
    pick_route,
    plan_moves,
    route_fractions,
    slice_phase,
    time_route,
)

IP = ipaddress.ip_address


def test_matching_needs_every_criterion_given() -> None:
    match = Matcher(
        GroupMatch(workers=("acct.s21-*",), sources=("10.1.0.0/16",), listeners=("0.0.0.0:3333",))
    )
    assert match.matches("acct.s21-7", IP("10.1.2.3"), "0.0.0.0:3333")
    assert not match.matches("acct.s19-7", IP("10.1.2.3"), "0.0.0.0:3333")
    assert not match.matches("other.s21-7", IP("10.1.2.3"), "0.0.0.0:3333")  # the full name
    assert not match.matches("acct.s21-7", IP("10.2.0.1"), "0.0.0.0:3333")
    assert not match.matches("acct.s21-7", IP("10.1.2.3"), "0.0.0.0:3334")
    assert not match.matches("acct.s21-7", None, "0.0.0.0:3333")
    # Before authorize the worker is not known: the rest decides.
    assert match.matches(None, IP("10.1.2.3"), "0.0.0.0:3333")
    assert Matcher(GroupMatch()).matches("anyone", None, None)


def test_first_match_wins_and_the_last_group_takes_the_rest() -> None:
    matchers = [
        Matcher(GroupMatch(workers=("a.*",))),
        Matcher(GroupMatch(workers=("a.x*", "b.*"))),
        Matcher(GroupMatch()),
    ]
    assert choose_group(matchers, "a.x1", None, None) == 0
    assert choose_group(matchers, "b.1", None, None) == 1
    assert choose_group(matchers, "c.1", None, None) == 2


def test_peer_addresses_parse() -> None:
    assert parse_source("10.0.0.1:5555") == IP("10.0.0.1")
    assert parse_source("[::1]:5555") == IP("::1")
    assert parse_source("?") is None


def test_a_down_route_gives_its_weight_to_the_others_in_proportion() -> None:
    assert route_fractions([70, 30], [True, True]) == [0.7, 0.3]
    assert route_fractions([50, 30, 20], [False, True, True]) == [0.0, 0.6, 0.4]
    assert route_fractions([50, 50], [False, False]) == [0.0, 0.0]


def test_phases_are_stable_and_spread() -> None:
    assert slice_phase("acct.rig-1") == slice_phase("acct.rig-1")
    phases = [slice_phase(f"acct.rig-{i}") for i in range(10_000)]
    assert all(0 <= p < 1 for p in phases)
    # Evenly spread: each tenth of the slice holds about a tenth of the miners (5 sigma).
    for decile in range(10):
        count = sum(decile / 10 <= p < (decile + 1) / 10 for p in phases)
        assert abs(count - 1000) < 5 * (10_000 * 0.1 * 0.9) ** 0.5


def test_a_time_split_miner_spends_each_routes_fraction_of_every_slice() -> None:
    fractions = [0.7, 0.3]
    for phase in (0.0, 0.123, 0.69, 0.99):
        on = [0.0, 0.0]
        steps = 6000
        for step in range(steps):
            now = 1000.0 + step * 0.01  # one slice of 60 s
            route = time_route(fractions, phase, now, 60.0)
            assert route is not None
            on[route] += 1
        assert on[0] / steps == pytest.approx(0.7, abs=0.001)


def test_the_groups_split_holds_at_every_moment() -> None:
    fractions = [0.7, 0.3]
    phases = [slice_phase(f"acct.rig-{i}") for i in range(2000)]
    for now in (0.0, 13.0, 31.5, 59.9):
        on_first = sum(time_route(fractions, p, now, 60.0) == 0 for p in phases)
        assert abs(on_first / 2000 - 0.7) < 0.05


def test_next_switch_is_when_the_route_changes() -> None:
    fractions = [0.7, 0.3]
    phase = 0.25
    now = 10.0
    switch = next_switch(fractions, phase, now, 60.0)
    assert now < switch <= now + 60.0
    before = time_route(fractions, phase, switch - 1e-6, 60.0)
    after = time_route(fractions, phase, switch + 1e-6, 60.0)
    assert before != after
    assert time_route(fractions, phase, now, 60.0) == before


def test_no_route_up_means_no_route() -> None:
    assert time_route([0.0, 0.0], 0.5, 1.0, 60.0) is None
    assert pick_route([0.0, 0.0], [1.0, 2.0]) is None


def test_a_new_miner_goes_where_the_split_is_short() -> None:
    assert pick_route([0.7, 0.3], [0.0, 0.0]) == 0
    assert pick_route([0.7, 0.3], [70.0, 20.0]) == 1
    assert pick_route([0.7, 0.3], [60.0, 30.0]) == 0
    assert pick_route([0.0, 1.0], [0.0, 50.0]) == 1


def _split(routes: list[int], rates: list[float], count: int) -> list[float]:
    total = sum(rates)
    return [sum(r for m, r in zip(routes, rates, strict=True) if m == k) / total for k in range(count)]


def test_a_miners_split_converges_on_hashrate_not_miner_counts() -> None:
    rng = random.Random(7)
    rates = [rng.uniform(10, 100) for _ in range(100)]  # spread 10x
    routes = [0] * 100
    fractions = [0.7, 0.3]
    for _minute in range(10):
        for miner, route in plan_moves(routes, rates, fractions, move_budget(100, 0)):
            routes[miner] = route
    assert _split(routes, rates, 2)[0] == pytest.approx(0.7, abs=MINERS_BAND)


def test_two_big_miners_at_100_25_are_not_rounded_to_all_or_half() -> None:
    # Two equal miners cannot split 80/20; the plan leaves the best it can do alone.
    routes, rates = [0, 0], [100.0, 100.0]
    moves = plan_moves(routes, rates, [0.8, 0.2], 2)
    assert moves == []  # moving one would give 50/50: worse than 100/0 for 80/20


def test_inside_the_band_nothing_moves() -> None:
    rates = [10.0] * 100
    routes = [0] * 70 + [1] * 30
    assert plan_moves(routes, rates, [0.7, 0.3], 25) == []
    routes = [0] * 71 + [1] * 29  # one point off: still within the band
    assert plan_moves(routes, rates, [0.7, 0.3], 25) == []


def test_moves_are_capped_by_the_budget() -> None:
    rates = [10.0] * 100
    routes = [0] * 100
    assert len(plan_moves(routes, rates, [0.5, 0.5], 25)) == 25
    assert move_budget(100, 0) == 25
    assert move_budget(100, 20) == 5
    assert move_budget(100, 30) == 0
    assert move_budget(2, 0) == 1


def test_miners_on_a_down_route_all_move() -> None:
    rates = [10.0] * 10
    routes = [1] * 10
    moves = plan_moves(routes, rates, [1.0, 0.0], 10)
    assert sorted(m for m, _ in moves) == list(range(10))
    assert {r for _, r in moves} == {0}


def test_a_weight_change_rebalances_with_the_fewest_moves() -> None:
    rates = [10.0] * 100
    routes = [0] * 70 + [1] * 30
    moves = plan_moves(routes, rates, [0.5, 0.5], 100)
    assert all(routes[m] == 0 and r == 1 for m, r in moves)  # only from the route over target
    assert len(moves) == 19  # 51/49: the band ends it one miner short of exact
    for miner, route in moves:
        routes[miner] = route
    assert _split(routes, rates, 2)[0] == pytest.approx(0.5, abs=MINERS_BAND + 1e-9)


def test_miners_that_cannot_move_count_but_stay() -> None:
    rates = [10.0] * 10
    routes = [0] * 10
    movable = [False] * 5 + [True] * 5
    moves = plan_moves(routes, rates, [0.5, 0.5], 10, movable=movable)
    assert moves and all(movable[m] for m, _ in moves)
    assert len(moves) == 5
    assert plan_moves(routes, rates, [0.5, 0.5], 10, movable=[False] * 10) == []
