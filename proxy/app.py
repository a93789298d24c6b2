"""Wires the proxy together and owns its lifetime: the one place that builds everything.

Signal handlers only set an event or start a task (as uvicorn does). SIGHUP reloads the
config; SIGTERM or SIGINT drains: stop accepting, turn unready, ask every miner to
reconnect (behind a load balancer it lands on another instance), answer every share in
flight, then close the pool side and exit. A second SIGTERM/SIGINT exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog

from proxy.config import Config, ConfigDiff, ConfigError, diff_config, load_config, parse_listen_address
from proxy.downstream import MinerServer
from proxy.http import HttpApi
from proxy.logs import configure_logging
from proxy.metrics import Metrics
from proxy.routing.pools import PoolManager
from proxy.runner import run
from proxy.stats import StatsRegistry
from proxy.views import pool_views

log = structlog.get_logger("proxy.app")

SWEEP_INTERVAL = 1.0
"""Seconds between session sweeps (timeouts, vardiff for silent miners)."""

SAMPLE_INTERVAL = 15.0
"""Seconds between hashrate samples of every worker (and expiry of idle workers)."""


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
        self._tasks: set[asyncio.Task[None]] = set()
        self._reload_lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self.draining = False

    async def start(self) -> None:
        """Bind the listeners and start the pool manager."""
        for address in self.config.server.listen:
            await self.server.listen(address)
        self.http.admin_token = read_admin_token(self.config.http.admin_token_file)
        if self.config.http.enabled:
            await self.http.start(*self.config.http.listen_address)
        self.pools.start()
        # Each loop logs a failure and goes on: a bug in one round must not end failover,
        # timeouts, vardiff or sampling for good.
        pool_interval = min(0.5, self.sweep_interval)
        self._spawn(_every(lambda: pool_interval, self.pools.tick, "pool manager tick failed"))
        self._spawn(_every(lambda: self.sweep_interval, self.server.sweep, "session sweep failed"))
        self._spawn(_every(lambda: self.sample_interval, self._sample, "worker sampling failed"))
        # A reload may change the status interval; 0 turns the line off (checked each minute).
        self._spawn(_every(lambda: self.config.log.status_interval or 60.0, self._status, "status failed"))
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
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)  # finished reloads do not pile up

    def _sample(self) -> None:
        self.stats.sample(self.clock())

    def readiness(self) -> tuple[bool, str]:
        """Ready when a pool is connected and authorized and its latest job is fresh."""
        if self.draining:
            return False, "draining: shutting down"
        fresh_for = self.config.upstream.silence_timeout
        # From the read model /api/v1/pools renders: the two cannot disagree.
        ready = [p for p in pool_views(self.pools, self.clock()) if p.last_job_age_seconds is not None]
        if not ready:
            return False, "no pool connected and authorized"
        newest = min(ready, key=lambda p: p.last_job_age_seconds or 0.0)
        age = newest.last_job_age_seconds or 0.0
        if age > fresh_for:
            return False, f"no fresh job: the newest is {age:.0f} s old (limit {fresh_for:.0f} s)"
        return True, f"pool {newest.name} ready, last job {age:.1f} s ago"

    def _status(self) -> None:
        if self.config.log.status_interval:
            log.info("status", **self.status())

    def status(self) -> dict[str, object]:
        """A one-line summary of the fleet and the pools."""
        workers = self.stats.workers.values()
        active = self.pools.active
        pools = pool_views(self.pools, self.clock())  # the read model /api/v1/pools renders
        return {
            "miners": len(self.server.sessions),
            "workers": len(self.stats.workers),
            "accepted": sum(w.accepted for w in workers),
            "rejected": sum(sum(w.counts) for w in workers),
            "pool": active.name if active is not None else None,
            "serving": ",".join(p.name for p in pools if p.active) or None,
            "pool_accepted": sum(p.accepted for p in pools),
            "pool_rejected": sum(p.rejected for p in pools),
            "blocks": sum(p.blocks for p in pools),
        }

    # ------------------------------------------------------------------ reload

    async def reload(self) -> dict[str, object]:
        """Re-read the config file and apply it without dropping a miner.

        The whole file is validated first; an invalid one changes nothing (the error names
        the key and line). Returns what ``/api/v1/status`` shows as ``last_reload``.
        """
        async with self._reload_lock:
            if self.draining:
                # Stopping: a reload must not open listeners or move miners any more.
                return self._reload_failed(ConfigError("refused: the proxy is draining to stop"))
            try:
                if self.config_path is None:
                    raise ConfigError("no config file to reload (the proxy was started without one)")
                new = load_config(self.config_path)
            except ConfigError as exc:
                return self._reload_failed(exc)
            try:
                token = read_admin_token(new.http.admin_token_file)
            except ConfigError as exc:
                return self._reload_failed(exc)
            try:
                # Bound before anything changes, so a busy port fails the reload cleanly.
                added = await self.server.open_listeners(new.server.listen, reuse_port=new.server.reuse_port)
            except OSError as exc:
                return self._reload_failed(ConfigError(f"cannot listen: {exc.strerror}", key="server.listen"))
            try:
                http_moved = await self._rebind_http(new)
            except OSError as exc:
                self.server.close_listeners(self.config.server.listen)  # undo the ones just added
                return self._reload_failed(ConfigError(f"cannot listen: {exc.strerror}", key="http.listen"))
            self.http.admin_token = token
            changes = self._apply(new)
            changes["listeners_added"] = added
            changes["http_moved"] = http_moved
            self.metrics.reloads.labels("success").inc()
            self.last_reload = {"result": "success", "at": time.time(), "changes": changes}
            log.info("config reloaded", **changes)
            return self.last_reload

    def _reload_failed(self, exc: ConfigError) -> dict[str, object]:
        self.metrics.reloads.labels("failure").inc()
        self.last_reload = {"result": "failure", "at": time.time(), "error": str(exc)}
        log.error("config reload failed; the old config stays in force", error=str(exc))
        return self.last_reload

    async def _rebind_http(self, new: Config) -> bool:
        """Move the HTTP endpoint when ``[http] listen`` or ``enabled`` changed: the new
        address is bound first (an OSError fails the reload with nothing changed), the old
        one is closed afterwards in the background, since the request asking for this
        reload may still be running on it."""
        old, fresh = self.config.http, new.http
        if (old.listen, old.enabled) == (fresh.listen, fresh.enabled):
            return False
        retired = await self.http.rebind(fresh.listen_address if fresh.enabled else None)
        if retired is not None:
            self._spawn(retired.cleanup())
        return True

    def _apply(self, new: Config) -> dict[str, object]:
        """Put a validated config in force, part by part."""
        diff: ConfigDiff = diff_config(self.config, new)
        self.config = new
        if diff.log_changed:
            configure_logging(new.log.level, new.log.format)
        self.stats.max_workers = new.http.max_workers
        self.stats.worker_expiry = new.http.worker_expiry
        self.pools.reconfigure(new)  # pools added, removed, reordered, credentials
        self.metrics.add_pools(p.name for p in new.pools)
        self.metrics.remove_pools(diff.pools_removed)
        self.server.reconfigure(new)  # limits, timeouts, difficulty re-targeted
        removed = self.server.close_listeners(new.server.listen)
        return {
            "pools_added": list(diff.pools_added),
            "pools_removed": list(diff.pools_removed),
            "pools_changed": list(diff.pools_changed),
            "pools_reordered": diff.pools_reordered,
            "difficulty_changed": diff.difficulty_changed,
            "limits_changed": diff.server_limits_changed,
            "log_changed": diff.log_changed,
            "groups_changed": diff.groups_changed,  # API weights are replaced by the file's either way
            "listeners_removed": removed,
        }

    # ------------------------------------------------------------------ stop

    async def drain(self) -> None:
        """Graceful stop: no new miners, readiness off, miners asked to reconnect (to
        another instance behind the balancer), every share in flight answered, bounded by
        ``[server] drain_grace``."""
        self.draining = True
        self.server.stop_listening()
        server = self.config.server
        host, port = (
            (None, None) if server.drain_target is None else parse_listen_address(server.drain_target)
        )
        for session in list(self.server.sessions):
            # Deferred close: forwarded shares are answered first.
            session.reconnect(host, port, server.drain_wait)
        deadline = self.clock() + self.config.server.drain_grace
        while self.server.sessions and self.clock() < deadline:
            await asyncio.sleep(0.05)
        log.info("drained", miners_left=len(self.server.sessions))

    async def stop(self) -> None:
        """Stop accepting, close pools and miners, cancel housekeeping.

        The pool side goes first: it answers every forwarded share still in flight with
        its local verdict, so no miner request is left unanswered when miners are closed.
        """
        self.server.stop_listening()
        await self.http.stop()
        self.pools.close()
        self.server.close_all()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        log.info("proxy stopped")

    def _on_stop_signal(self) -> None:
        if self.stopping.is_set():
            log.warning("second stop signal: exiting at once")
            os._exit(1)
        self.stopping.set()

    def _on_reload_signal(self) -> None:
        self._spawn(self._reload_from_signal())

    async def _reload_from_signal(self) -> None:
        await self.reload()

    async def run_until_signalled(self) -> None:
        """Start; reload on SIGHUP; on SIGTERM/SIGINT drain and stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self._on_stop_signal)
        await self.start()
        with contextlib.suppress(NotImplementedError, AttributeError):  # only once started
            loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        await self.stopping.wait()
        log.info("shutting down: draining miners", miners=len(self.server.sessions))
        await self.drain()
        await self.stop()


async def _every(interval: Callable[[], float], action: Callable[[], None], failure: str) -> None:
    """Run ``action`` every ``interval()`` seconds until cancelled; a failure is logged
    and the next round runs anyway."""
    while True:
        await asyncio.sleep(interval())
        try:
            action()
        except Exception:
            log.exception(failure)


MIN_TOKEN_LENGTH = 16
"""Shortest admin token accepted: a guessable token would make the admin API a liability."""


def read_admin_token(path: str | None) -> bytes | None:
    """The admin bearer token from its file (None: admin endpoints disabled)."""
    if path is None:
        return None
    try:
        token = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the admin token file: {exc.strerror}", key="http.admin_token_file"
        ) from None
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"the admin token must be at least {MIN_TOKEN_LENGTH} characters", key="http.admin_token_file"
        )
    return token


def raise_open_file_limit() -> int:
    """Lift the soft open-file limit to the hard one: every miner is a file descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


FD_RESERVE = 100
"""Descriptors kept beyond one per miner: pool connections, listeners, HTTP clients, logs."""


def open_file_advice(limit: int, max_miners: int) -> str | None:
    """The startup warning when the open-file limit cannot hold ``max_miners`` miners, or
    None when it can: it names the real threshold and the two usual fixes."""
    needed = max_miners + FD_RESERVE
    if limit >= needed:
        return None
    return (
        f"open-file limit {limit} is below the {needed} needed for max_miners={max_miners}"
        f" (one per miner + {FD_RESERVE} for pools, listeners and HTTP): about {max(limit - FD_RESERVE, 0)}"
        f" miners fit; raise it with LimitNOFILE={needed} in the systemd unit or `ulimit -n {needed}`"
        " before starting, or lower [server] max_miners"
    )


def run_forever(config: Config, config_path: str | None = None) -> int:
    """Run the proxy in the foreground on uvloop (when available) until signalled."""
    advice = open_file_advice(raise_open_file_limit(), config.server.max_miners)
    if advice is not None:
        log.warning(advice)

    async def main() -> int:
        try:
            await Proxy(config, config_path=config_path).run_until_signalled()
        except ConfigError as exc:  # e.g. an unreadable admin token file
            print(f"stratum-proxy: {exc}", file=sys.stderr)
            return 2
        return 0

    return run(main())
