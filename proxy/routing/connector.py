"""Opening pool connections: one attempt at a time per pool, backoff with jitter."""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Callable

import structlog

from proxy.config import Config
from proxy.mining.job import JobIds
from proxy.routing.state import Conn, PoolState
from proxy.upstream.v1 import ChannelOwner

log = structlog.get_logger("proxy.pools")


class PoolConnector:
    """Connects to pools for the routing layer (the connections' owner)."""

    def __init__(self, owner: ChannelOwner[PoolState], ids: JobIds, clock: Callable[[], float]) -> None:
        self.owner = owner
        self.ids = ids
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self.closing = False

    @property
    def config(self) -> Config:
        """The config in force (the owner's; a reload swaps it)."""
        return self.owner.config

    def open(self, pool: PoolState) -> None:
        """Start a connection to ``pool`` unless one is being made or its backoff runs."""
        if self.closing or pool.removed or pool.connecting or self.clock() < pool.retry_at:
            return
        pool.connecting += 1
        task = asyncio.get_running_loop().create_task(self._connect(pool))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, pool: PoolState) -> None:
        loop = asyncio.get_running_loop()
        host, port = pool.redirect or (pool.config.host, pool.config.port)
        resume = pool.resume_from.session_id if pool.resume_from is not None else None
        conn = Conn(self.owner, pool, self.ids, resume_session=resume)
        # Listed before connecting: the handshake can complete before this coroutine resumes.
        pool.connections.append(conn)
        try:
            # Certificate and host name verification stay on: create_default_context().
            context = ssl.create_default_context(cafile=pool.config.ca_file) if pool.config.tls else None
            await asyncio.wait_for(
                loop.create_connection(lambda: conn, host, port, ssl=context),
                self.config.upstream.connect_timeout,
            )
        except Exception as exc:
            conn.close()
            if conn in pool.connections:
                pool.connections.remove(conn)
            error = str(exc) or type(exc).__name__
            log.warning("pool connect failed", pool=pool.name, error=error)
            pool.failed(f"connect failed: {error}")
            self.failed(pool)
        finally:
            pool.connecting -= 1

    def failed(self, pool: PoolState) -> None:
        """A connection failed: back off (doubling, with jitter) before the next try."""
        upstream = self.config.upstream
        pool.backoff = min(max(pool.backoff * 2, upstream.backoff_initial), upstream.backoff_max)
        # Jitter spreads reconnects of many proxies after a pool outage.
        pool.retry_at = self.clock() + pool.backoff * random.uniform(0.5, 1.5)
        pool.healthy_since = None
        pool.redirect = None  # a redirect that failed is not tried again: back to the config

    def close(self) -> None:
        """Shutdown: cancel connects under way, start no more."""
        self.closing = True
        for task in self._tasks:
            task.cancel()
