"""Wires the proxy together and owns its lifetime: the one place that builds everything.

Signal handlers only set an event (as uvicorn does); the main coroutine notices and shuts
down in order: stop accepting, stop the pool side, close miners.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
from collections.abc import Coroutine
from typing import Any

import structlog

from proxy.config import Config
from proxy.downstream import MinerServer
from proxy.http import HttpApi
from proxy.metrics import Metrics
from proxy.pools import PoolManager
from proxy.runner import run
from proxy.stats import StatsRegistry

log = structlog.get_logger("proxy.app")

SWEEP_INTERVAL = 1.0
"""Seconds between session sweeps (timeouts, vardiff for silent miners)."""

SAMPLE_INTERVAL = 15.0
"""Seconds between hashrate samples of every worker (and expiry of idle workers)."""


def split_hostport(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` into its parts (validated by the config)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class Proxy:
    """A running proxy: miner listeners, pool manager and housekeeping tasks."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None = None,
        sweep_interval: float = SWEEP_INTERVAL,
        sample_interval: float = SAMPLE_INTERVAL,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.sweep_interval = sweep_interval
        self.sample_interval = sample_interval
        self.clock = asyncio.get_running_loop().time
        self.started_at = self.clock()
        self.last_reload: dict[str, object] | None = None
        self.stats = StatsRegistry(
            max_workers=config.http.max_workers, worker_expiry=config.http.worker_expiry
        )
        self.pools = PoolManager(config, clock=self.clock)
        self.server = MinerServer(config, self.pools, self.stats, clock=self.clock)
        self.metrics = Metrics(self.stats, self.pools, self.server)
        self.pools.on_settle = self.metrics.observe_submit
        self.http = HttpApi(self, self.metrics)
        self._tasks: list[asyncio.Task[None]] = []
        self.stopping = asyncio.Event()

    async def start(self) -> None:
        """Bind the listeners and start the pool manager."""
        for address in self.config.server.listen:
            host, port = split_hostport(address)
            await self.server.listen(host, port)
        if self.config.http.enabled:
            await self.http.start(*self.config.http.listen_address)
        self._spawn(self.pools.run(min(0.5, self.sweep_interval)))
        self._spawn(self._sweep())
        self._spawn(self._sample())
        if self.config.log.status_interval > 0:
            self._spawn(self._status(self.config.log.status_interval))
        log.info(
            "proxy started",
            listen=list(self.config.server.listen),
            ports=self.server.ports,
            http=self.http.port,
        )

    @property
    def ports(self) -> list[int]:
        """Bound miner ports (port 0 in the config picks a free one)."""
        return self.server.ports

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                self.server.sweep()
            except Exception:
                # A bug in one sweep must not end timeouts and vardiff for good.
                log.exception("session sweep failed")

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(self.sample_interval)
            self.stats.sample(self.clock())

    def readiness(self) -> tuple[bool, str]:
        """Ready when a pool is connected and authorized and its latest job is fresh."""
        now = self.clock()
        fresh_for = self.config.upstream.silence_timeout
        ready = [c for p in self.pools.pools for c in p.ready_connections()]
        if not ready:
            return False, "no pool connected and authorized"
        newest = max(ready, key=lambda c: c.last_job)
        age = now - newest.last_job
        if age > fresh_for:
            return False, f"no fresh job: the newest is {age:.0f} s old (limit {fresh_for:.0f} s)"
        return True, f"pool {newest.pool.name} ready, last job {age:.1f} s ago"

    async def _status(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            log.info("status", **self.status())

    def status(self) -> dict[str, object]:
        """A one-line summary of the fleet and the pools."""
        workers = self.stats.workers.values()
        active = self.pools.active
        return {
            "miners": len(self.server.sessions),
            "workers": len(self.stats.workers),
            "accepted": sum(w.accepted for w in workers),
            "rejected": sum(sum(w.counts) for w in workers),
            "pool": active.name if active is not None else None,
            "pool_accepted": sum(p.accepted for p in self.pools.pools),
            "pool_rejected": sum(p.rejected for p in self.pools.pools),
            "blocks": sum(p.blocks for p in self.pools.pools),
        }

    async def stop(self) -> None:
        """Stop accepting, close pools and miners, cancel housekeeping.

        The pool side goes first: it answers every forwarded share still in flight with
        its local verdict, so no miner request is left unanswered when miners are closed.
        """
        self.server.stop_listening()
        await self.http.stop()
        self.pools.close()
        self.server.close_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        log.info("proxy stopped")

    async def run_until_signalled(self) -> None:
        """Start, wait for SIGINT/SIGTERM, stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self.stopping.set)
        await self.start()
        await self.stopping.wait()
        log.info("shutting down")
        await self.stop()


def raise_open_file_limit() -> int:
    """Lift the soft open-file limit to the hard one: every miner is a file descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


def run_forever(config: Config, config_path: str | None = None) -> int:
    """Run the proxy in the foreground on uvloop (when available) until signalled."""
    limit = raise_open_file_limit()
    if limit < config.server.max_miners + 100:
        log.warning("open-file limit below max_miners", limit=limit, max_miners=config.server.max_miners)

    async def main() -> None:
        await Proxy(config, config_path=config_path).run_until_signalled()

    run(main())
    return 0
