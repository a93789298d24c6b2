"""The pool side: TLS, extranonce layouts, pool-initiated changes, silence, reconnects."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

from proxy.app import Proxy
from proxy.config import Config, parse_config
from proxy.tools import wait_until
from tests.e2e.support import HTTP_TOML, ScriptedMiner, proxy_config, running_pool, running_proxy

FAST = "backoff_initial = 0.05\nbackoff_max = 0.2\nprimary_hold = 0.2\nconnect_timeout = 2.0"


def _tls_server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def _pools_toml(port: int, ca_file: str | None) -> str:
    ca = f'ca_file = "{ca_file}"\n' if ca_file else ""
    return f'[[pools]]\nname = "tls"\nurl = "stratum+ssl://127.0.0.1:{port}"\nuser = "acct.tls"\n{ca}'


async def test_stratum_ssl_pool_with_a_trusted_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with running_pool(tls=_tls_server_context(ca)) as pool:
        config = _tls_config(pool.port, str(ca_file))
        async with running_proxy(config) as proxy:
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.handshake()
            assert (await miner.submit(miner.find_share(above=1e-6)))["result"] is True
            await wait_until(lambda: pool.stats.accepted == 1)
            await miner.close()


async def test_stratum_ssl_pool_with_an_untrusted_certificate_is_refused() -> None:
    ca = trustme.CA()  # not given to the proxy: its certificate cannot be verified
    async with running_pool(tls=_tls_server_context(ca)) as pool:
        config = _tls_config(pool.port, None)
        proxy = Proxy(config, sweep_interval=0.05)
        await proxy.start()
        try:
            await wait_until(lambda: proxy.pools.pools[0].backoff > 0)
            assert not proxy.pools.pools[0].is_ready
            assert pool.stats.accepted == 0 and not pool.started_sessions
        finally:
            await proxy.stop()


def _tls_config(port: int, ca_file: str | None) -> Config:
    text = '[server]\nlisten = ["127.0.0.1:0"]\n' + _pools_toml(port, ca_file)
    text += "[upstream]\n" + FAST + "\n[difficulty]\ninitial = 1e-7\nminimum = 1e-9\nvardiff = false\n"
    text += HTTP_TOML
    return parse_config(text)


async def test_pool_extranonce2_too_small_to_split_gives_each_miner_its_own_connection() -> None:
    async with running_pool(extranonce2_size=4) as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miners = [await ScriptedMiner.connect(proxy.ports[0], worker=f"farm.w{i}") for i in range(2)]
        for miner in miners:
            await miner.handshake()
        # Each miner sees the pool's own extranonce1 and all 4 bytes of extranonce2.
        assert len(pool.sessions) == 2
        assert {m.extranonce1 for m in miners} == {s.extranonce1 for s in pool.sessions}
        assert all(m.extranonce2_size == 4 for m in miners)
        for miner in miners:
            assert (await miner.submit(miner.find_share(above=1e-6)))["result"] is True
        await wait_until(lambda: pool.stats.accepted == 2)
        for miner in miners:
            await miner.close()


async def test_pool_set_extranonce_keeps_miners_mining_without_telling_them() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        before = miner.extranonce1
        old_job = miner.jobs[-1].job_id
        assert pool.set_extranonce() == 1  # new E1 for the proxy's connection, then a job
        await miner.wait_for(lambda: miner.jobs[-1].job_id != old_job)
        # Folded into coinb1: the miner's own extranonce1 did not change.
        assert miner.extranonce1 == before
        assert not any(n["method"] == "mining.set_extranonce" for n in miner.notifications)
        assert (await miner.submit(miner.find_share(above=1e-6)))["result"] is True
        await wait_until(lambda: pool.stats.accepted == 1)
        await miner.close()


async def test_pool_version_mask_change_reaches_rolling_miners_at_once() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        assert miner.version_mask == 0x1FFFE000
        pool.set_version_mask(0x00FFE000)
        await miner.wait_for(lambda: miner.version_mask == 0x00FFE000)
        assert (await miner.submit(miner.find_share(above=1e-6, roll=0x00002000)))["result"] is True
        outside = miner.find_share(roll=0x10000000)
        assert (await miner.submit(outside))["error"][:2] == [20, "Invalid version bits"]
        await miner.close()


async def test_pool_client_reconnect_is_followed_to_the_same_pool() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port], upstream=FAST)) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        first = pool.stats.connections
        pool.reconnect()  # client.reconnect with no host: come back here
        await wait_until(lambda: pool.stats.connections > first and bool(pool.started_sessions))
        old_job = miner.jobs[-1].job_id
        await miner.wait_for(lambda: miner.jobs[-1].job_id != old_job)
        assert (await miner.submit(miner.find_share(above=1e-6)))["result"] is True
        await wait_until(lambda: pool.stats.accepted == 1)
        assert len(proxy.server.sessions) == 1
        await miner.close()


async def test_pool_redirect_to_another_host_is_refused_by_default() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port], upstream=FAST)) as proxy:
        first = pool.stats.connections
        pool.reconnect(host="198.51.100.7", port=3333)  # never contacted: redirects are off
        # The proxy reconnects to the configured pool instead.
        await wait_until(lambda: pool.stats.connections > first and bool(pool.started_sessions))
        assert proxy.pools.pools[0].redirect is None


async def test_silent_pool_is_abandoned_for_the_backup() -> None:
    async with running_pool(seed=11) as primary, running_pool(seed=12) as backup:
        upstream = FAST + "\nsilence_timeout = 0.5"
        async with running_proxy(proxy_config([primary.port, backup.port], upstream=upstream)) as proxy:
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.handshake()
            primary.silence(jobs=True, replies=True)  # connected, but says nothing any more
            await wait_until(lambda: proxy.pools.active is proxy.pools.pools[1])
            old_job = miner.jobs[-1].job_id
            await miner.wait_for(lambda: miner.jobs[-1].job_id != old_job)
            assert (await miner.submit(miner.find_share(above=1e-6)))["result"] is True
            await wait_until(lambda: backup.stats.accepted == 1)
            await miner.close()


async def test_returning_miner_gets_its_extranonce_prefix_back() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        sub = (await miner.request("mining.subscribe", ["cpuminer-opt/26.1"]))["result"]
        session_id = sub[0][0][1]
        await miner.close()
        await wait_until(lambda: not proxy.server.sessions)
        other = await ScriptedMiner.connect(proxy.ports[0], worker="farm.other")
        await other.handshake()  # takes the next prefix, not the freed one
        back = await ScriptedMiner.connect(proxy.ports[0])
        resumed = (await back.request("mining.subscribe", ["cpuminer-opt/26.1", session_id]))["result"]
        assert resumed[1] == sub[1] != other.extranonce1.hex()
        del pool


async def test_suggest_difficulty_before_authorize_sets_the_first_difficulty() -> None:
    async with (
        running_pool(difficulty=1e-5) as pool,
        running_proxy(proxy_config([pool.port], minimum=1e-8)) as proxy,
    ):
        miner = await ScriptedMiner.connect(proxy.ports[0])
        assert (await miner.request("mining.suggest_difficulty", [3e-6]))["result"] is True
        await miner.handshake(configure=False)
        assert miner.difficulty == 3e-6
        huge = await ScriptedMiner.connect(proxy.ports[0], worker="farm.huge")
        await huge.request("mining.suggest_difficulty", [1e9])
        await huge.handshake(configure=False)
        assert huge.difficulty == 1e-5  # clamped to the pool's difficulty
