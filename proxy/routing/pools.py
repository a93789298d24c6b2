"""Where every miner mines: groups, routes, failover, and the connections behind them.

Every miner is in a group (``default`` unless a ``[[groups]]`` entry matches it) and mines
for one of its routes. A route is a failover chain of pools: it is served by its first
ready pool; when that fails (connect error, handshake failure, silence) the next ready one
takes over at once, and a pool higher in the chain takes back over once it has been
healthy for ``primary_hold`` seconds. Without ``[[groups]]`` this is plain priority
failover over every pool. Moves keep the miner's connection wherever the extranonce
layout allows (docs/protocol.md).

A miner is placed at subscribe on a guess (its group without the worker criterion) and
placed for good at authorize, when its worker name is known. A weighted group then moves
it: a time split at its slice boundaries, a miners split when the measured hashrate of a
route drifts off its weight.

Within a pool, miners fill connections up to the extranonce prefix space; a new
connection opens when all are full (or one per miner, when the pool's extranonce2 is too
small to split).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog

from proxy.config_groups import RouteConfig
from proxy.mining.job import JobIds
from proxy.routing import policy
from proxy.routing.connector import PoolConnector
from proxy.routing.groups import Group, GroupTable, Route
from proxy.routing.ports import PlacedMiner
from proxy.routing.seats import Seats
from proxy.routing.state import Conn, PoolState, health_of, rebuild_pools
from proxy.stats import Tally
from proxy.stratum.codec import ShareReply
from proxy.upstream.submits import PendingShare

if TYPE_CHECKING:
    from proxy.config import Config

log = structlog.get_logger("proxy.pools")

DEFAULT_VERSION_MASK = 0x1FFFE000
"""What we offer a miner that configures before any pool has answered: BIP320's bits,
which every pool that rolls grants. Corrected with set_version_mask if the pool differs."""

UNROUTED = Tally()
"""Where the work of a miner on a pool outside its group's routes goes (counted nowhere)."""


class PoolManager:
    """Owns every upstream connection and carries out where miners go."""

    def __init__(self, config: Config, *, clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self.clock: Callable[[], float] = clock or asyncio.get_running_loop().time
        self.ids = JobIds()
        self.pools = [PoolState(p, i) for i, p in enumerate(config.pools)]
        self.removed_pools: list[PoolState] = []  # removed by a reload, connections closing
        self.groups = GroupTable(config.routing_groups, self.pools)
        self.seats = Seats()
        self._group_of: dict[PlacedMiner, Group] = {}
        self.connector = PoolConnector(self, self.ids, self.clock)
        self._last_mask = DEFAULT_VERSION_MASK
        self._closing = False
        self._replace_all = False  # a reload or new weights: check every miner's place
        self.needed: set[PoolState] = set()  # pools some route wants a connection to
        # Told the pool and the seconds of every verdict on a forwarded share (metrics).
        self.on_settle: Callable[[PoolState, float], None] | None = None

    # ------------------------------------------------------------------ views

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

    @property
    def version_mask(self) -> int:
        """What a miner that configures before it has a pool connection is offered: the
        mask of the last connection that became ready. The miner is told the real mask
        with set_version_mask once it is placed, if that differs."""
        return self._last_mask

    # ------------------------------------------------------------------ miners

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
            self.connector.open(pool)  # all full: grow the pool by one connection
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
        if not self.seats.move(
            session, target, group.tally(target), keep_layout=not session.extranonce_subscribed
        ):
            here = group.route_of_pool(conn.state)
            member.pinned = group.time_split
            if here is not None:
                member.route = here
            session.tally = group.tally(conn.state) if here is not None else UNROUTED

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
        self.connector.open(target)
        session.reconnect()  # no room right now: the miner comes back to a fresh slot

    def _switch(self, session: PlacedMiner, group: Group, route: int) -> None:
        """A weighted split's move (a slice boundary, a rebalance): only where the miner
        keeps its extranonce or can be told a new one; a time-split miner that cannot
        follow is pinned (split by whole miners from then on)."""
        member = group.members.get(session)
        target = group.routes[route].serving
        conn = self.seats.conn_of(session)
        if member is None or target is None or conn is None or not session.mining:
            return
        if conn.state is target:
            member.route = route
            return
        if self.seats.move(
            session, target, group.tally(target), keep_layout=not session.extranonce_subscribed
        ):
            member.route = route
        elif group.time_split:
            member.pinned = True

    # ------------------------------------------------------------------ connections

    def upstream_ready(self, conn: Conn) -> None:
        """A connection finished its handshake and has a job."""
        if conn.retired or conn.closing or conn.state.removed:
            if not conn.closing and not conn.miners:
                conn.retire()
            return
        pool = conn.state
        pool.backoff = 0.0
        pool.resubmit_carried(conn)
        self._last_mask = conn.version_mask
        if pool.healthy_since is None:
            pool.healthy_since = self.clock()
        self._settle(self.clock())
        self.seats.capacity.set()  # subscribes waiting for a pool retry now

    def upstream_lost(self, conn: Conn) -> None:
        """A connection closed: carry its shares in flight, move its miners, back off if
        it never worked."""
        pool = conn.state
        resumable = not self._closing and not pool.removed
        upstream = self.config.upstream
        # How long a resume may take: the pool's wait, a connect and a handshake.
        deadline = max(pool.retry_at, self.clock()) + upstream.connect_timeout + upstream.handshake_timeout
        pool.connection_lost(conn, resumable=resumable, resume_until=deadline)
        if conn in pool.connections:
            pool.connections.remove(conn)
        if not conn.retired and not self._closing and not pool.removed:
            self.connector.failed(pool)
        if not pool.is_ready:
            pool.healthy_since = None
        self._rehome(conn)

    def carry(self, conn: Conn, share: PendingShare) -> None:
        """A share for a connection the pool sent away: kept for the session's resume."""
        conn.state.carry(conn, share)

    def upstream_subscribed(self, conn: Conn) -> None:
        """A new connection has its layout: it may resume the one the pool sent away."""
        conn.state.maybe_resume(conn)

    def upstream_leaving(self, conn: Conn) -> None:
        """The pool asked ``conn`` to reconnect (it is retired): its miners move now, as if
        it were lost; it closes once the shares in flight on it are answered."""
        if not conn.pending:
            conn.close()  # connection_lost re-homes the miners
            return
        self._rehome(conn)

    def _rehome(self, conn: Conn) -> None:
        """Move the miners of a connection that is going away to the best place left."""
        if self._closing:
            conn.miners.clear()
            return
        self._settle(self.clock())  # the pool may no longer serve its routes
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

    def relayout(self, conn: Conn) -> None:
        """The pool changed the extranonce layout of ``conn``: re-place its miners."""
        sessions = self.seats.miners_of(conn)
        conn.miners.clear()
        pool = conn.state
        for session in sessions:
            # Off the old layout without releasing a prefix or retiring the connection:
            # its allocator is new, and it stays the pool's connection.
            self.seats.forget(session)
            session.detached()
            self.move(session, pool)

    def pool_redirect(self, conn: Conn, host: str | None, port: int | str | None, wait: float) -> None:
        """``client.reconnect`` from a pool: same host only, unless redirects are allowed."""
        pool = conn.state
        home = (pool.config.host, pool.config.port)
        pool.redirect = policy.redirect_target(
            home, host, port, allow_other_hosts=self.config.upstream.allow_redirect
        )
        if pool.redirect is None and host and host != home[0]:
            log.warning("ignoring pool redirect to another host", pool=pool.name, host=host)
        pool.retry_at = self.clock() + policy.redirect_wait(wait)
        conn.retire()  # not a failure: no backoff

    # ------------------------------------------------------------------ routes

    def _settle(self, now: float) -> None:
        """Carry out the policy's choice of pool for every route (failover, failback), and
        re-place the miners whose route changed pool, went down or came back."""
        hold = self.config.upstream.primary_hold
        for group in self.groups.groups:
            changed = [route for route in group.routes if self._choose(route, now, hold)]
            if changed:
                group.reset_slices()
            if changed or self._replace_all:
                self._replace(group, now)
        self._replace_all = False
        for session in list(self.seats.orphans):
            target = None if session.closing else self._target(session)
            if target is not None:
                self.move(session, target)

    def _choose(self, route: Route, now: float, hold: float) -> bool:
        """Pick the pool serving ``route``; True when it changed."""
        health, index = health_of(route.chain, route.serving)
        chosen = policy.choose_active(health, index, now, hold)
        pool = route.chain[chosen] if chosen is not None and health[chosen].ready else None
        if pool is route.serving:
            return False
        if pool is not None and route.serving is not None:
            log.warning("route pool", pool=pool.name, previous=route.serving.name)
        route.serving = pool
        return True

    def _replace(self, group: Group, now: float) -> None:
        """Move every miner of ``group`` that is not on its route's pool (failover and
        failback move them whatever their layout, as without groups)."""
        for session, member in list(group.members.items()):
            conn = self.seats.conn_of(session)
            if conn is None or session.closing:
                continue
            if group.routes[member.route].serving is None:
                index = group.want(member, now, new=True)
                if index is None:
                    continue  # no route is up: they stay on what they have
                member.route = index
            target = group.routes[member.route].serving
            if target is not None and target is not conn.state:
                self.move(session, target)

    def set_routes(self, name: str, routes: Sequence[RouteConfig], who: str) -> Group | None:
        """``PUT /api/v1/groups/{name}``: new routes for a group (checked by the caller),
        applied now; a reload puts the file's back."""
        group = self.groups.by_name(name)
        if group is None:
            return None
        group.replace_routes(routes, {p.name: p for p in self.pools}, who)
        log.warning(
            "group routes replaced", group=name, by=who, routes=[[r.weight, *r.pools] for r in routes]
        )
        self._replace_all = True
        self._settle(self.clock())
        self._maintain()
        return group

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded config: pools added, removed, reordered or changed; groups
        rebuilt from the file (weights set through the API are replaced).

        A pool whose URL or credentials changed is a new pool as far as connections go.
        Miners stay on a removed pool's connection, mining valid work, until another pool
        is ready; then they move exactly as on failover (no disconnect where the layout
        allows, shares in flight answered). Timeouts and backoff are read from
        ``self.config`` as they are used, so they apply from the next use on.
        """
        pools, removed = rebuild_pools(self.pools, config.pools)
        self.config = config
        self.pools = pools
        for state in removed:
            state.removed = True
            self.removed_pools.append(state)
            if state not in self.serving():
                for conn in state.connections:
                    conn.retire()
        old, self.groups = self.groups, GroupTable(config.routing_groups, pools)
        self.groups.adopt(old)
        now = self.clock()
        for session, group in list(self._group_of.items()):
            group.leave(session)
            worker = session.worker
            if worker is None:
                continue
            new = self._group_of[session] = self.groups.group_for(worker, session.peer, session.listener)
            seat = self.seats.conn_of(session)
            new.join(session, worker, now, at=seat.state if seat is not None else None)
        self._replace_all = True
        self._settle(now)
        self._maintain()

    def tick(self) -> None:
        """Periodic: timeouts, failover and failback, weighted splits, connections."""
        now = self.clock()
        for pool in (*self.pools, *self.removed_pools):
            pool.expire_carried(now, self.config.server.submit_timeout)
        self.removed_pools = [p for p in self.removed_pools if p.connections or p.carried]
        for pool in (*self.pools, *self.removed_pools):
            for conn in list(pool.connections):
                conn.sweep(now)
        self._settle(now)
        for group in self.groups.groups:
            group.sample(now)
            for session, route in (*group.due_switches(now), *group.rebalance(now)):
                self._switch(session, group, route)
        self._maintain()

    def _maintain(self) -> None:
        """Keep the connections the routes want open, retire idle ones no route wants."""
        if self._closing:
            return
        needed: set[PoolState] = set()
        for route in self.groups.routes():
            health, index = health_of(route.chain, route.serving)
            needed.update(route.chain[: policy.keep_open(health, index)])
        self.needed = needed
        for pool in self.pools:
            if pool in needed:
                if not any(not c.retired for c in pool.connections):
                    self.connector.open(pool)
            else:
                for conn in pool.connections:
                    if not conn.miners:
                        conn.retire()

    def share_settled(self, conn: Conn, reply: ShareReply | None, latency: float) -> None:
        """Count the pool's verdict on a forwarded share."""
        if reply is not None:
            conn.state.count_verdict(reply.accepted, latency)
            if self.on_settle is not None:
                self.on_settle(conn.state, latency)

    def start(self) -> None:
        """Open the first connections; :meth:`tick` keeps them from then on."""
        self._maintain()

    def close(self) -> None:
        """Shutdown: answer every forwarded share in flight, close every connection."""
        self._closing = True
        self.connector.close()
        for pool in (*self.pools, *self.removed_pools):
            pool.flush_carried()
            for conn in list(pool.connections):
                conn.shares.flush_pending()
                conn.close()
