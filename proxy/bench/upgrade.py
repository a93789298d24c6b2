"""``stratum-proxy bench upgrade``: README's upgrade recipe, timed.

The recipe: with ``[server] reuse_port = true``, start the new process on the same port
beside the old one, then SIGTERM the old one. The old process drains: it stops accepting
and sends every miner ``client.reconnect`` with the address it connected to, so the miners
come back into the same port, where only the new process accepts now.

This process hosts the bundled test pool and a simulated fleet whose miners behave like
cpuminer (a ``client.reconnect`` without a host is ignored) and reconnect at once; the two
proxies are ``stratum-proxy run`` subprocesses. Measured: seconds from the SIGTERM until
every miner is mining on the new process (it has had a share accepted there), the old
process's exit code and time to exit, and requests left unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from proxy.bench.process import proxy_process
from proxy.tools import free_port
from proxy.tools.pool import PoolConfig, TestPool
from proxy.tools.simulate import Fleet, SimConfig

DIFFICULTY = 1e-12
"""Met by every hash: the load-mode miners' shares are valid without a search."""


@dataclass
class UpgradeResult:
    """What one run of the recipe measured."""

    miners: int
    seconds_to_all_back: float
    old_exit_code: int | None
    old_exit_seconds: float
    unanswered: int
    reconnects: int


def _config(pool_port: int, listen_port: int, http_port: int) -> str:
    return f"""
[server]
listen = ["127.0.0.1:{listen_port}"]
reuse_port = true
drain_wait = 0
max_miners = 5000
[[pools]]
name = "bench"
url = "stratum+tcp://127.0.0.1:{pool_port}"
user = "bench.proxy"
[difficulty]
initial = {DIFFICULTY}
minimum = {DIFFICULTY}
maximum = 1.0
vardiff = false
[log]
level = "warning"
[http]
listen = "127.0.0.1:{http_port}"
"""


async def _mining_workers(http: aiohttp.ClientSession, http_port: int) -> int:
    """Workers with an accepted share and a connection on the proxy at ``http_port``."""
    try:
        async with http.get(f"http://127.0.0.1:{http_port}/api/v1/workers") as response:
            if response.status != 200:
                return 0
            body = await response.json()
    except aiohttp.ClientError:
        return 0  # not serving yet
    return sum(1 for w in body["workers"] if w["accepted"] > 0 and w["connections"] > 0)


async def _until(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("the upgrade did not complete in time")
        await asyncio.sleep(0.05)


async def run_upgrade(miners: int = 200) -> UpgradeResult:
    """Run the recipe once with ``miners`` simulated miners."""
    pool = TestPool(PoolConfig(difficulty=DIFFICULTY, job_interval=3600.0, block_interval=3600.0, seed=9))
    await pool.start()
    port, old_http, new_http = free_port(), free_port(), free_port()
    config = SimConfig(
        port=port, no_hash=True, share_rate=2.0, reconnect_delay=0.0, ignore_null_reconnect=True
    )
    fleet = Fleet(config, miners)
    try:
        async with aiohttp.ClientSession() as http:
            with proxy_process(_config(pool.port, port, old_http)) as old:
                await _until(lambda: _is_ready(http, old_http), 30.0)
                await fleet.start()
                await fleet.wait_ready(60.0)
                with proxy_process(_config(pool.port, port, new_http)):
                    await _until(lambda: _is_ready(http, new_http), 30.0)
                    start = time.monotonic()
                    old.send_signal(signal.SIGTERM)
                    # The new process had no miner before: every worker mining there came back.
                    await _until(lambda: _all_mining(http, new_http, miners), 60.0)
                    back = time.monotonic() - start
                    code = await asyncio.to_thread(old.wait, 60)
                    exited = time.monotonic() - start
                    totals = await fleet.stop()
                    return UpgradeResult(
                        miners=miners,
                        seconds_to_all_back=back,
                        old_exit_code=code,
                        old_exit_seconds=exited,
                        unanswered=totals.unanswered,
                        reconnects=totals.reconnects,
                    )
    finally:
        with contextlib.suppress(Exception):
            await fleet.stop(drain_timeout=1.0)
        await pool.stop()


async def _is_ready(http: aiohttp.ClientSession, http_port: int) -> bool:
    try:
        async with http.get(f"http://127.0.0.1:{http_port}/readyz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def _all_mining(http: aiohttp.ClientSession, http_port: int, miners: int) -> bool:
    return await _mining_workers(http, http_port) >= miners


def report(result: UpgradeResult) -> str:
    """The figures as README shows them."""
    return (
        f"upgrade with reuse_port, {result.miners} cpuminer-like miners:\n"
        f"  all miners mining on the new process {result.seconds_to_all_back:.2f} s after SIGTERM\n"
        f"  old process exited with {result.old_exit_code} after {result.old_exit_seconds:.2f} s\n"
        f"  unanswered requests {result.unanswered}, reconnects {result.reconnects}"
    )
