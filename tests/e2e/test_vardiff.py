"""Vardiff on the wire: set_difficulty, a fresh job id, and old jobs judged at the old difficulty."""

from __future__ import annotations

import pytest

from proxy.mining.target import target_from_difficulty
from proxy.mining.vardiff import SHARES_PER_RETARGET
from proxy.tools import wait_until
from proxy.upstream import v1 as upstream
from tests.e2e.support import ScriptedMiner, proxy_config, running_pool, running_proxy


async def test_retarget_sends_difficulty_then_fresh_job_and_honours_old_jobs() -> None:
    async with running_pool(difficulty=1e-5) as pool:
        config = proxy_config([pool.port], vardiff=True, target_share_interval=60.0, retarget_interval=60.0)
        async with running_proxy(config) as proxy:
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.handshake()
            start = miner.difficulty
            old_job = miner.jobs[-1]
            for _ in range(SHARES_PER_RETARGET):  # far faster than one per minute
                assert (await miner.submit(miner.find_share()))["result"] is True
            await miner.wait_for(lambda: miner.difficulty > start and miner.jobs[-1].job_id != old_job.job_id)
            raised = miner.difficulty
            assert raised == 8 * start  # one bounded step
            methods = [n["method"] for n in miner.notifications]
            assert methods[-2:] == ["mining.set_difficulty", "mining.notify"]
            fresh = miner.jobs[-1]
            assert fresh.clean is False and fresh.prevhash == old_job.prevhash

            # Work on the old job still counts at the old, lower difficulty...
            easy = miner.find_share(job=old_job, difficulty=start)
            while easy.hash_int <= target_from_difficulty(raised):
                easy = miner.find_share(job=old_job, difficulty=start)
            assert (await miner.submit(easy))["result"] is True
            # ...but on the fresh job it must meet the new one.
            low = miner.find_share(job=fresh, difficulty=start)
            while low.hash_int <= target_from_difficulty(raised):
                low = miner.find_share(job=fresh, difficulty=start)
            assert (await miner.submit(low))["error"][0] == 23
            assert (await miner.submit(miner.find_share(job=fresh)))["result"] is True
            await miner.close()


async def test_proxy_asks_the_pool_for_more_when_miners_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream, "SUGGEST_INTERVAL", 0.05)
    async with running_pool(difficulty=2e-7) as pool:
        config = proxy_config([pool.port], vardiff=True, target_share_interval=60.0, retarget_interval=60.0)
        async with running_proxy(config) as proxy:
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.handshake()
            assert miner.difficulty == 1e-7
            for _ in range(SHARES_PER_RETARGET):
                assert (await miner.submit(miner.find_share()))["result"] is True
            # Capped at the pool's 2e-7 although it wants 8e-7: the proxy asks the pool.
            await miner.wait_for(lambda: miner.difficulty == 2e-7)
            await wait_until(lambda: bool(pool.stats.suggested_difficulties))
            assert pool.stats.suggested_difficulties[-1] == pytest.approx(8e-7)
            pool.set_difficulty(8e-7)  # this pool takes the suggestion
            await wait_until(lambda: proxy.pools.pools[0].connections[0].difficulty == 8e-7)
            for _ in range(SHARES_PER_RETARGET):
                assert (await miner.submit(miner.find_share()))["result"] is True
            await miner.wait_for(lambda: miner.difficulty > 2e-7)
            assert miner.difficulty <= 8e-7
            await miner.close()
