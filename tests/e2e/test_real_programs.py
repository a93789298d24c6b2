"""What real miners (cpuminer, cpuminer-opt, bfgminer) and a real pool (ckpool 0.9.9) did
through the proxy, replayed with scripted doubles of their quirks.

Each test fails on the behaviour those programs showed before the fix: the miner's reply,
the pool's ledger and the proxy's API are what is checked.
"""

from __future__ import annotations

import asyncio

import aiohttp

from proxy.app import Proxy
from proxy.mining.target import target_from_difficulty, target_from_nbits
from proxy.tools import free_port, wait_until
from proxy.tools.pool import ABOVE_TARGET
from proxy.tools.simulate import Fleet, SimConfig
from tests.e2e.support import FoundShare, ScriptedMiner, proxy_config, running_pool, running_proxy

FAST = "backoff_initial = 0.05\nbackoff_max = 0.2\nprimary_hold = 0.2\nconnect_timeout = 2.0"


async def test_vardiff_does_not_run_away_from_a_miner_that_keeps_its_work() -> None:
    # The miner never applies a raise (cpuminer keeps its work, and its target, while the
    # header bytes are unchanged, which is the case for a raise's re-issued job): it goes
    # on submitting the first job at the first difficulty, fast. Each raise was counted
    # in shares at the new difficulty, so vardiff stepped x8 per 16 shares: 1e-7 -> 4e-4.
    async with (
        running_pool(difficulty=1e-3) as pool,
        running_proxy(
            proxy_config([pool.port], vardiff=True, target_share_interval=10.0, retarget_interval=30.0)
        ) as proxy,
    ):
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        first_job, first_difficulty = miner.jobs[0], miner.difficulty
        for _ in range(64):
            share = miner.find_share(difficulty=first_difficulty, job=first_job)
            assert (await miner.submit(share))["result"] is True  # judged at the old difficulty
        sent = [n["params"][0] for n in miner.notifications if n["method"] == "mining.set_difficulty"]
        raises = [d for d in sent if d > first_difficulty]
        assert len(raises) <= 1, sent  # one raise, then held until the miner applies it
        assert max(sent) <= first_difficulty * 8
        workers = proxy.stats.workers["farm.w1"]
        assert workers.accepted == 64
        await miner.close()


async def test_drain_sends_miners_back_to_the_address_they_connected_to() -> None:
    # A null host is ignored by cpuminer, and bfgminer rushes into the closed port: the
    # reconnect names the host and port, with the configured wait.
    async with running_pool() as pool, running_proxy(proxy_config([pool.port], "drain_wait = 3")) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        port = proxy.ports[0]
        drain = asyncio.get_running_loop().create_task(proxy.drain())
        await miner.wait_for(lambda: any(n["method"] == "client.reconnect" for n in miner.notifications))
        reconnect = next(n for n in miner.notifications if n["method"] == "client.reconnect")
        assert reconnect["params"] == ["127.0.0.1", port, 3]
        await miner.close()
        await drain


async def test_drain_target_sends_miners_to_another_instance() -> None:
    async with (
        running_pool() as pool,
        running_proxy(proxy_config([pool.port], 'drain_target = "127.0.0.9:4444"')) as proxy,
    ):
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        drain = asyncio.get_running_loop().create_task(proxy.drain())
        await miner.wait_for(lambda: any(n["method"] == "client.reconnect" for n in miner.notifications))
        reconnect = next(n for n in miner.notifications if n["method"] == "client.reconnect")
        assert reconnect["params"] == ["127.0.0.9", 4444, 0]
        await miner.close()
        await drain
        await wait_until(lambda: not proxy.server.sessions)


# --------------------------------------------------------------------------- ckpool doubles

REGTEST = 0x207FFFFF


def _below(share: FoundShare, difficulty: float) -> bool:
    return share.hash_int > target_from_difficulty(difficulty)


def _easy_candidate(miner: ScriptedMiner, pool_difficulty: float) -> FoundShare:
    """A share meeting the miner's target and regtest's, not the pool's."""
    network = target_from_nbits(REGTEST)
    while True:
        share = miner.find_share()
        if share.hash_int <= network and _below(share, pool_difficulty):
            return share


async def test_easy_network_candidates_are_answered_from_the_miners_target() -> None:
    # Regtest: nearly every hash meets the network target, so every share is a "block
    # candidate". ckpool answers those below its difficulty "Above target"; minerd was told
    # so for 99 shares of 99 that met its own target, and the proxy counted 95 blocks.
    pool_difficulty = 1e-5
    async with (
        running_pool(difficulty=pool_difficulty, nbits=REGTEST, blocks_need_share_difficulty=True) as pool,
        running_proxy(proxy_config([pool.port])) as proxy,
    ):
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()

        def easy_candidate() -> FoundShare:
            return _easy_candidate(miner, pool_difficulty)

        assert (await miner.submit(easy_candidate()))["result"] is True
        # A share the pool does want: its answer comes back after the pool's word on the
        # first one (one ordered stream), and it is a real block at the pool.
        block = miner.find_share(above=pool_difficulty)
        assert block.hash_int <= target_from_nbits(REGTEST)
        assert (await miner.submit(block))["result"] is True
        assert pool.stats.rejected[ABOVE_TARGET] == 1  # the first candidate was offered
        for _ in range(8):
            assert (await miner.submit(easy_candidate()))["result"] is True
        # The pool refused one candidate below its difficulty: no more were sent to it.
        assert pool.stats.rejected[ABOVE_TARGET] == 1
        assert len(pool.stats.blocks) == 1
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{proxy.http.port}/api/v1"
            async with http.get(f"{base}/pools") as response:
                view = (await response.json())["pools"][0]
            async with http.get(f"{base}/workers") as response:
                worker = (await response.json())["workers"][0]
        assert view["blocks"] == 1  # counted when the pool accepted it, not per candidate
        assert view["block_candidates"] == 2
        assert worker["accepted"] == 10 and sum(worker["rejected"].values()) == 0
        await miner.close()


async def test_a_job_the_pool_repeats_keeps_its_id() -> None:
    # ckpool re-sends its current job unchanged with clean_jobs; cpuminer keeps its work
    # (the header is the same) and goes on submitting the old id.
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        job = miner.jobs[-1]
        pool.resend_current(clean=True)
        # Forwarded, so its answer comes through the pool after the resend: once it is
        # here, the proxy has handled the repeat.
        shares = [miner.find_share(above=1e-6, job=job), miner.find_share(job=job)]
        shares.append(miner.find_share(above=1e-6, job=job))
        for share in shares:
            assert (await miner.submit(share))["result"] is True
        forwarded = sum(1 for share in shares if not _below(share, 1e-6))
        await wait_until(lambda: pool.stats.accepted == forwarded)
        assert pool.stats.rejected_total == 0
        assert [n for n in miner.notifications if n["method"] == "mining.notify"][1:] == []
        await miner.close()


async def test_minerd_fleet_sees_no_job_not_found_when_the_pool_repeats_its_job() -> None:
    async with (
        running_pool(difficulty=1e-6) as pool,
        running_proxy(proxy_config([pool.port], initial=1e-6)) as proxy,
    ):
        fleet = Fleet(SimConfig(port=proxy.ports[0], hashrate=20_000, keep_work_if_header_unchanged=True), 4)
        await fleet.start()
        await fleet.wait_ready()
        for _ in range(5):
            before = pool.stats.accepted
            pool.resend_current(clean=True)
            await wait_until(lambda b=before: pool.stats.accepted >= b + 4, 30.0)  # type: ignore[misc]
        totals = await fleet.stop()
        assert totals.accepted >= 20
        assert totals.rejected.get(21, 0) == 0
        assert pool.stats.rejected_total == 0


async def test_shares_in_flight_across_a_pool_reconnect_get_the_pools_verdict() -> None:
    # ckpool rejected a share and sent client.reconnect in the same write, then closed: the
    # proxy cut the read short and answered every share still in flight with `true`.
    async with (
        running_pool(reject_every=2, reconnect_after_reject=True) as pool,
        running_proxy(proxy_config([pool.port], upstream=FAST)) as proxy,
    ):
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        (session,) = pool.started_sessions
        shares = [miner.find_share(above=1e-6) for _ in range(3)]
        for i, share in enumerate(shares):  # all three in flight at once
            await miner.send({"id": 500 + i, "method": "mining.submit", "params": share.params(miner.worker)})
        first, second, third = [await miner.reply(500 + i) for i in range(3)]
        assert first["result"] is True
        # The pool's reject, read together with its reconnect, reaches the miner...
        assert second["result"] is not True and second["error"][0] == 20
        # ...and the share the pool never answered before it closed was sent again on the
        # resumed session: the pool credited it, and that is what the miner heard.
        assert third["result"] is True
        assert pool.stats.reconnects_after_reject == 1
        assert pool.stats.accepted == 2 and pool.stats.rejected_total == 1
        # A new connection resumed the old pool session (its extranonce1).
        (resumed,) = pool.started_sessions
        assert resumed is not session and resumed.extranonce1 == session.extranonce1
        await miner.close()


async def test_suggest_difficulty_is_an_integer_ckpool_can_parse() -> None:
    async with (
        running_pool(difficulty=1.0, integer_suggest_only=True) as pool,
        running_proxy(proxy_config([pool.port], initial=2.7, minimum=1e-9)) as proxy,
    ):
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()  # the miner wants 2.7, the pool gives 1
        await wait_until(
            lambda: bool(pool.stats.suggested_difficulties) or pool.stats.suggest_parse_failures > 0
        )
        assert pool.stats.suggest_parse_failures == 0
        assert pool.stats.suggested_difficulties == [2]  # rounded down: never above the pool
        assert miner.difficulty == 1.0
        await miner.close()


async def test_extranonce_subscribe_is_sent_once_the_pool_authorized_us() -> None:
    async with (
        running_pool(strict_extranonce_subscribe=True) as pool,
        running_proxy(proxy_config([pool.port])),
    ):
        await wait_until(lambda: any(s.extranonce_subscribed for s in pool.started_sessions))
        assert pool.stats.dropped_extranonce_subscribe == 0


async def test_upgrade_with_reuse_port_moves_cpuminer_like_miners_to_the_new_process() -> None:
    # The recipe: start the new process on the same port (reuse_port), then stop the old.
    # cpuminer ignores a reconnect without a host; every miner here does too.
    port = free_port()
    extra = "reuse_port = true\ndrain_grace = 10\n"
    async with running_pool(difficulty=1e-12) as pool:
        old = Proxy(
            proxy_config([pool.port], extra, initial=1e-12, minimum=1e-12, listen=f"127.0.0.1:{port}")
        )
        await old.start()
        fleet = Fleet(
            SimConfig(
                port=port, no_hash=True, share_rate=5.0, reconnect_delay=0.0, ignore_null_reconnect=True
            ),
            20,
        )
        try:
            await wait_until(lambda: old.pools.active is not None and old.pools.active.is_ready)
            await fleet.start()
            await fleet.wait_ready()
            async with running_proxy(
                proxy_config([pool.port], extra, initial=1e-12, minimum=1e-12, listen=f"127.0.0.1:{port}")
            ) as new:
                await old.drain()
                await old.stop()
                await wait_until(
                    lambda: len(new.server.sessions) == 20 and all(m.connected for m in fleet.miners)
                )
                base = {m.index: m.stats.accepted for m in fleet.miners}
                await wait_until(lambda: all(m.stats.accepted > base[m.index] for m in fleet.miners))
                totals = await fleet.stop()
        finally:
            await fleet.stop(drain_timeout=1.0)
            await old.stop()
    assert totals.ignored_reconnects == 0  # every reconnect named the host
    assert totals.unanswered == 0
    assert totals.reconnects == 20


async def test_a_verdict_after_the_reconnect_in_the_same_read_reaches_the_miner() -> None:
    # The reconnect first, then the reject, in one write: a client acting on the reconnect
    # at once drops the verdict behind it and invents one.
    async with (
        running_pool(reject_every=1, reconnect_after_reject=True, reconnect_first=True) as pool,
        running_proxy(proxy_config([pool.port], upstream=FAST)) as proxy,
    ):
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        reply = await miner.submit(miner.find_share(above=1e-6))
        assert reply["result"] is not True and reply["error"][0] == 20
        assert pool.stats.reconnects_after_reject == 1
        assert proxy.stats.workers["farm.w1"].upstream_timeouts == 0
        await miner.close()


async def test_shares_while_the_pool_sends_us_away_reach_the_resumed_session() -> None:
    # One pool, which sends us away for two seconds: shares found meanwhile wait for the
    # new connection, which resumes the session, instead of being answered by us.
    async with running_pool() as pool, running_proxy(proxy_config([pool.port], upstream=FAST)) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        (first,) = pool.started_sessions
        pool.reconnect(host="127.0.0.1", port=pool.port, wait=2)
        await wait_until(lambda: not pool.started_sessions)  # we left
        reply = await miner.submit(miner.find_share(above=1e-6))
        assert reply["result"] is True
        assert pool.stats.accepted == 1  # the pool credited it: the verdict is the pool's
        (resumed,) = pool.started_sessions
        assert resumed.extranonce1 == first.extranonce1
        assert proxy.stats.workers["farm.w1"].upstream_timeouts == 0
        await miner.close()


async def test_a_minerd_fleet_keeps_its_job_ids_across_a_resumed_pool_session() -> None:
    async with (
        running_pool(difficulty=1e-6) as pool,
        running_proxy(proxy_config([pool.port], initial=1e-6)) as proxy,
    ):
        fleet = Fleet(SimConfig(port=proxy.ports[0], hashrate=20_000, keep_work_if_header_unchanged=True), 2)
        await fleet.start()
        await fleet.wait_ready()
        (first,) = pool.started_sessions
        before = pool.stats.accepted
        pool.reconnect()
        await wait_until(lambda: bool(pool.started_sessions) and pool.started_sessions[0] is not first)
        await wait_until(lambda: pool.stats.accepted >= before + 10, 30.0)
        totals = await fleet.stop()
        assert pool.started_sessions[0].extranonce1 == first.extranonce1  # resumed
        assert totals.rejected.get(21, 0) == 0  # no "Job not found" after the resume
        assert pool.stats.rejected_total == 0


async def test_a_pool_that_refused_an_easy_candidate_gets_none_after_a_reconnect() -> None:
    pool_difficulty = 1e-5
    async with (
        running_pool(
            difficulty=pool_difficulty,
            nbits=REGTEST,
            blocks_need_share_difficulty=True,
            reconnect_after_reject=True,
        ) as pool,
        running_proxy(proxy_config([pool.port], upstream=FAST)) as proxy,
    ):
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()

        def easy_candidate() -> FoundShare:
            return _easy_candidate(miner, pool_difficulty)

        assert (await miner.submit(easy_candidate()))["result"] is True
        await wait_until(lambda: pool.stats.reconnects_after_reject == 1)
        await wait_until(lambda: proxy.pools.active is not None and proxy.pools.active.is_ready)
        for _ in range(5):
            assert (await miner.submit(easy_candidate()))["result"] is True
        # Through the pool, after the candidates: the pool has seen all it was sent.
        assert (await miner.submit(miner.find_share(above=pool_difficulty)))["result"] is True
        assert pool.stats.rejected[ABOVE_TARGET] == 1
        assert pool.stats.reconnects_after_reject == 1
        await miner.close()


async def test_a_miner_told_to_leave_still_gets_its_subscribe_answered() -> None:
    # A request sent before the miner read the reconnect is answered; it just gets no work.
    async with running_pool() as pool, running_proxy(proxy_config([pool.port], "drain_grace = 5")) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.request("mining.configure", [["version-rolling"], {"version-rolling.mask": "ffffffff"}])
        drain = asyncio.get_running_loop().create_task(proxy.drain())
        await miner.wait_for(lambda: any(n["method"] == "client.reconnect" for n in miner.notifications))
        subscribed = await miner.request("mining.subscribe", ["late/1"])
        assert isinstance(subscribed["result"], list) and len(subscribed["result"]) == 3
        authorized = await miner.request("mining.authorize", [miner.worker, "x"])
        assert authorized["result"] is True
        # One more round trip: work sent after the authorize would be read before its reply.
        assert (await miner.request("mining.extranonce.subscribe", []))["result"] is True
        assert not any(n["method"] in ("mining.notify", "mining.set_difficulty") for n in miner.notifications)
        await miner.close()
        await drain
