"""Fixtures of the tools tier: the bundled test pool and simulated miners, loopback only.

Like every async test, these also run on uvloop (see tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.tools.pool import PoolConfig, TestPool
from proxy.tools.simulate import Fleet, SimConfig
from tests.tools.support import LOOPBACK, FleetFactory, PoolFactory


@pytest.fixture
async def make_pool() -> AsyncIterator[PoolFactory]:
    """Start test pools on loopback (a free port each); all are stopped at teardown."""
    pools: list[TestPool] = []

    async def make(**overrides: Any) -> TestPool:
        settings: dict[str, Any] = {"host": LOOPBACK, "seed": len(pools) + 1, "job_interval": 3600.0}
        settings.update(overrides)
        pool = TestPool(PoolConfig(**settings))
        await pool.start()
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.stop()


@pytest.fixture
async def make_fleet(make_pool: PoolFactory) -> AsyncIterator[FleetFactory]:
    """Start fleets of simulated miners against a pool; stopped at teardown, before the pools."""
    fleets: list[Fleet] = []

    async def make(pool: TestPool, miners: int = 1, *, ready: bool = True, **overrides: Any) -> Fleet:
        settings: dict[str, Any] = {
            "host": LOOPBACK,
            "port": pool.port,
            "hashrate": 1e7,  # as fast as Python goes: tests wait for share counts, not time
            "reconnect_delay": 0.02,
            "request_timeout": 5.0,
        }
        settings.update(overrides)
        fleet = Fleet(SimConfig(**settings), miners)
        fleets.append(fleet)
        await fleet.start()
        if ready:
            await fleet.wait_ready()
        return fleet

    yield make
    for fleet in fleets:
        await fleet.stop(drain_timeout=1.0)
