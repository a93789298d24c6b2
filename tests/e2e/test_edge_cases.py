"""Edge cases around version masks, closing, shutdown, redirects and bad pool input."""

from __future__ import annotations

from proxy.tools import wait_until
from tests.e2e.support import ScriptedMiner, proxy_config, running_pool, running_proxy

FAST = "backoff_initial = 0.05\nbackoff_max = 0.2\nprimary_hold = 0.2\nconnect_timeout = 2.0"


async def test_miner_told_a_mask_before_any_pool_is_corrected_once_placed() -> None:
    async with (
        running_pool(seed=21) as pool,
        running_proxy(proxy_config([pool.port], upstream=FAST)) as proxy,
    ):
        await pool.stop_listening()
        pool.drop_all()
        await wait_until(lambda: not proxy.pools.pools[0].is_ready)
        pool.version_mask = 0x00FFE000  # the pool that comes back grants fewer bits
        miner = await ScriptedMiner.connect(proxy.ports[0])
        configured = await miner.request(
            "mining.configure", [["version-rolling"], {"version-rolling.mask": "ffffffff"}]
        )
        assert configured["result"]["version-rolling.mask"] == "1fffe000"  # the last pool's mask
        miner.version_mask = 0x1FFFE000
        await miner.send({"id": "s", "method": "mining.subscribe", "params": ["late/1"]})
        await pool.listen()
        sub = (await miner.reply("s"))["result"]
        miner.extranonce1, miner.extranonce2_size = bytes.fromhex(sub[1]), sub[2]
        assert (await miner.request("mining.authorize", [miner.worker, "x"]))["result"] is True
        await miner.wait_for(lambda: miner.version_mask == 0x00FFE000 and bool(miner.jobs))
        assert (await miner.submit(miner.find_share(roll=0x00002000)))["result"] is True
        assert (await miner.submit(miner.find_share(roll=0x10000000)))["error"][0] == 20
        await miner.close()


async def test_configure_after_subscribe_grants_rolling_that_validation_honours() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake(configure=False)
        reply = await miner.request(
            "mining.configure", [["version-rolling"], {"version-rolling.mask": "ffffffff"}]
        )
        miner.version_mask = int(reply["result"]["version-rolling.mask"], 16)
        assert (await miner.submit(miner.find_share(roll=0x00004000)))["result"] is True
        await miner.close()


async def test_half_closed_miner_still_gets_the_pool_verdict() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        pool.silence(jobs=False, replies=True)
        share = miner.find_share(above=1e-6)
        await miner.send({"id": "last", "method": "mining.submit", "params": share.params(miner.worker)})
        await wait_until(lambda: proxy.pools.pools[0].connections[0].pending != {})
        miner.writer.write_eof()  # the miner is done sending, still reading
        pool.unsilence()
        conn = proxy.pools.pools[0].connections[0]
        conn.shares.flush_pending()  # as the submit timeout would, without waiting for it
        assert (await miner.reply("last"))["result"] is True
        assert await miner.closed()


async def test_shutdown_answers_forwarded_shares_in_flight() -> None:
    async with running_pool() as pool:
        async with running_proxy(proxy_config([pool.port])) as proxy:
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.handshake()
            pool.silence(jobs=False, replies=True)
            share = miner.find_share(above=1e-6)
            await miner.send(
                {"id": "inflight", "method": "mining.submit", "params": share.params(miner.worker)}
            )
            await wait_until(lambda: proxy.pools.pools[0].connections[0].pending != {})
        # running_proxy stopped the proxy: the share was answered before the miner was closed.
        assert (await miner.reply("inflight"))["result"] is True


async def test_failed_same_host_redirect_falls_back_to_the_configured_port() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port], upstream=FAST)) as proxy:
        first = pool.stats.connections
        pool.reconnect(host="127.0.0.1", port=1)  # same host, a port nothing listens on
        await wait_until(lambda: pool.stats.connections > first and bool(pool.started_sessions))
        assert proxy.pools.pools[0].redirect is None


async def test_pool_sending_an_unusable_extranonce_is_dropped_and_rejoined() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port], upstream=FAST)) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        first = pool.stats.connections
        pool.broadcast(b'{"id":null,"method":"mining.set_extranonce","params":["abcd",-3]}\n')
        await wait_until(lambda: pool.stats.connections > first and bool(pool.started_sessions))
        assert all(n["method"] != "mining.set_extranonce" for n in miner.notifications)
        old_job = miner.jobs[-1].job_id
        await miner.wait_for(lambda: miner.jobs[-1].job_id != old_job)
        assert miner.jobs[-1].clean is True  # moved to the new connection's work
        assert (await miner.submit(miner.find_share()))["result"] is True
        await miner.close()


async def test_a_second_subscribe_result_from_the_pool_is_ignored() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        conn = proxy.pools.pools[0].connections[0]
        allocator = conn.allocator
        pool.broadcast(b'{"id":2,"result":[[],"00000000",8],"error":null}\n')
        first = await ScriptedMiner.connect(proxy.ports[0], worker="farm.a")
        await first.handshake()
        assert conn.allocator is allocator  # prefixes already handed out stay valid
        second = await ScriptedMiner.connect(proxy.ports[0], worker="farm.b")
        await second.handshake()
        assert first.extranonce1 != second.extranonce1


async def test_one_connection_cannot_authorize_unlimited_workers() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        for i in range(63):
            assert (await miner.request("mining.authorize", [f"farm.extra{i}", "x"]))["result"] is True
        refused = await miner.request("mining.authorize", ["farm.one-too-many", "x"])
        assert refused["error"][:2] == [24, "Too many workers on one connection"]
        assert "farm.one-too-many" not in proxy.stats.workers
        await miner.close()
        await wait_until(lambda: proxy.stats.workers["farm.extra0"].connections == 0)


async def test_share_on_the_old_pool_job_after_failback_goes_to_the_old_pool() -> None:
    async with running_pool(seed=31) as primary, running_pool(seed=32) as backup:
        config = proxy_config([primary.port, backup.port], upstream=FAST)
        async with running_proxy(config) as proxy:
            await primary.stop_listening()
            primary.drop_all()
            await wait_until(lambda: proxy.pools.active is proxy.pools.pools[1])
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.handshake()
            backup_job = miner.jobs[-1]
            await primary.listen()
            await wait_until(lambda: proxy.pools.active is proxy.pools.pools[0])
            await miner.wait_for(lambda: miner.jobs[-1].job_id != backup_job.job_id)
            # Work on the backup's job, finished after the move, still counts at the backup.
            late = miner.find_share(job=backup_job, above=1e-6)
            assert (await miner.submit(late))["result"] is True
            await wait_until(lambda: backup.stats.accepted == 1)
            assert primary.stats.accepted == 0
            await miner.close()
