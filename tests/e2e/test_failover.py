"""Failover between pools and back, with no miner disconnected and no request unanswered."""

from __future__ import annotations

from proxy.tools import wait_until
from tests.e2e.support import ScriptedMiner, proxy_config, running_pool, running_proxy

FAST_FAILOVER = "backoff_initial = 0.05\nbackoff_max = 0.2\nprimary_hold = 0.3\nconnect_timeout = 1.0"


async def test_failover_to_the_second_pool_and_back_without_disconnecting() -> None:
    async with running_pool(seed=1) as primary, running_pool(seed=2) as backup:
        config = proxy_config([primary.port, backup.port], upstream=FAST_FAILOVER)
        async with running_proxy(config) as proxy:
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.handshake()
            extranonce1 = miner.extranonce1
            assert (await miner.submit(miner.find_share(above=1e-6)))["result"] is True
            await wait_until(lambda: primary.stats.accepted == 1)

            # A forwarded share is in flight when the primary dies: it must still be answered.
            primary.silence(jobs=True, replies=True)
            in_flight = miner.find_share(above=1e-6)
            await miner.send(
                {"id": "inflight", "method": "mining.submit", "params": in_flight.params(miner.worker)}
            )
            await wait_until(lambda: proxy.pools.pools[0].connections[0].pending != {})
            await primary.stop_listening()
            primary.drop_all()
            assert (await miner.reply("inflight"))["result"] is True  # local verdict, counted
            assert proxy.stats.workers["farm.w1"].upstream_timeouts == 1

            # The miner is moved to the backup: same extranonce1, a fresh job, no reconnect.
            await wait_until(lambda: proxy.pools.active is proxy.pools.pools[1])
            primary_job = miner.jobs[-1].job_id
            await miner.wait_for(lambda: miner.jobs[-1].job_id != primary_job)
            assert miner.extranonce1 == extranonce1
            assert (await miner.submit(miner.find_share(above=1e-6)))["result"] is True
            await wait_until(lambda: backup.stats.accepted == 1)

            # The primary comes back; after primary_hold the miner returns to it.
            primary.unsilence()
            await primary.listen()
            await wait_until(lambda: proxy.pools.active is proxy.pools.pools[0])
            backup_job = miner.jobs[-1].job_id
            await miner.wait_for(lambda: miner.jobs[-1].job_id != backup_job)
            accepted_before = primary.stats.accepted
            assert (await miner.submit(miner.find_share(above=1e-6)))["result"] is True
            await wait_until(lambda: primary.stats.accepted == accepted_before + 1)
            assert len(proxy.server.sessions) == 1  # never disconnected
            await miner.close()


async def test_miners_wait_for_a_pool_when_none_is_ready() -> None:
    async with running_pool(seed=3) as pool:
        config = proxy_config([pool.port], upstream=FAST_FAILOVER)
        async with running_proxy(config) as proxy:
            await pool.stop_listening()
            pool.drop_all()
            await wait_until(lambda: not proxy.pools.pools[0].is_ready)
            miner = await ScriptedMiner.connect(proxy.ports[0], worker="farm.late")
            await miner.send({"id": 1, "method": "mining.subscribe", "params": ["late/1"]})
            await miner.send({"id": 2, "method": "mining.authorize", "params": ["farm.late", "x"]})
            await pool.listen()
            sub = await miner.reply(1)  # answered once the pool is back, in order
            assert sub["result"][2] == 6
            assert (await miner.reply(2))["result"] is True
            await miner.wait_for(lambda: bool(miner.jobs))
            miner.extranonce1 = bytes.fromhex(sub["result"][1])
            miner.extranonce2_size = 6
            assert (await miner.submit(miner.find_share()))["result"] is True
            await miner.close()


async def test_pool_that_refuses_authorization_fails_over() -> None:
    async with running_pool(seed=4) as backup:
        config = proxy_config([1, backup.port], upstream=FAST_FAILOVER)  # port 1: refused
        async with running_proxy(config) as proxy:
            assert proxy.pools.active is proxy.pools.pools[1]
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.handshake()
            assert (await miner.submit(miner.find_share()))["result"] is True
            await miner.close()
