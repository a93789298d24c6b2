"""proxy.routing.groups: a group's members, slices, rebalancing and realised split, with
fake time and fake miners (no sockets)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from proxy.config import PoolConfig
from proxy.config_groups import GroupConfig, RouteConfig
from proxy.routing.groups import REBALANCE_SECONDS, SAMPLE_SECONDS, Group
from proxy.routing.state import PoolState


class FakeMiner:
    """What a group reads of a miner: its accepted work so far."""

    def __init__(self, work: float = 0.0) -> None:
        self.work = work


def pools() -> dict[str, PoolState]:
    configs = [
        PoolConfig(name=n, url=f"stratum+tcp://127.0.0.1:{i + 1}", user="u") for i, n in enumerate("ab")
    ]
    return {c.name: PoolState(c, i) for i, c in enumerate(configs)}


def group(split: str, weights: tuple[float, float] = (70, 30), slice_seconds: float = 60) -> Group:
    config = GroupConfig(
        name="site",
        split=split,  # type: ignore[arg-type]
        slice_seconds=slice_seconds,
        routes=(RouteConfig(weight=weights[0], pools=("a",)), RouteConfig(weight=weights[1], pools=("b",))),
    )
    by_name = pools()
    made = Group(config, by_name)
    for route in made.routes:
        route.serving = route.chain[0]  # both up
    return made


def join(g: Group, count: int, now: float = 0.0) -> list[Any]:
    miners = [FakeMiner() for _ in range(count)]
    for i, miner in enumerate(miners):
        g.join(cast(Any, miner), f"acct.rig-{i}", now)
    return miners


def test_time_split_members_switch_at_their_own_slice_boundaries() -> None:
    g = group("time")
    miners = join(g, 200)
    on_first = {m: g.members[m].route == 0 for m in miners}
    assert 0.6 < sum(on_first.values()) / 200 < 0.8  # staggered: the split holds now
    seconds_on_first = dict.fromkeys(miners, 0.0)
    switches = 0
    for step in range(1, 601):  # one slice in steps of 0.1 s
        now = step * 0.1
        for miner, route in g.due_switches(now):
            g.members[miner].route = route  # what the router does once the move is made
            switches += 1
        for miner in miners:
            if g.members[miner].route == 0:
                seconds_on_first[miner] += 0.1
    # Every miner spent 70% of the slice on the first route, and switched twice at most.
    assert all(abs(s - 42.0) <= 0.3 for s in seconds_on_first.values())
    assert switches <= 2 * 200


def test_time_split_phases_do_not_depend_on_when_miners_join() -> None:
    early, late = group("time"), group("time")
    a, b = FakeMiner(), FakeMiner()
    early.join(cast(Any, a), "acct.rig-7", 0.0)
    late.join(cast(Any, b), "acct.rig-7", 0.0)
    assert early.members[cast(Any, a)].phase == late.members[cast(Any, b)].phase


def test_a_route_going_down_takes_its_members_at_the_next_tick() -> None:
    g = group("time")
    miners = join(g, 50)
    g.routes[1].serving = None
    g.reset_slices()
    moves = g.due_switches(1.0)
    assert {route for _, route in moves} <= {0}
    for miner, route in moves:
        g.members[miner].route = route
    assert all(g.members[m].route == 0 for m in miners)
    assert g.fractions() == [1.0, 0.0]


def test_new_miners_of_a_miners_split_fill_the_route_below_its_part() -> None:
    g = group("miners")
    join(g, 10)
    assert sorted(m.route for m in g.members.values()) == [0] * 7 + [1] * 3


def test_a_miners_split_rebalances_on_measured_hashrate_within_its_budget() -> None:
    g = group("miners", (50, 50))
    miners = join(g, 8)
    for miner in miners:
        g.members[miner].route = 0  # all on the first route, e.g. after the second came up
    g.sample(0.0)
    for miner in miners:
        miner.work = 100.0
    g.sample(SAMPLE_SECONDS)
    moves = g.rebalance(SAMPLE_SECONDS + REBALANCE_SECONDS)
    assert len(moves) == 2  # a quarter of 8 per minute
    assert g.rebalance(SAMPLE_SECONDS + REBALANCE_SECONDS + 1) == []  # not again so soon
    for miner, route in moves:
        g.members[miner].route = route
    later = g.rebalance(SAMPLE_SECONDS + 2 * REBALANCE_SECONDS)
    assert later == []  # the minute's budget is spent
    after_a_minute = g.rebalance(SAMPLE_SECONDS + REBALANCE_SECONDS + 61)
    assert len(after_a_minute) == 2


def test_realised_split_comes_from_the_work_per_pool() -> None:
    g = group("miners")
    assert g.realised(600.0, 0.0) == [None, None]
    g.sample(0.0)
    g.tally(g.routes[0].chain[0]).work += 70.0
    g.tally(g.routes[1].chain[0]).work += 30.0
    g.sample(SAMPLE_SECONDS)
    assert g.realised(600.0, SAMPLE_SECONDS) == pytest.approx([0.7, 0.3])


def test_new_routes_keep_members_on_the_route_of_their_pool() -> None:
    g = group("miners")
    miners = join(g, 10)
    on_b = {m for m in miners if g.members[m].route == 1}
    same_pools = {route.chain[0].name: route.chain[0] for route in g.routes}
    g.replace_routes(
        [RouteConfig(weight=1, pools=("b",)), RouteConfig(weight=1, pools=("a",))], same_pools, "test", 0.0
    )
    assert g.overridden_by == "test"
    # b is now the first route: its miners stay on it, the others on a's route.
    assert {m for m in miners if g.members[m].route == 0} == on_b
    assert [r.serving.name if r.serving else None for r in g.routes] == ["b", "a"]


def test_a_members_hashrate_is_measured_over_30_s_at_least() -> None:
    g = group("miners")
    (miner,) = join(g, 1)
    g.sample(0.0)
    miner.work = 50.0
    g.sample(SAMPLE_SECONDS)
    assert g.members[miner].rate == 0  # one 10 s sample: too few shares to say
    miner.work = 300.0
    g.sample(30.0)
    assert g.members[miner].rate == pytest.approx(10.0)  # 300 over its first 30 s
    miner.work = 300.0 + 10.0 * 120.0
    g.sample(150.0)
    assert g.members[miner].rate == pytest.approx(10.0)  # steady: the average holds
