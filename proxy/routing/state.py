"""What routing keeps per configured pool: connections, health, backoff, counters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from proxy.config import PoolConfig
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

    def job_received(self) -> None:
        """Count a job from the pool (new or repeated)."""
        self.jobs += 1

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

    def count_verdict(self, accepted: bool, latency: float) -> None:
        """The pool answered a forwarded share after ``latency`` seconds."""
        self.latency = latency
        if accepted:
            self.accepted += 1
        else:
            self.rejected += 1

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
        """Answer locally the carried shares no connection took within ``timeout``."""
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
