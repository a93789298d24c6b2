"""Pool selection and failover: which upstream connection each miner's shares go to.

Pools are tried in priority order. The *active* pool is the one miners mine on. When it
fails (connect error, handshake failure, silence), miners move to the best other pool that
is ready, without being disconnected where the extranonce layout allows; pools of higher
priority keep being retried with exponential backoff and jitter, and once one has been
healthy for ``primary_hold`` seconds the miners move back to it.

Within the active pool, miners fill upstream connections up to the extranonce prefix space;
a new connection opens when all are full (or per miner, when the pool's extranonce2 is too
small to split).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from proxy.mining.job import JobIds
from proxy.routing import policy
from proxy.routing.connector import PoolConnector
from proxy.routing.ports import PlacedMiner
from proxy.routing.state import Conn, PoolState, health_of, rebuild_pools
from proxy.stratum.codec import ShareReply
from proxy.upstream.submits import PendingShare

if TYPE_CHECKING:
    from proxy.config import Config

log = structlog.get_logger("proxy.pools")

DEFAULT_VERSION_MASK = 0x1FFFE000
"""What we offer a miner that configures before any pool has answered: BIP320's bits,
which every pool that rolls grants. Corrected with set_version_mask if the pool differs."""


class PoolManager:
    """Owns every upstream connection and decides where miners go."""

    def __init__(self, config: Config, *, clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self.clock: Callable[[], float] = clock or asyncio.get_running_loop().time
        self.ids = JobIds()
        self.pools = [PoolState(p, i) for i, p in enumerate(config.pools)]
        self.removed_pools: list[PoolState] = []  # removed by a reload, connections closing
        self.active: PoolState | None = None
        # Miners whose connection died with no other pool ready: moved when one is.
        self.orphans: set[PlacedMiner] = set()
        # The placement table: every placed miner's channel. Only this class changes it.
        self._placed: dict[PlacedMiner, Conn] = {}
        self._capacity = asyncio.Event()
        self.connector = PoolConnector(self, self.ids, self.clock)
        self._last_mask = DEFAULT_VERSION_MASK
        self._closing = False
        # Told the pool and the seconds of every verdict on a forwarded share (metrics).
        self.on_settle: Callable[[PoolState, float], None] | None = None

    # ------------------------------------------------------------------ miners

    @property
    def version_mask(self) -> int:
        """What a miner that configures before it has a pool connection is offered: the
        mask of the last connection that became ready. The miner is told the real mask
        with set_version_mask once it is placed, if that differs."""
        return self._last_mask

    def attach(self, session: PlacedMiner, preferred: bytes | None = None) -> Conn | None:
        """Place a miner on a ready connection of the active pool, if one has room."""
        pool = self.active
        if pool is not None and pool.removed:
            pool = self._best_ready()  # a reload removed it: new miners go elsewhere
        if pool is None:
            return None
        for conn in pool.ready_connections():
            if not conn.allocator.full:
                prefix = conn.allocator.allocate(preferred)
                conn.miners.add(session)
                self._placed[session] = conn
                session.attached(conn, prefix)
                return conn
        self.connector.open(pool)  # all full: grow the pool by one connection
        return None

    async def attach_wait(self, session: PlacedMiner, preferred: bytes | None, timeout: float) -> Conn | None:
        """Wait up to ``timeout`` for room on the active pool."""
        deadline = self.clock() + timeout
        while not session.closing:
            conn = self.attach(session, preferred)
            if conn is not None:
                return conn
            remaining = deadline - self.clock()
            if remaining <= 0:
                return None
            self._capacity.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._capacity.wait(), min(remaining, 1.0))
        return None

    def detach(self, session: PlacedMiner) -> None:
        """Free a miner's prefix (disconnect, or before a move)."""
        self.orphans.discard(session)
        conn = self._placed.pop(session, None)
        if conn is None:
            return
        conn.miners.discard(session)
        conn.allocator.release(session.prefix)
        pool = conn.state
        if not conn.miners and pool.connections and conn is not pool.connections[0] and not conn.retired:
            conn.retire()  # an extra connection nobody uses any more
        self._capacity.set()

    def _miners_of(self, conn: Conn) -> list[PlacedMiner]:
        """The miners placed on ``conn`` (a scan: only for failover-rare events)."""
        return [session for session, placed in self._placed.items() if placed is conn]

    def move(self, session: PlacedMiner, target: PoolState) -> None:
        """Move one miner to a connection of ``target`` (failover, failback, relayout)."""
        old_e1, old_size = session.extranonce1, session.extranonce2_size
        old_prefix = session.prefix
        previous = self._placed.get(session)
        if previous is not None and (previous.closing or previous.closed):
            previous = None  # its jobs are void: nothing more can go to it
        self.detach(session)
        session.detached()
        for conn in target.ready_connections():
            if not conn.allocator.full:
                prefix = conn.allocator.allocate(old_prefix)
                conn.miners.add(session)
                self._placed[session] = conn
                session.attached(conn, prefix, previous)
                session.moved(old_e1, old_size)
                return
        self.connector.open(target)
        session.reconnect()  # no room right now: the miner comes back to a fresh slot

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
        if self.active is None or not self.active.is_ready:
            self._switch(pool)
        elif pool is self.active and self.orphans:
            self._switch(pool)  # re-home miners left without a connection
        self._capacity.set()

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
        pool = conn.state
        orphans = self._miners_of(conn)
        if not orphans or self._closing:
            conn.miners.clear()
            return
        if pool is self.active and pool.is_ready:
            target: PoolState | None = pool
        else:
            target = self._best_ready()
            if target is not None and target is not self.active:
                log.warning("failing over", from_pool=pool.name, to_pool=target.name)
                self.active = target
        if target is None and not conn.closed:
            return  # sent away with nowhere else to go: they mine its jobs until it closes
        conn.miners.clear()
        for session in orphans:
            # A connection still open (asked to reconnect) stays the miner's previous
            # one (see move), so shares on its jobs get the pool's verdict.
            if target is None:
                self.detach(session)
                session.detached()
                self.orphans.add(session)
            else:
                self.move(session, target)

    def relayout(self, conn: Conn) -> None:
        """The pool changed the extranonce layout of ``conn``: re-place its miners."""
        sessions = self._miners_of(conn)
        conn.miners.clear()
        pool = conn.state
        for session in sessions:
            # Off the old layout without releasing a prefix or retiring the connection:
            # its allocator is new, and it stays the pool's connection.
            self._placed.pop(session, None)
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

    # ------------------------------------------------------------------ selection

    def _best_ready(self) -> PoolState | None:
        best = policy.best_ready(health_of(self.pools, self.active)[0])
        return None if best is None else self.pools[best]

    def _switch(self, pool: PoolState) -> None:
        old = self.active
        self.active = pool
        if old is not None and old is not pool:
            log.warning("active pool", pool=pool.name, previous=old.name)
            for session in [s for c in old.connections for s in self._miners_of(c)]:
                self.move(session, pool)
            for conn in old.connections:
                conn.retire()
        orphans, self.orphans = self.orphans, set()
        for session in orphans:
            if not session.closing:
                self.move(session, pool)
        self._capacity.set()  # subscribes waiting for a pool retry now

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded config: pools added, removed, reordered or changed.

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
            if state is not self.active:
                for conn in state.connections:
                    conn.retire()
        self._failback(self.clock())
        self._maintain()

    def tick(self) -> None:
        """Periodic: timeouts, failback to a better pool, keep connections open."""
        now = self.clock()
        for pool in (*self.pools, *self.removed_pools):
            pool.expire_carried(now, self.config.server.submit_timeout)
        self.removed_pools = [p for p in self.removed_pools if p.connections or p.carried]
        for pool in (*self.pools, *self.removed_pools):
            for conn in list(pool.connections):
                conn.sweep(now)
        self._failback(now)
        self._maintain()

    def _failback(self, now: float) -> None:
        """Carry out the policy's choice of active pool (failover and failback)."""
        health, active = health_of(self.pools, self.active)
        chosen = policy.choose_active(health, active, now, self.config.upstream.primary_hold)
        if chosen is not None and self.pools[chosen] is not self.active:
            self._switch(self.pools[chosen])

    def _maintain(self) -> None:
        """Keep the connections the policy wants open, retire idle ones it does not."""
        if self._closing:
            return
        health, active = health_of(self.pools, self.active)
        count = policy.keep_open(health, active)
        for pool in self.pools[:count]:
            if not any(not c.retired for c in pool.connections):
                self.connector.open(pool)
        for pool in self.pools[count:]:
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
