"""Hashrate conservation: a simulated fleet of known hashrate mines through the proxy, and
the work the pool credits equals the work the miners did, within Poisson bounds."""

from __future__ import annotations

import math

from proxy.mining.target import target_from_difficulty
from proxy.tools import wait_until
from proxy.tools.simulate import Fleet, SimConfig
from tests.e2e.support import proxy_config, running_pool, running_proxy

MINER_DIFF = 1e-7
POOL_DIFF = 2e-6  # 20x the miners': the proxy forwards about one share in twenty


def within_poisson(observed: float, expected: float, sigmas: float = 6.0) -> bool:
    """A two-sided band of ``sigmas`` standard deviations (a false alarm in ~5e8 runs)."""
    return abs(observed - expected) <= sigmas * math.sqrt(expected) + 1


def hit_probability(difficulty: float) -> float:
    """The chance one hash meets ``difficulty``."""
    return (target_from_difficulty(difficulty) + 1) / 2**256


async def test_pool_credits_the_work_the_fleet_did() -> None:
    async with running_pool(difficulty=POOL_DIFF) as pool:
        config = proxy_config([pool.port], initial=MINER_DIFF)
        async with running_proxy(config) as proxy:
            fleet = Fleet(SimConfig(port=proxy.ports[0], hashrate=1e7, request_timeout=10.0), 6)
            await fleet.start()
            await fleet.wait_ready()
            await wait_until(lambda: pool.stats.accepted >= 150, timeout=120)
            totals = await fleet.stop()

            # Every request answered, every share accepted, nothing lost between the tiers.
            assert totals.unanswered == 0 and totals.replies_received == totals.requests_sent
            assert totals.rejected_total == 0
            assert pool.stats.rejected_total == 0
            assert proxy.pools.pools[0].accepted == pool.stats.accepted
            assert sum(w.accepted for w in proxy.stats.workers.values()) == totals.accepted

            # The miners' shares: Poisson in the hashes they did at their difficulty.
            assert within_poisson(totals.accepted, totals.hashes * hit_probability(MINER_DIFF))
            # The pool's: Poisson in the same hashes at the pool's difficulty. Had the proxy
            # set miners above the pool or dropped shares, the pool would credit less.
            expected_pool_shares = totals.hashes * hit_probability(POOL_DIFF)
            assert within_poisson(pool.stats.accepted, expected_pool_shares), (
                pool.stats.accepted,
                expected_pool_shares,
            )
            credited_hashes = pool.stats.credited_work * 2**32 * 65536 / 65535
            assert 0.5 < credited_hashes / totals.hashes < 1.5
