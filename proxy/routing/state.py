"""What routing keeps per configured pool: connections, health, backoff, counters."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import structlog

from proxy.config import PoolConfig
from proxy.routing.health import DEGRADED, DOWN, HEALTHY, HealthLimits, Verdicts, assess
from proxy.routing.policy import PoolHealth
from proxy.routing.policy import pool_states as policy_pool_states
from proxy.stats import WorkerStats
from proxy.upstream.submits import PendingShare
from proxy.upstream.v1 import UpstreamConnection

log = structlog.get_logger("proxy.pools")

Conn = UpstreamConnection["PoolState"]
"""A connection to one of the configured pools."""


class PoolState:
    """One configured pool: its connections, health and reconnect backoff."""

    def __init__(self, config: PoolConfig, index: int) -> None:
        self.config = config
        self.index = index
        self.connections: list[Conn] = []
        self.connecting = 0
        self.backoff = 0.0
        self.retry_at = 0.0
        self.healthy_since: float | None = None
        self.redirect: tuple[str, int] | None = None
        self.accepted = 0
        self.rejected = 0
        self.blocks = 0  # block candidates the pool accepted
        self.candidates = 0  # shares meeting the network target sent to the pool
        self.jobs = 0
        self.timeouts = 0
        self.latency = 0.0  # seconds the last forwarded share took to be answered
        self.removed = False  # dropped from the config by a reload; miners leave it
        self.latency_metric: Any = None  # its submit-latency histogram child, looked up once
        # Shares in flight when a connection was lost, with that connection: sent again on
        # the next one if the pool resumes the session, else answered locally.
        self.carried: list[tuple[Conn, PendingShare]] = []
        # The connection the pool last sent away (client.reconnect): the next connection
        # offers its session id, and takes over its jobs if the pool resumes the session.
        self.resume_from: Conn | None = None
        self.resume_until = 0.0  # after this, no resume is expected: its jobs are voided
        # Block candidates below the pool's difficulty (test networks only) are sent until
        # the pool refuses one: then it evidently does not take them as blocks. Kept per
        # pool, not per connection, so a reconnect does not offer another one.
        self.takes_easy_candidates = True
        # Health beyond TCP (see proxy.routing.health).
        self.verdicts = Verdicts()
        self.failure: str | None = None  # why the last connection attempt or connection failed
        self.last_new_job: float | None = None
        self.health = DOWN
        self.health_reason = "not connected yet"

    @property
    def name(self) -> str:
        """The pool's configured name."""
        return self.config.name

    def ready_connections(self) -> list[Conn]:
        """Connections that completed their handshake and have a job (none once removed)."""
        if self.removed:
            return []
        return [c for c in self.connections if c.ready and not c.retired]

    @property
    def is_ready(self) -> bool:
        """True when at least one connection is ready (a removed pool never is)."""
        return bool(self.ready_connections())

    def job_received(self, now: float, new: bool) -> None:
        """Count a job from the pool (``new``: not a repeat of the current one)."""
        self.jobs += 1
        if new:
            self.last_new_job = now

    def failed(self, reason: str) -> None:
        """A connection attempt or a connection failed (the reason shown while down)."""
        self.failure = reason

    @property
    def degraded(self) -> bool:
        """Ready but not doing its job: skipped by routing while another pool is healthy."""
        return self.health == DEGRADED

    def assess(self, now: float, limits: HealthLimits) -> None:
        """Re-judge the pool's health. Leaving health (degraded) resets ``healthy_since``,
        so coming back takes ``primary_hold`` of health like a reconnect does."""
        self.verdicts.expire(now, limits.window)
        ready = self.is_ready
        if ready and self.last_new_job is None:
            self.last_new_job = now  # the first job since start, counted from readiness
        health, reason = assess(ready, self.failure, self.last_new_job, self.verdicts.summary(), now, limits)
        if health == DEGRADED and self.health != DEGRADED:
            log.warning("pool degraded", pool=self.name, reason=reason)
            self.healthy_since = None
        elif health == HEALTHY and self.health == DEGRADED:
            log.warning("pool healthy again", pool=self.name)
            self.healthy_since = now
        elif health == HEALTHY and self.healthy_since is None:
            self.healthy_since = now
        self.health, self.health_reason = health, reason

    def submit_timed_out(self) -> None:
        """Count a forwarded share the pool never answered in time."""
        self.timeouts += 1

    def block_candidate(self) -> None:
        """A share meeting the network target goes upstream: counted, not logged (on a
        test network nearly every share is one)."""
        self.candidates += 1

    def block_accepted(self, stats: WorkerStats | None, block_hash: int) -> None:
        """The pool accepted a block candidate: a block, logged once."""
        self.blocks += 1
        log.warning(
            "block found",
            pool=self.name,
            worker=stats.name if stats is not None else "?",
            hash=block_hash.to_bytes(32, "big").hex(),
        )

    def count_verdict(self, accepted: bool, latency: float, code: int | None, now: float) -> None:
        """The pool answered a forwarded share after ``latency`` seconds (``code``: its
        error code for a reject)."""
        self.latency = latency
        self.verdicts.add(now, accepted, latency, code)
        if accepted:
            self.accepted += 1
        else:
            self.rejected += 1

    def connection_lost(self, conn: Conn, *, resumable: bool, resume_until: float) -> None:
        """A connection closed. One the pool sent away (``client.reconnect``) may have its
        session resumed by the next connection (ckpool keeps its jobs across a reconnect):
        its shares in flight and its jobs wait for that until ``resume_until``. Anything
        else (a crash, an outage, a shutdown) answers its shares with the local verdict."""
        pending = conn.shares.take_pending()
        if not (resumable and conn.redirected):
            for share in pending:
                conn.shares.settle(share, None)
            if conn.redirected:
                conn.jobs.void_all()
            return
        for share in pending:
            self.carry(conn, share)
        if conn.session_id:
            if self.resume_from is not None:
                self.resume_from.jobs.void_all()  # an older one: no longer resumable
            self.resume_from, self.resume_until = conn, resume_until
        else:
            conn.jobs.void_all()  # no session id: nothing to resume

    def carry(self, conn: Conn, share: PendingShare) -> None:
        """Keep a share of a connection the pool sent away until a connection resumes its
        session (sent there at once if one already has), or its timeout."""
        for ready in self.ready_connections():
            if ready.shares.same_session_as(conn):
                ready.shares.resubmit(share)
                return
        self.carried.append((conn, share))

    def maybe_resume(self, conn: Conn) -> None:
        """A new connection has its layout: if the pool resumed the session of the one it
        sent away, that one's jobs carry on here; else they are void."""
        lost = self.resume_from
        if lost is None or conn.resume_session != lost.session_id:
            return  # not the connection that asked to resume it
        self.resume_from = None
        if conn.shares.same_session_as(lost):
            conn.jobs.adopt(lost.jobs)
        else:
            lost.jobs.void_all()

    def resubmit_carried(self, conn: Conn) -> None:
        """A new connection is ready: send it the carried shares if it resumed their
        session, else answer them locally (their work is void at the pool)."""
        carried, self.carried = self.carried, []
        for old, share in carried:
            if conn.shares.same_session_as(old):
                conn.shares.resubmit(share)
            else:
                old.shares.settle(share, None)

    def expire_carried(self, now: float, timeout: float) -> None:
        """Answer locally the carried shares no connection took within ``timeout``; void
        the jobs of a session no connection resumed in time."""
        if self.resume_from is not None and now > self.resume_until:
            self.resume_from.jobs.void_all()  # no resume came: its work is over
            self.resume_from = None
        keep = []
        for old, share in self.carried:
            if now - share.sent_at > timeout:
                self.submit_timed_out()
                old.shares.settle(share, None)
            else:
                keep.append((old, share))
        self.carried = keep

    def flush_carried(self) -> None:
        """Shutdown: answer every carried share locally."""
        carried, self.carried = self.carried, []
        for old, share in carried:
            old.shares.settle(share, None)


def rebuild_pools(
    old: Sequence[PoolState], configs: Sequence[PoolConfig]
) -> tuple[list[PoolState], list[PoolState]]:
    """The pools of a reloaded config, and those it removed.

    A pool keeps its state (connections, counters) when its name and settings are
    unchanged; a pool whose URL or credentials changed is a new pool as far as
    connections go, and its old state is among the removed.
    """
    by_name = {p.name: p for p in old}
    pools: list[PoolState] = []
    for index, config in enumerate(configs):
        state = by_name.pop(config.name, None)
        if state is not None and state.config != config:
            by_name[f"{config.name} (before reload)"] = state
            state = None
        if state is None:
            state = PoolState(config, index)
        state.index = index
        pools.append(state)
    return pools, list(by_name.values())


def health_of(
    pools: Sequence[PoolState], active: PoolState | None, *, degraded_too: bool = False
) -> tuple[list[PoolHealth], int | None]:
    """What the routing policy decides from: each pool's health in priority order, and the
    index of the active pool (None when there is none, or a reload removed it). A degraded
    pool counts as not ready unless ``degraded_too`` (a last resort)."""
    health = [
        PoolHealth(p.is_ready and (degraded_too or not p.degraded), p.healthy_since, p.removed) for p in pools
    ]
    # Its position in ``pools`` (a route's chain is not the config's order).
    return health, (list(pools).index(active) if active is not None and active in pools else None)


def pool_states(pools: Sequence[PoolState], needed: Collection[PoolState]) -> list[str]:
    """Each configured pool's state for operators (see ``policy.pool_states``); ``needed``:
    the pools some route wants a connection to."""
    health = [PoolHealth(p.is_ready, p.healthy_since, p.removed) for p in pools]
    # A retired connection (an idle backup being let go) is not an attempt to connect.
    opening = [p.connecting > 0 or any(not c.retired and not c.ready for c in p.connections) for p in pools]
    states = policy_pool_states(health, [p in needed for p in pools], opening)
    pairs = zip(pools, states, strict=True)
    return [DEGRADED if state == "ready" and pool.degraded else state for pool, state in pairs]
