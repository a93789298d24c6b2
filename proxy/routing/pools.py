"""The pool connections: opened, kept, lost, and what their events mean for miners.

:class:`PoolManager` owns every upstream connection (the channels' owner) and hears what
happens to them; where the miners on them go is :class:`~proxy.routing.router.Router`'s
decision. Within a pool, miners fill connections up to the extranonce prefix space; a new
connection opens when all are full (or one per miner, when the pool's extranonce2 is too
small to split).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog

from proxy.config_groups import RouteConfig
from proxy.mining.job import JobIds
from proxy.routing import policy
from proxy.routing.connector import PoolConnector
from proxy.routing.groups import Group, GroupTable
from proxy.routing.health import HealthLimits
from proxy.routing.ports import PlacedMiner
from proxy.routing.router import Router
from proxy.routing.state import Conn, PoolState, rebuild_pools
from proxy.stratum.codec import ShareReply
from proxy.upstream.submits import PendingShare

if TYPE_CHECKING:
    from proxy.config import Config

log = structlog.get_logger("proxy.pools")

DEFAULT_VERSION_MASK = 0x1FFFE000
"""What we offer a miner that configures before any pool has answered: BIP320's bits,
which every pool that rolls grants. Corrected with set_version_mask if the pool differs."""


class PoolManager:
    """Owns every upstream connection; the router decides where miners go."""

    def __init__(self, config: Config, *, clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self.clock: Callable[[], float] = clock or asyncio.get_running_loop().time
        self.ids = JobIds()
        self.pools = [PoolState(p, i) for i, p in enumerate(config.pools)]
        self.removed_pools: list[PoolState] = []  # removed by a reload, connections closing
        self.connector = PoolConnector(self, self.ids, self.clock)
        groups = GroupTable(config.routing_groups, self.pools)
        self.router = Router(lambda: self.config, groups, self.clock, self.connector.open)
        self._last_mask = DEFAULT_VERSION_MASK
        self._closing = False
        self.needed: set[PoolState] = set()  # pools some route wants a connection to
        # Told the pool and the seconds of every verdict on a forwarded share (metrics).
        self.on_settle: Callable[[PoolState, float], None] | None = None

    # ------------------------------------------------------------------ views

    @property
    def active(self) -> PoolState | None:
        """The pool the ``default`` group's first route mines on (see the router)."""
        return self.router.active

    @property
    def groups(self) -> GroupTable:
        """Every routing group."""
        return self.router.groups

    @property
    def orphans(self) -> set[PlacedMiner]:
        """Miners waiting for a pool: their connection died and no route was up."""
        return self.router.seats.orphans

    @property
    def version_mask(self) -> int:
        """What a miner that configures before it has a pool connection is offered: the
        mask of the last connection that became ready. The miner is told the real mask
        with set_version_mask once it is placed, if that differs."""
        return self._last_mask

    # ------------------------------------------------------------------ miners (the router's)

    def attach(self, session: PlacedMiner, preferred: bytes | None = None) -> Conn | None:
        """Subscribe: a first place (see :meth:`Router.attach`)."""
        return self.router.attach(session, preferred)

    async def attach_wait(self, session: PlacedMiner, preferred: bytes | None, timeout: float) -> Conn | None:
        """Wait up to ``timeout`` for a first place."""
        return await self.router.attach_wait(session, preferred, timeout)

    def place(self, session: PlacedMiner, worker: str) -> None:
        """Authorize: the miner's group and route (see :meth:`Router.place`)."""
        self.router.place(session, worker)

    def detach(self, session: PlacedMiner) -> None:
        """The miner left: free its place."""
        self.router.detach(session)

    def set_routes(self, name: str, routes: Sequence[RouteConfig], who: str) -> Group | None:
        """``PUT /api/v1/groups/{name}``: new routes for a group, applied now."""
        group = self.router.set_routes(name, routes, self.pools, who)
        self._maintain()
        return group

    @property
    def _limits(self) -> HealthLimits:
        up = self.config.upstream
        return HealthLimits(
            up.job_timeout, up.reject_ratio, up.latency_p99, up.health_window, up.health_min_shares
        )

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
        pool.assess(self.clock(), self._limits)  # its health shows the change at once
        self.router.settle(self.clock())
        self.router.seats.capacity.set()  # subscribes waiting for a pool retry now

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
        pool.assess(self.clock(), self._limits)
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
        """Move the miners of a connection that is going away (nothing at shutdown)."""
        if self._closing:
            conn.miners.clear()
            return
        self.router.rehome(conn)

    def relayout(self, conn: Conn) -> None:
        """The pool changed the extranonce layout of ``conn``: re-place its miners."""
        seats = self.router.seats
        sessions = seats.miners_of(conn)
        conn.miners.clear()
        pool = conn.state
        for session in sessions:
            # Off the old layout without releasing a prefix or retiring the connection:
            # its allocator is new, and it stays the pool's connection.
            seats.forget(session)
            session.detached()
            self.router.move(session, pool)

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
            if state not in self.router.serving():
                for conn in state.connections:
                    conn.retire()
        self.router.regroup(GroupTable(config.routing_groups, pools))
        self.router.settle(self.clock())
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
        for pool in self.pools:
            pool.assess(now, self._limits)
        self.router.settle(now)
        self.router.run_splits(now)
        self._maintain()

    def _maintain(self) -> None:
        """Keep the connections the routes want open, retire idle ones no route wants."""
        if self._closing:
            return
        needed = self.needed = self.router.needed()
        for pool in self.removed_pools:
            for conn in pool.connections:
                if not conn.miners and not conn.retired:
                    conn.retire()  # its miners have moved on: nothing keeps it
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
            conn.state.count_verdict(reply.accepted, latency, reply.code, self.clock())
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
