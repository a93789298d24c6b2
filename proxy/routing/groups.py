"""Routing groups at run time: each group's routes, the pool serving each route, the
miners in the group and the route each mines for, and the work each route received.

A :class:`Group` decides; :class:`~proxy.routing.pools.PoolManager` carries its decisions
out (moves miners between connections). Decisions come from the pure functions of
:mod:`proxy.routing.split`, with ``now`` passed in.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from proxy.config_groups import GroupConfig, RouteConfig
from proxy.routing.ports import PlacedMiner
from proxy.routing.split import (
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
from proxy.routing.state import PoolState
from proxy.stats import Tally

SAMPLE_SECONDS: Final = 10.0
"""How often each group's work per pool is sampled, for the realised split and rates."""

WINDOWS: Final = {"10m": 600.0, "1h": 3600.0}
"""The windows the realised split is reported over."""

REBALANCE_SECONDS: Final = 15.0
"""How often a miners split is re-planned: four times within the budget's minute."""

FIRST_RATE_SECONDS: Final = 30.0
"""A new member's first hashrate is measured over this long at least (a miner at the usual
vardiff target sends a share every ~10 s: one sample would be three shares at best)."""

RATE_HALF_LIFE: Final = 120.0
"""Seconds for a miner's measured hashrate to forget half of its past (share noise)."""


class Route:
    """One route of a group: its weight and its failover chain of pools."""

    __slots__ = ("chain", "serving", "weight")

    def __init__(self, config: RouteConfig, pools: Mapping[str, PoolState]) -> None:
        self.weight = config.weight
        self.chain = [pools[name] for name in config.pools]
        self.serving: PoolState | None = None  # its first healthy pool, chosen by policy

    @property
    def pool_names(self) -> list[str]:
        """The chain, by name."""
        return [pool.name for pool in self.chain]


class Member:
    """One miner of a group: the route it mines for and what routing knows of it."""

    __slots__ = ("measured_from", "next_switch", "phase", "pinned", "rate", "route", "seen_work")

    def __init__(self, route: int, phase: float, now: float = 0.0) -> None:
        self.route = route
        self.phase = phase
        self.next_switch = 0.0  # time split: when its slice moves it to the next route
        self.rate = 0.0  # measured work per second (EWMA); 0 until measured
        self.seen_work = 0.0  # the miner's work counter when its current measure began
        self.measured_from = now  # when that measure began
        self.pinned = False  # its layout cannot follow a time split: split by whole miners


class Group:
    """A configured group (or ``default``) at run time."""

    def __init__(self, config: GroupConfig, pools: Mapping[str, PoolState]) -> None:
        self.config = config
        self.name = config.name
        self.matcher = Matcher(config.match)
        self.routes = [Route(r, pools) for r in config.routes]
        self.members: dict[PlacedMiner, Member] = {}
        # Accepted share difficulty by pool name: a pool is in one route of a group only,
        # so this is also the route's. Kept across weight changes and reloads.
        self.tallies: dict[str, Tally] = {}
        self.samples: deque[tuple[float, dict[str, float]]] = deque(maxlen=int(3600 / SAMPLE_SECONDS) + 2)
        self.recent_moves: deque[float] = deque()
        # Time split: (when, tiebreak, miner) of every member's next slice boundary, so a
        # tick looks only at the miners due (stale entries are skipped when popped).
        self._switches: list[tuple[float, int, PlacedMiner]] = []
        self._pushes = 0
        # Each route's hashrate as of the last sample, plus the newcomers since: a miner
        # joining reads it instead of summing the whole group (100,000 joins at start).
        self._loads_cache: list[float] | None = None
        self._mean_rate = 1.0
        self.last_plan = 0.0
        self.overridden_by: str | None = None  # who replaced the file's weights through the API

    @property
    def time_split(self) -> bool:
        """Each miner's time is split (else whole miners move)."""
        return self.config.split == "time"

    def tally(self, pool: PoolState) -> Tally:
        """The work counter of ``pool`` in this group (made on first use)."""
        tally = self.tallies.get(pool.name)
        if tally is None:
            tally = self.tallies[pool.name] = Tally()
        return tally

    def fractions(self) -> list[float]:
        """Each route's part of the group's hashrate now (a route with no pool up: 0)."""
        return route_fractions([r.weight for r in self.routes], [r.serving is not None for r in self.routes])

    def route_of_pool(self, pool: PoolState) -> int | None:
        """The route whose chain holds ``pool``."""
        return next((i for i, r in enumerate(self.routes) if pool in r.chain), None)

    # ------------------------------------------------------------------ members

    def guess_route(self) -> Route | None:
        """The route a miner joining now would most likely get (at subscribe, before its
        worker name is known): the one furthest below its part."""
        index = pick_route(self.fractions(), self._loads())
        return None if index is None else self.routes[index]

    def join(self, session: PlacedMiner, worker: str, now: float, *, at: PoolState | None = None) -> Member:
        """Take a miner in and give it a route (see :meth:`want`). ``at``: the pool it is
        on (a reload): a miners split keeps it on that pool's route while it is up."""
        loads = self._loads()  # before the newcomer counts in it
        member = self.members.get(session)
        if member is None:
            member = Member(0, slice_phase(worker), now)
            self.members[session] = member
            member.seen_work = session.work
        here = None if at is None else self.route_of_pool(at)
        if here is not None and not self.time_split and self.fractions()[here] > 0:
            member.route = here
        else:
            route = self.want(member, now, new=True)
            member.route = route if route is not None else (here or 0)
            if self.time_split and not member.pinned:
                self._schedule(session, member)
        if member.route < len(loads):
            loads[member.route] += member.rate or self._mean_rate
        return member

    def recheck(self, session: PlacedMiner) -> None:
        """Time split: look at this member's route at the next tick (it was found on
        another route than its slice's, e.g. after a reload)."""
        member = self.members.get(session)
        if member is not None and self.time_split and not member.pinned:
            member.next_switch = 0.0
            self._schedule(session, member)

    def replace_routes(
        self, routes: Sequence[RouteConfig], pools: Mapping[str, PoolState], who: str, now: float
    ) -> None:
        """New routes (the API): members keep the route that holds the pool they are on,
        else get one at the next settle; the pools' work counters carry on."""
        old = self.routes
        self.routes = [Route(r, pools) for r in routes]
        for route in self.routes:
            # A pool that served before serves on (its health has not changed).
            route.serving = next((r.serving for r in old if r.serving in route.chain), None)
        for member in self.members.values():
            pool = old[member.route].serving if member.route < len(old) else None
            index = None if pool is None else self.route_of_pool(pool)
            if index is None:  # its pool is in no route now: a route as for a newcomer
                member.route = 0
                index = self.want(member, now, new=True)
            member.route = index if index is not None else 0
        self.overridden_by = who
        self.reset_slices()

    def leave(self, session: PlacedMiner) -> None:
        """The miner left the group (disconnect, or a reload put it in another)."""
        member = self.members.pop(session, None)
        loads = self._loads_cache
        if member is not None and loads is not None and member.route < len(loads):
            loads[member.route] = max(0.0, loads[member.route] - (member.rate or self._mean_rate))

    def want(self, member: Member, now: float, *, new: bool = False) -> int | None:
        """The route a member should mine for now (None: no route is up)."""
        fractions = self.fractions()
        if self.time_split and not member.pinned:
            member.next_switch = next_switch(fractions, member.phase, now, self.config.slice_seconds)
            return time_route(fractions, member.phase, now, self.config.slice_seconds)
        if not new and fractions[member.route] > 0:
            return member.route  # whole miners move by plan only
        return pick_route(fractions, self._loads())

    def _loads(self) -> list[float]:
        """Each route's hashrate (a miner not measured yet counts as the mean), summed at
        the last sample and kept up to date by joins and leaves since."""
        if self._loads_cache is None or len(self._loads_cache) != len(self.routes):
            known = [m.rate for m in self.members.values() if m.rate > 0]
            self._mean_rate = sum(known) / len(known) if known else 1.0
            loads = [0.0] * len(self.routes)
            for member in self.members.values():
                if member.route < len(loads):
                    loads[member.route] += member.rate or self._mean_rate
            self._loads_cache = loads
        return self._loads_cache

    def _schedule(self, session: PlacedMiner, member: Member) -> None:
        """Remember when ``member`` next crosses a slice boundary."""
        self._pushes += 1
        heapq.heappush(self._switches, (member.next_switch, self._pushes, session))

    def due_switches(self, now: float) -> list[tuple[PlacedMiner, int]]:
        """Time split: the members whose slice moves them to another route now."""
        if not self.time_split:
            return []
        due = []
        switches = self._switches
        while switches and switches[0][0] <= now:
            when, _, session = heapq.heappop(switches)
            member = self.members.get(session)
            if member is None or member.pinned or member.next_switch != when:
                continue  # gone, pinned, or rescheduled since
            route = self.want(member, now)
            self._schedule(session, member)
            if route is not None and route != member.route:
                due.append((session, route))
        return due

    def rebalance(self, now: float) -> list[tuple[PlacedMiner, int]]:
        """Miners split: the moves that bring each route's measured hashrate to its part,
        within this minute's budget (members that could not be moved are left out)."""
        if now - self.last_plan < REBALANCE_SECONDS:
            return []
        self.last_plan = now
        while self.recent_moves and now - self.recent_moves[0] > 60.0:
            self.recent_moves.popleft()
        sessions = [s for s, m in self.members.items() if not self.time_split or m.pinned]
        if not sessions:
            return []
        members = [self.members[s] for s in sessions]
        known = [m.rate for m in members if m.rate > 0]
        mean = sum(known) / len(known) if known else 1.0
        budget = move_budget(len(self.members), len(self.recent_moves))
        plan = plan_moves(
            [m.route for m in members], [m.rate or mean for m in members], self.fractions(), budget
        )
        self.recent_moves.extend(now for _ in plan)
        return [(sessions[index], route) for index, route in plan]

    def reset_slices(self) -> None:
        """The fractions changed (a route went down or up, new weights): every time-split
        member re-reads its route at the next tick."""
        self._switches = []
        for session, member in self.members.items():
            member.next_switch = 0.0
            self._pushes += 1
            self._switches.append((0.0, self._pushes, session))
        self.last_plan = 0.0
        self._loads_cache = None

    # ------------------------------------------------------------------ measuring

    def sample(self, now: float) -> None:
        """Record the work per pool, and each member's measured hashrate."""
        last = self.samples[-1][0] if self.samples else None
        if last is not None and now - last < SAMPLE_SECONDS:
            return
        self.samples.append((now, {name: t.work for name, t in self.tallies.items()}))
        self._loads_cache = None  # rates change below: the next join sums afresh
        if last is None:
            return  # the first sample: a baseline for the realised split only
        for session, member in self.members.items():
            span = now - member.measured_from
            if member.rate == 0 and span < FIRST_RATE_SECONDS:
                continue  # too few shares yet to say: it counts as the group's mean
            work = session.work
            rate = (work - member.seen_work) / span if span > 0 else 0.0
            member.seen_work, member.measured_from = work, now
            keep = 0.5 ** (span / RATE_HALF_LIFE)
            member.rate = rate if member.rate == 0 else keep * member.rate + (1 - keep) * rate

    def realised(self, window: float, now: float) -> list[float | None]:
        """Each route's part of the group's accepted share difficulty over ``window``
        seconds (None while nothing was accepted in it)."""
        if not self.samples:
            return [None] * len(self.routes)
        start = self.samples[0][1]
        for when, values in self.samples:
            if now - when <= window:
                start = values
                break
        current = {name: t.work for name, t in self.tallies.items()}
        delta = [
            sum(current.get(n, 0.0) - start.get(n, 0.0) for n in route.pool_names) for route in self.routes
        ]
        total = sum(delta)
        return [d / total if total > 0 else None for d in delta]

    def work(self, route: Route) -> dict[str, float]:
        """Accepted share difficulty of each pool of ``route`` in this group, ever."""
        return {name: self.tallies[name].work for name in route.pool_names if name in self.tallies}

    def rate(self) -> float:
        """The group's measured work: accepted share difficulty per second."""
        return sum(m.rate for m in self.members.values())


class GroupTable:
    """Every group, in match order (``default`` last)."""

    def __init__(self, configs: Sequence[GroupConfig], pools: Iterable[PoolState]) -> None:
        by_name = {p.name: p for p in pools}
        self.groups = [Group(c, by_name) for c in configs]
        self._matchers = [g.matcher for g in self.groups]

    def group_for(self, worker: str | None, peer: str, listener: str | None) -> Group:
        """The group a miner is in (``worker`` None: a guess before authorize)."""
        return self.groups[choose_group(self._matchers, worker, parse_source(peer), listener)]

    def by_name(self, name: str) -> Group | None:
        """The group called ``name``."""
        return next((g for g in self.groups if g.name == name), None)

    def group_of(self, session: PlacedMiner) -> Group | None:
        """The group ``session`` is a member of (a scan: for rare events only)."""
        return next((g for g in self.groups if session in g.members), None)

    def routes(self) -> list[Route]:
        """Every route of every group."""
        return [route for group in self.groups for route in group.routes]

    def adopt(self, old: GroupTable) -> None:
        """A reload: keep the work counters and samples of groups that keep their name."""
        for group in self.groups:
            previous = old.by_name(group.name)
            if previous is None:
                continue
            group.tallies = previous.tallies
            group.samples = previous.samples
            for route in group.routes:
                # The same chain keeps its serving pool: a reload is not a failback.
                same = next((r for r in previous.routes if r.pool_names == route.pool_names), None)
                if same is not None and same.serving in route.chain:
                    route.serving = same.serving
