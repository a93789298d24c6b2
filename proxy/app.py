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
from proxy.pools import PoolManager
from proxy.runner import run
from proxy.stats import StatsRegistry

log = structlog.get_logger("proxy.app")

SWEEP_INTERVAL = 1.0
"""Seconds between session sweeps (timeouts, vardiff for silent miners)."""


def split_hostport(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` into its parts (validated by the config)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class Proxy:
    """A running proxy: miner listeners, pool manager and housekeeping tasks."""

    def __init__(self, config: Config, *, sweep_interval: float = SWEEP_INTERVAL) -> None:
        self.config = config
        self.sweep_interval = sweep_interval
        self.stats = StatsRegistry()
        self.pools = PoolManager(config)
        self.server = MinerServer(config, self.pools, self.stats)
        self._tasks: list[asyncio.Task[None]] = []
        self.stopping = asyncio.Event()

    async def start(self) -> None:
        """Bind the listeners and start the pool manager."""
        for address in self.config.server.listen:
            host, port = split_hostport(address)
            await self.server.listen(host, port)
        self._spawn(self.pools.run(min(0.5, self.sweep_interval)))
        self._spawn(self._sweep())
        if self.config.log.status_interval > 0:
            self._spawn(self._status(self.config.log.status_interval))
        log.info("proxy started", listen=list(self.config.server.listen), ports=self.server.ports)

    @property
    def ports(self) -> list[int]:
        """Bound miner ports (port 0 in the config picks a free one)."""
        return self.server.ports

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            self.server.sweep()

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
        """Stop accepting, close pools and miners, cancel housekeeping."""
        self.server.stop_listening()
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


def run_forever(config: Config) -> int:
    """Run the proxy in the foreground on uvloop (when available) until signalled."""
    limit = raise_open_file_limit()
    if limit < config.server.max_miners + 100:
        log.warning("open-file limit below max_miners", limit=limit, max_miners=config.server.max_miners)

    async def main() -> None:
        await Proxy(config).run_until_signalled()

    run(main())
    return 0
