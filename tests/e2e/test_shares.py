"""Loopback end to end: bundled pool <- proxy <- scripted miners, share by share."""

from __future__ import annotations

from proxy.mining.share import Verdict
from proxy.mining.target import target_from_difficulty, target_from_nbits
from proxy.tools import wait_until
from tests.e2e.support import ScriptedMiner, proxy_config, running_pool, running_proxy

POOL_DIFF = 1e-6
MINER_DIFF = 1e-7


async def test_shares_accepted_locally_and_forwarded_when_they_meet_the_pool() -> None:
    async with running_pool(difficulty=POOL_DIFF) as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        assert miner.difficulty == MINER_DIFF
        assert miner.extranonce2_size == 6  # pool gives 8, the proxy keeps a 2-byte prefix

        local = miner.find_share()
        while local.hash_int <= target_from_difficulty(POOL_DIFF):
            local = miner.find_share()
        assert (await miner.submit(local))["result"] is True

        forwarded = miner.find_share(above=POOL_DIFF)
        reply = await miner.submit(forwarded)
        assert reply == {"id": reply["id"], "result": True, "error": None}
        await wait_until(lambda: pool.stats.accepted == 1)  # only the share that meets the pool

        stats = proxy.stats.workers["farm.w1"]
        assert stats.accepted == 2
        assert stats.difficulty_sum == 2 * MINER_DIFF
        assert sum(stats.counts) == 0
        await miner.close()


async def test_every_reject_reason_is_answered_and_counted() -> None:
    async with running_pool(difficulty=POOL_DIFF) as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        share = miner.find_share()
        params = share.params(miner.worker)

        async def submit(p: list[str]) -> list[object]:
            reply = await miner.request("mining.submit", p)
            assert reply["result"] is not True
            error: list[object] = reply["error"]
            return error

        assert (await submit([miner.worker, "nope", *params[2:]]))[0] == 21
        assert (await miner.submit(share))["result"] is True
        assert (await submit(params))[:2] == [22, "Duplicate share"]
        low = miner.find_share(meets=False)
        assert (await submit(low.params(miner.worker)))[:2] == [23, "Low difficulty share"]
        bad_ntime = miner.find_share()
        early = f"{int(bad_ntime.ntime, 16) - 1:08x}"
        assert (
            await submit([miner.worker, bad_ntime.job_id, bad_ntime.extranonce2, early, bad_ntime.nonce])
        )[0] == 20
        outside_mask = [*miner.find_share().params(miner.worker), "00000001"]
        assert (await submit(outside_mask))[:2] == [20, "Invalid version bits"]
        short_en2 = [miner.worker, share.job_id, "00", share.ntime, share.nonce]
        assert (await submit(short_en2))[0] == 20
        assert (await submit(["intruder.w9", *params[1:]]))[:2] == [24, "Unauthorized worker"]

        counts = proxy.stats.workers["farm.w1"].counts
        for verdict in (
            Verdict.JOB_NOT_FOUND,
            Verdict.DUPLICATE,
            Verdict.LOW_DIFFICULTY,
            Verdict.INVALID_NTIME,
            Verdict.INVALID_VERSION,
            Verdict.INVALID_PARAMS,
            Verdict.UNAUTHORIZED,
        ):
            assert counts[verdict] == 1, verdict
        # A share for a name never authorized here counts against the connection's worker,
        # and no series is made up for the name.
        assert "intruder.w9" not in proxy.stats.workers
        await miner.close()


async def test_version_rolling_share_is_valid_upstream() -> None:
    async with running_pool(difficulty=POOL_DIFF) as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        assert miner.version_mask == 0x1FFFE000
        rolled = miner.find_share(above=POOL_DIFF, roll=0x00002000)
        assert (await miner.submit(rolled))["result"] is True
        await wait_until(lambda: pool.stats.accepted == 1)
        assert pool.stats.rejected_total == 0
        await miner.close()


async def test_pool_rejection_is_passed_back_to_the_miner() -> None:
    async with (
        running_pool(difficulty=POOL_DIFF, reject_every=1) as pool,
        running_proxy(proxy_config([pool.port])) as proxy,
    ):
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        reply = await miner.submit(miner.find_share(above=POOL_DIFF))
        assert reply["result"] is not True
        assert reply["error"][:2] == [20, "Rejected by test pool"]
        stats = proxy.stats.workers["farm.w1"]
        assert stats.rejected("upstream_rejected") == 1
        assert stats.accepted == 0
        await miner.close()


async def test_clean_jobs_voids_earlier_jobs() -> None:
    async with running_pool(difficulty=POOL_DIFF) as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        old = miner.find_share()
        pool.new_job(clean=True)
        await miner.wait_for(lambda: len(miner.notifications) >= 3 and miner.jobs[-1].job_id != old.job_id)
        assert miner.jobs[-1].clean is True
        reply = await miner.submit(old)
        assert reply["error"][0] == 21
        assert (await miner.submit(miner.find_share()))["result"] is True
        await miner.close()


async def test_block_candidate_goes_upstream_whatever_its_difficulty() -> None:
    # nbits 207fffff (regtest): nearly every hash is a block; the miner's difficulty is set
    # far above, so these shares are low difficulty for the miner but still blocks.
    async with (
        running_pool(difficulty=POOL_DIFF, nbits=0x207FFFFF) as pool,
        running_proxy(proxy_config([pool.port])) as proxy,
    ):
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        network = target_from_nbits(0x207FFFFF)
        block = miner.find_share(meets=False)
        while block.hash_int > network:
            block = miner.find_share(meets=False)
        reply = await miner.submit(block)
        assert reply["result"] is True
        await wait_until(lambda: len(pool.stats.blocks) >= 1)
        assert proxy.pools.pools[0].blocks == 1
        assert proxy.stats.workers["farm.w1"].blocks == 1
        await miner.close()


async def test_two_miners_never_share_extranonce_space() -> None:
    async with running_pool(difficulty=POOL_DIFF) as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miners = [await ScriptedMiner.connect(proxy.ports[0], worker=f"farm.w{i}") for i in range(3)]
        for miner in miners:
            await miner.handshake()
        assert len({m.extranonce1 for m in miners}) == 3
        assert len(pool.sessions) == 1  # all three on one upstream connection
        # The same extranonce2 and nonce from two miners are two different shares.
        shares = [m.find_share(above=POOL_DIFF) for m in miners[:2]]
        for miner, share in zip(miners, shares, strict=False):
            assert (await miner.submit(share))["result"] is True
        await wait_until(lambda: pool.stats.accepted == 2)
        for miner in miners:
            await miner.close()


async def test_forwarded_share_gets_local_verdict_when_pool_is_silent() -> None:
    async with running_pool(difficulty=POOL_DIFF) as pool:
        config = proxy_config([pool.port], extra="submit_timeout = 0.3")
        async with running_proxy(config) as proxy:
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.handshake()
            pool.silence(jobs=False, replies=True)
            reply = await miner.submit(miner.find_share(above=POOL_DIFF))
            assert reply["result"] is True
            stats = proxy.stats.workers["farm.w1"]
            assert stats.upstream_timeouts == 1
            assert proxy.pools.pools[0].timeouts == 1
            await miner.close()


async def test_miner_difficulty_is_clamped_to_the_pool_difficulty() -> None:
    async with running_pool(difficulty=POOL_DIFF) as pool:
        config = proxy_config([pool.port], initial=1e-3, minimum=1e-4)
        async with running_proxy(config) as proxy:
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.handshake()
            assert miner.difficulty == POOL_DIFF  # never above the pool: no work lost
            pool.set_difficulty(POOL_DIFF / 4)
            await miner.wait_for(lambda: miner.difficulty == POOL_DIFF / 4)
            await miner.wait_for(lambda: miner.jobs[-1].job_id != miner.jobs[0].job_id)
            assert (await miner.submit(miner.find_share(above=POOL_DIFF / 4)))["result"] is True
            await wait_until(lambda: pool.stats.accepted == 1)
            await miner.close()
