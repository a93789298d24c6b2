"""Where every miner mines: its group, its route, and the seat that carries it out.

Every miner is in a group (``default`` unless a ``[[groups]]`` entry matches it) and mines
for one of its routes. A route is a failover chain of pools: it is served by its first
ready pool; when that fails (connect error, handshake failure, silence) the next ready one
takes over at once, and a pool higher in the chain takes back over once it has been
healthy for ``primary_hold`` seconds (the pure choice is :func:`policy.choose_active`).
Without ``[[groups]]`` this is plain priority failover over every pool. Moves keep the
miner's connection wherever the extranonce layout allows (docs/protocol.md).

A miner is placed at subscribe on a guess (its group without the worker criterion) and
placed for good at authorize, when its worker name is known. A weighted group then moves
it: a time split at its slice boundaries, a miners split when the measured hashrate of a
route drifts off its weight (:mod:`proxy.routing.groups` decides, this carries it out).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog

from proxy.config_groups import RouteConfig
from proxy.routing import policy
from proxy.routing.groups import Group, GroupTable, Route
from proxy.routing.ports import PlacedMiner
from proxy.routing.seats import Seats
from proxy.routing.state import Conn, PoolState, health_of
from proxy.stats import Tally

if TYPE_CHECKING:
    from proxy.config import Config

log = structlog.get_logger("proxy.pools")

UNROUTED = Tally()
"""Where the work of a miner on a pool outside its group's routes goes (counted nowhere)."""


class Router:
    """The only owner of placement: which group, route and seat every miner has."""

    def __init__(
        self,
        config: Callable[[], Config],
        groups: GroupTable,
        clock: Callable[[], float],
        open_pool: Callable[[PoolState], None],
    ) -> None:
        self.config = config  # the config in force (a reload swaps it on the owner)
        self.groups = groups
        self.clock = clock
        self._open = open_pool  # ask for one more connection to a pool
        self.seats = Seats()
        self._group_of: dict[PlacedMiner, Group] = {}
        self.replace_all = False  # a reload or new weights: check every miner's place

    @property
    def active(self) -> PoolState | None:
        """The pool the ``default`` group's first route mines on (the only route without
        ``[[groups]]``), else the first pool serving any route."""
        default = self.groups.groups[-1].routes[0].serving
        return default or next((r.serving for r in self.groups.routes() if r.serving is not None), None)

    @property
    def orphans(self) -> set[PlacedMiner]:
        """Miners waiting for a pool: their connection died and no route was up."""
        return self.seats.orphans

    def serving(self) -> set[PoolState]:
        """Every pool that serves a route now."""
        return {r.serving for r in self.groups.routes() if r.serving is not None}

    def attach(self, session: PlacedMiner, preferred: bytes | None = None) -> Conn | None:
        """Subscribe: a first place, on the route a miner of its address and listener
        would get (the worker is not known yet); refined at :meth:`place`."""
        group = self.groups.group_for(None, session.peer, session.listener)
        route = group.guess_route()
        pool = None if route is None else route.serving
        if pool is None:
            return None
        seat = self.seats.free_seat(pool, preferred)
        if seat is None:
            self._open(pool)  # all full: grow the pool by one connection
            return None
        conn, prefix = seat
        self.seats.put(session, conn, prefix, group.tally(pool))
        return conn

    async def attach_wait(self, session: PlacedMiner, preferred: bytes | None, timeout: float) -> Conn | None:
        """Wait up to ``timeout`` for room on a pool of the miner's group."""
        deadline = self.clock() + timeout
        while not session.closing:
            conn = self.attach(session, preferred)
            if conn is not None:
                return conn
            remaining = deadline - self.clock()
            if remaining <= 0:
                return None
            self.seats.capacity.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.seats.capacity.wait(), min(remaining, 1.0))
        return None

    def place(self, session: PlacedMiner, worker: str) -> None:
        """Authorize: the worker is known, so its group and route are; move it there (it
        has no work yet, so nothing is lost). A miner that would need an extranonce it
        cannot be told stays where it is and is split by whole miners."""
        now = self.clock()
        group = self.groups.group_for(worker, session.peer, session.listener)
        old = self._group_of.get(session)
        if old is not None and old is not group:
            old.leave(session)
        self._group_of[session] = group
        member = group.join(session, worker, now)
        conn = self.seats.conn_of(session)
        if conn is None:
            return
        target = group.routes[member.route].serving
        if target is None or target is conn.state:
            session.tally = group.tally(conn.state) if target is not None else session.tally
            return
        if self.seats.move(
            session, target, group.tally(target), keep_layout=not session.extranonce_subscribed
        ):
            return
        here = group.route_of_pool(conn.state)
        if here is None or group.routes[here].serving is not conn.state:
            # Its pool is none of its group's: it has no work yet, so a reconnect to a
            # fresh place (on its route's pool, the worker known from then on) costs little.
            self.move(session, target)
            return
        member.pinned = group.time_split  # it cannot follow slices: split as a whole miner
        member.route = here
        session.tally = group.tally(conn.state)

    def detach(self, session: PlacedMiner) -> None:
        """The miner left: free its place."""
        self.seats.remove(session)
        group = self._group_of.pop(session, None)
        if group is not None:
            group.leave(session)

    def move(self, session: PlacedMiner, target: PoolState) -> None:
        """Failover, failback, relayout: move a miner to ``target``, telling it what
        changed (a new extranonce where it can be told, else a reconnect)."""
        group = self._group_of.get(session)
        tally = (
            group.tally(target) if group is not None and group.route_of_pool(target) is not None else UNROUTED
        )
        if self.seats.move(session, target, tally, keep_layout=False):
            return
        self._open(target)
        session.reconnect()  # no room right now: the miner comes back to a fresh slot

    def switch(self, session: PlacedMiner, group: Group, route: int) -> bool:
        """A weighted split's move (a slice boundary, a rebalance): only where the miner
        keeps its extranonce or can be told a new one. One that cannot follow is pinned:
        a time-split miner is split as a whole miner from then on, and a miners split
        plans without it. True when the miner mines for ``route`` now."""
        member = group.members.get(session)
        target = group.routes[route].serving
        conn = self.seats.conn_of(session)
        if member is None or target is None or conn is None or not session.mining:
            return False
        if conn.state is target:
            member.route = route
            return True
        if self.seats.move(
            session, target, group.tally(target), keep_layout=not session.extranonce_subscribed
        ):
            member.route = route
            return True
        member.pinned = True
        return False

    def rehome(self, conn: Conn) -> None:
        """Move the miners of a connection that is going away to the best place left."""
        self.settle(self.clock())  # the pool may no longer serve its routes
        for session in self.seats.miners_of(conn):
            # A connection still open (asked to reconnect) stays the miner's previous
            # one, so shares on its jobs get the pool's verdict.
            target = self._target(session)
            if target is not None:
                self.move(session, target)
            elif conn.closed:
                self.seats.remove(session)
                session.detached()
                self.seats.orphans.add(session)
            # else: sent away with nowhere else to go: it mines its jobs until it closes
        if conn.closed:
            conn.miners.clear()

    def _target(self, session: PlacedMiner) -> PoolState | None:
        """Where a miner whose place is going away goes: its route's pool, else the
        route its group gives it now, else (before authorize) its guessed group's."""
        group = self._group_of.get(session)
        if group is None:
            group = self.groups.group_for(None, session.peer, session.listener)
            return next((r.serving for r in group.routes if r.serving is not None), None)
        member = group.members.get(session)
        if member is None:
            return None
        route = group.routes[member.route]
        if route.serving is None:
            index = group.want(member, self.clock(), new=True)
            if index is None:
                return None
            member.route = index
            route = group.routes[index]
        return route.serving

    def settle(self, now: float) -> None:
        """Carry out the policy's choice of pool for every route (failover, failback), and
        re-place the miners whose route changed pool, went down or came back."""
        hold = self.config().upstream.primary_hold
        for group in self.groups.groups:
            changed = self._serve(group, now, hold)
            if changed:
                group.reset_slices()
            if changed or self.replace_all:
                self._replace(group, now)
        self.replace_all = False
        for session in list(self.seats.orphans):
            target = None if session.closing else self._target(session)
            if target is not None:
                self.move(session, target)

    def _serve(self, group: Group, now: float, hold: float) -> bool:
        """Choose the pool serving each route of ``group``; True when one changed."""
        chosen = [self._choose(route, now, hold, degraded_too=False) for route in group.routes]
        if all(pool is None for pool in chosen):
            # No route has a healthy pool: a degraded one beats none (as a last resort
            # it serves; the group's miners are not parked over a reject storm).
            chosen = [self._choose(route, now, hold, degraded_too=True) for route in group.routes]
        changed = False
        for route, pool in zip(group.routes, chosen, strict=True):
            if pool is not route.serving:
                if pool is not None and route.serving is not None:
                    log.warning("route pool", group=group.name, pool=pool.name, previous=route.serving.name)
                route.serving, changed = pool, True
        return changed

    @staticmethod
    def _choose(route: Route, now: float, hold: float, *, degraded_too: bool) -> PoolState | None:
        """The pool that should serve ``route`` now (None: none of its pools is up)."""
        health, index = health_of(route.chain, route.serving, degraded_too=degraded_too)
        chosen = policy.choose_active(health, index, now, hold)
        return route.chain[chosen] if chosen is not None and health[chosen].ready else None

    def _replace(self, group: Group, now: float) -> None:
        """Move every miner of ``group`` whose pool serves none of its routes now
        (failover and failback move them whatever their layout, as without groups). A
        miner on a pool that serves one is left there, mining for that route: a weighted
        split moves it on from there (its next slice, the next rebalance)."""
        for session, member in list(group.members.items()):
            conn = self.seats.conn_of(session)
            if conn is None or session.closing:
                continue
            here = group.route_of_pool(conn.state)
            if here is not None and group.routes[here].serving is conn.state:
                if member.route != here:
                    member.route = here  # where it is; its slice moves it on from here
                    group.recheck(session)
                continue
            if group.routes[member.route].serving is None:
                index = group.want(member, now, new=True)
                if index is None:
                    continue  # no route is up: they stay on what they have
                member.route = index
            target = group.routes[member.route].serving
            if target is not None and target is not conn.state:
                self.move(session, target)

    def set_routes(
        self, name: str, routes: Sequence[RouteConfig], pools: Sequence[PoolState], who: str
    ) -> Group | None:
        """``PUT /api/v1/groups/{name}``: new routes for a group (checked by the caller),
        applied now; a reload puts the file's back."""
        group = self.groups.by_name(name)
        if group is None:
            return None
        group.replace_routes(routes, {p.name: p for p in pools}, who, self.clock())
        log.warning(
            "group routes replaced", group=name, by=who, routes=[[r.weight, *r.pools] for r in routes]
        )
        self.replace_all = True
        self.settle(self.clock())
        return group

    def regroup(self, groups: GroupTable) -> None:
        """A reload: new groups from the file; every authorized miner joins its group
        again (a miners split keeps it on its pool's route while that is up)."""
        groups.adopt(self.groups)
        now = self.clock()
        hold = self.config().upstream.primary_hold
        for group in groups.groups:
            self._serve(group, now, hold)  # before members join: they join routes that are up
        for session, old in list(self._group_of.items()):
            worker = session.worker
            if worker is None:
                del self._group_of[session]
                continue
            group = self._group_of[session] = groups.group_for(worker, session.peer, session.listener)
            seat = self.seats.conn_of(session)
            member = group.join(session, worker, now, at=seat.state if seat is not None else None)
            previous = old.members.get(session)
            member.pinned = previous is not None and previous.pinned  # its layout has not changed
        self.groups = groups
        self.replace_all = True

    def run_splits(self, now: float) -> None:
        """Periodic: measure every group, and move the miners its split moves now."""
        for group in self.groups.groups:
            group.sample(now)
            for session, route in group.due_switches(now):
                self.switch(session, group, route)
            for session, route in group.rebalance(now):
                if self.switch(session, group, route):
                    group.recent_moves.append(now)  # the budget counts moves made

    def needed(self) -> set[PoolState]:
        """The pools some route wants a connection to: each chain down to its serving
        pool (all of it while none serves), to know when a better one recovers."""
        needed: set[PoolState] = set()
        for route in self.groups.routes():
            health, index = health_of(route.chain, route.serving)
            needed.update(route.chain[: policy.keep_open(health, index)])
        return needed
