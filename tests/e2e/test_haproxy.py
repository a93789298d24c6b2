"""Two proxies behind a REAL HAProxy (Debian's `haproxy`) sending PROXY protocol v2.

Shares are accepted on both instances, each sees the miners' real addresses, and when one
instance drains (as on SIGTERM) its miners reconnect through HAProxy to the other with no
share left unanswered. `.ci/run` installs haproxy; elsewhere the test is skipped loudly,
unless STRATUM_PROXY_REQUIRE_REAL_SERVERS is set.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from proxy.app import Proxy
from proxy.config import parse_config
from proxy.tools import free_port, wait_until
from proxy.tools.simulate import Fleet, SimConfig
from tests.deploy.support import require_tool
from tests.e2e.support import running_pool

TINY = 1e-10  # every hash meets it: the simulator's no-hash shares are valid


def _require_haproxy() -> str:
    return require_tool("haproxy", "Debian package haproxy; .ci/run installs it")


def _proxy_config(pool_port: int, listen: int, http: int) -> str:
    return (
        f'[server]\nlisten = ["127.0.0.1:{listen}"]\nproxy_protocol = true\n'
        'trusted_proxies = ["127.0.0.1/32"]\ndrain_grace = 5.0\n'
        f'[[pools]]\nname = "main"\nurl = "stratum+tcp://127.0.0.1:{pool_port}"\nuser = "acct.proxy"\n'
        f"[difficulty]\ninitial = {TINY!r}\nminimum = 1e-12\nvardiff = false\n"
        f'[http]\nlisten = "127.0.0.1:{http}"\n'
    )


def _haproxy_config(front: int, backends: list[tuple[int, int]]) -> str:
    # The deploy/haproxy/haproxy.cfg settings that matter here, on test ports and with fast
    # health checks so the drained instance is taken out within a second.
    servers = "\n".join(
        f"    server p{i} 127.0.0.1:{stratum} send-proxy-v2 check port {http} inter 200ms fall 1 rise 1"
        for i, (stratum, http) in enumerate(backends)
    )
    return f"""
global
    maxconn 2000
defaults
    mode tcp
    option redispatch
    retries 3
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout check 1s
frontend stratum
    bind 127.0.0.1:{front}
    default_backend proxies
backend proxies
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
{servers}
"""


@contextlib.asynccontextmanager
async def running_haproxy(config: str, tmp_path: Path) -> AsyncIterator[None]:
    """HAProxy in the foreground on loopback."""
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    proc = await asyncio.create_subprocess_exec(
        _require_haproxy(),
        "-db",
        "-f",
        str(path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield
    finally:
        proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_two_instances_behind_haproxy_drain_without_losing_a_share(tmp_path: Path) -> None:
    _require_haproxy()
    async with running_pool(difficulty=TINY) as pool:
        ports = [(free_port(), free_port()) for _ in range(2)]
        proxies = [Proxy(parse_config(_proxy_config(pool.port, s, h)), sweep_interval=0.1) for s, h in ports]
        for proxy in proxies:
            await proxy.start()
        front = free_port()
        fleet: Fleet | None = None
        try:
            await wait_until(
                lambda: all(p.pools.active is not None and p.pools.active.is_ready for p in proxies)
            )
            async with running_haproxy(_haproxy_config(front, ports), tmp_path):
                await asyncio.sleep(0.5)  # first health checks
                config = SimConfig(
                    port=front, no_hash=True, share_rate=5.0, reconnect_delay=0.05, request_timeout=10
                )
                fleet = Fleet(config, 10)
                await fleet.start()
                await fleet.wait_ready(timeout=30)
                # Both instances serve miners and accept their shares.
                await wait_until(
                    lambda: all(sum(w.accepted for w in p.stats.workers.values()) > 0 for p in proxies)
                )
                # Each sees the miners' real addresses, not HAProxy's.
                miners = {m.local_address for m in fleet.miners}
                seen = {s.peer for p in proxies for s in p.server.sessions}
                assert seen == miners and len(seen) == 10

                # Drain the first instance as SIGTERM does: its miners go to the second.
                drained, survivor = proxies
                await drained.drain()
                await drained.stop()
                await wait_until(lambda: len(survivor.server.sessions) == 10, timeout=30)
                before = sum(w.accepted for w in survivor.stats.workers.values())
                await wait_until(
                    lambda: sum(w.accepted for w in survivor.stats.workers.values()) > before + 10
                )
                totals = await fleet.stop()
                fleet = None
            assert totals.unanswered == 0 and totals.replies_received == totals.requests_sent
            assert totals.rejected_total == 0
            assert totals.reconnects >= 1  # the drained instance's miners came back through HAProxy
        finally:
            if fleet is not None:
                await fleet.stop()
            for proxy in proxies:
                await proxy.stop()
