"""Weighted routing end to end: bundled pools, simulated miners, judged by the pools' own
ledgers (the test pool hashes every share itself) and by what the API shows."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.app import Proxy
from proxy.config import load_config
from proxy.tools import wait_until
from proxy.tools.pool import TestPool
from proxy.tools.simulate import Fleet, SimConfig
from tests.e2e.support import running_pool

DIFF = 1e-6  # miners and pools alike: every share is forwarded, so the ledgers see them all
TOKEN = "routing-admin-token-0123456789"


def config_text(ports: list[int], groups: str, token_file: Path | None = None, upstream: str = "") -> str:
    """A proxy config: pools pool0.. on ``ports``, then ``groups``."""
    pools = "".join(
        f'[[pools]]\nname = "pool{i}"\nurl = "stratum+tcp://127.0.0.1:{port}"\nuser = "acct.proxy{i}"\n'
        for i, port in enumerate(ports)
    )
    admin = f'admin_token_file = "{token_file}"\n' if token_file is not None else ""
    return (
        '[server]\nlisten = ["127.0.0.1:0"]\n'
        f"{pools}"
        f"[upstream]\nbackoff_initial = 0.05\nbackoff_max = 0.2\nprimary_hold = 0.3\n{upstream}"
        f"[difficulty]\ninitial = {DIFF}\nminimum = 1e-9\nvardiff = false\n"
        f'[http]\nlisten = "127.0.0.1:0"\n{admin}'
        f"{groups}"
    )


def two_routes(split: str, first: int, second: int, slice_seconds: float = 5) -> str:
    return (
        f'[[groups]]\nname = "site"\nsplit = "{split}"\nslice_seconds = {slice_seconds}\n'
        f'[[groups.routes]]\nweight = {first}\npools = ["pool0"]\n'
        f'[[groups.routes]]\nweight = {second}\npools = ["pool1"]\n'
    )


@asynccontextmanager
async def routed_proxy(
    tmp_path: Path, pools: list[TestPool], groups: str, upstream: str = ""
) -> AsyncIterator[Proxy]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    path = tmp_path / "proxy.toml"
    path.write_text(config_text([p.port for p in pools], groups, token_file, upstream))
    proxy = Proxy(load_config(path), config_path=str(path), sweep_interval=0.1)
    await proxy.start()
    try:
        await wait_until(lambda: all(p.is_ready for p in proxy.pools.pools))
        yield proxy
    finally:
        await proxy.stop()


async def http(
    proxy: Proxy, method: str, path: str, body: object = None, token: str | None = TOKEN
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"http://127.0.0.1:{proxy.http.port}{path}", data=data, headers=headers) as r,
    ):
        return r.status, json.loads(await r.text())


@asynccontextmanager
async def mining(
    tmp_path: Path, groups: str, seed: int, miners: int, hashrate: float = 40_000.0, upstream: str = ""
) -> AsyncIterator[tuple[Proxy, TestPool, TestPool, Fleet]]:
    """Two bundled pools, a proxy routing to them by ``groups``, and a mining fleet."""
    async with (
        running_pool(difficulty=DIFF, seed=seed) as a,
        running_pool(difficulty=DIFF, seed=seed + 1) as b,
        routed_proxy(tmp_path, [a, b], groups, upstream) as proxy,
    ):
        fleet = Fleet(SimConfig(port=proxy.ports[0], hashrate=hashrate, request_timeout=10.0), miners)
        await fleet.start()
        await fleet.wait_ready()
        yield proxy, a, b, fleet


def credited(pool: TestPool) -> float:
    return pool.stats.credited_work


async def test_a_time_split_sends_every_share_to_the_pool_whose_job_it_solves(tmp_path: Path) -> None:
    async with mining(tmp_path, two_routes("time", 50, 50), 61, 3) as (_proxy, a, b, miners):
        connections = a.stats.connections + b.stats.connections
        # Several slices: each miner goes back and forth between the two pools' work.
        await wait_until(lambda: a.stats.accepted >= 80 and b.stats.accepted >= 80, timeout=60)
        totals = await miners.stop()

        # Every share the miners were told was good, a pool took: a share sent to the
        # pool that did not issue its job would be rejected there (unknown job).
        assert a.stats.rejected_total == 0 and b.stats.rejected_total == 0
        assert totals.rejected_total == 0
        assert totals.unanswered == 0
        assert totals.accepted == a.stats.accepted + b.stats.accepted
        # Switches are new work on the same connection: no miner reconnected, and the
        # proxy opened no new pool connections for them.
        assert totals.reconnects == 0 and totals.connects == 3
        assert a.stats.connections + b.stats.connections == connections


@pytest.mark.slow
async def test_a_single_miners_time_is_split_by_weight(tmp_path: Path) -> None:
    async with mining(tmp_path, two_routes("time", 70, 30), 63, 1, 100_000.0) as (proxy, a, b, miner):
        start = proxy.clock()
        # Whole slices of 5 s: four of them, and at least 300 shares.
        await wait_until(
            lambda: proxy.clock() - start >= 20 and a.stats.accepted + b.stats.accepted >= 300, timeout=90
        )
        elapsed = proxy.clock() - start
        totals = await miner.stop()
        shares = a.stats.accepted + b.stats.accepted
        share_a = a.stats.accepted / shares
        # Poisson noise of the share counts (6 sigma), plus at most one part-slice of
        # the run that can fall either way (5 s of the elapsed time).
        bound = 6 * math.sqrt(0.7 * 0.3 / shares) + 5.0 / elapsed
        assert abs(share_a - 0.7) <= bound, (share_a, bound, shares)
        assert b.stats.accepted > 0 and a.stats.accepted > b.stats.accepted
        assert totals.rejected_total == 0 and totals.unanswered == 0


async def test_a_miners_split_moves_whole_miners_and_the_api_shows_it(tmp_path: Path) -> None:
    async with mining(tmp_path, two_routes("miners", 70, 30), 65, 10, 5_000.0) as (proxy, a, b, miners):
        # Every miner is on one pool: seven on the first, three on the second.
        status, body = await http(proxy, "GET", "/api/v1/groups")
        assert status == 200
        site = next(g for g in body["groups"] if g["name"] == "site")
        assert site["split"] == "miners" and site["miners"] == 10
        assert [r["miners"] for r in site["routes"]] == [7, 3]
        assert [r["serving_pool"] for r in site["routes"]] == ["pool0", "pool1"]
        assert [r["health"] for r in site["routes"]] == [{"pool0": "healthy"}, {"pool1": "healthy"}]
        assert [r["weight"] for r in site["routes"]] == [70, 30]
        assert sum(len(c.miners) for c in proxy.pools.pools[0].connections) == 7
        await wait_until(lambda: a.stats.accepted > 20 and b.stats.accepted > 5, timeout=30)
        totals = await miners.stop()
        assert totals.rejected_total == 0 and a.stats.rejected_total == 0 and b.stats.rejected_total == 0
        status, body = await http(proxy, "GET", "/api/v1/groups")
        site = next(g for g in body["groups"] if g["name"] == "site")
        work = [sum(r["share_difficulty_total"].values()) for r in site["routes"]]
        # The proxy's own measure matches the pools' ledgers (every share is forwarded).
        assert work[0] == pytest.approx(credited(a), rel=0.01)
        assert work[1] == pytest.approx(credited(b), rel=0.01)


async def test_new_weights_through_the_api_move_the_hashrate(tmp_path: Path) -> None:
    async with mining(tmp_path, two_routes("time", 50, 50), 67, 2) as (proxy, a, b, miners):
        await wait_until(lambda: a.stats.accepted > 10 and b.stats.accepted > 10, timeout=60)

        # Bad bodies: 400 with the reason, and nothing changes.
        bad = [
            ({"routes": [{"weight": 1, "pools": ["nope"]}]}, "unknown pool 'nope'"),
            ({"routes": [{"weight": 0, "pools": ["pool0"]}]}, "weight"),
            ({"routes": []}, "at least one route"),
            (b"{not json", "malformed"),
        ]
        for body, reason in bad:
            status, reply = await http(proxy, "PUT", "/api/v1/groups/site", body)
            assert status == 400 and reason in reply["error"], (body, reply)
        assert (await http(proxy, "PUT", "/api/v1/groups/site", {"routes": []}, token=None))[0] == 401
        good = {"routes": [{"weight": 1, "pools": ["pool0"]}]}
        assert (await http(proxy, "PUT", "/api/v1/groups/nope", good))[0] == 404
        padded = json.dumps(good | {"padding": "x" * 70_000}).encode()
        assert (await http(proxy, "PUT", "/api/v1/groups/site", padded))[0] == 413
        status, body = await http(proxy, "GET", "/api/v1/groups")
        assert [r["weight"] for r in body["groups"][0]["routes"]] == [50, 50]

        # Everything to the second pool: the first gets no more shares once the miners
        # have had the new work (and shares on its jobs in flight are answered).
        status, view = await http(
            proxy, "PUT", "/api/v1/groups/site", {"routes": [{"weight": 1, "pools": ["pool1"]}]}
        )
        assert status == 200
        assert view["weights_from"].startswith("api")
        assert [r["pools"] for r in view["routes"]] == [["pool1"]]
        await wait_until(lambda: all(len(c.miners) == 0 for c in proxy.pools.pools[0].connections))
        before_a, before_b = a.stats.accepted, b.stats.accepted
        await wait_until(lambda: b.stats.accepted >= before_b + 50, timeout=60)
        totals = await miners.stop()
        assert a.stats.accepted <= before_a + 2 * 2  # at most what was in flight per miner
        assert totals.rejected_total == 0 and totals.unanswered == 0 and totals.reconnects == 0


async def test_a_route_that_goes_down_gives_its_weight_to_the_other(tmp_path: Path) -> None:
    async with mining(tmp_path, two_routes("miners", 50, 50), 69, 4, 5_000.0) as (proxy, a, b, miners):
        await b.stop_listening()
        b.drop_all()
        # The second route's miners move to the first pool, keeping their connections.
        await wait_until(lambda: sum(len(c.miners) for c in proxy.pools.pools[0].connections) == 4)
        _status, body = await http(proxy, "GET", "/api/v1/groups")
        site = body["groups"][0]
        assert site["routes"][1]["serving_pool"] is None
        assert site["routes"][1]["health"] == {"pool1": "down"}
        assert [r["fraction"] for r in site["routes"]] == [1.0, 0.0]
        before = a.stats.accepted
        await wait_until(lambda: a.stats.accepted >= before + 20, timeout=30)
        totals = await miners.stop()
        assert totals.reconnects == 0
        assert a.stats.rejected_total == 0


async def pool_view_when(
    proxy: Proxy, index: int, condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll ``/api/v1/pools`` until pool ``index`` meets ``condition``; its view then."""
    for _ in range(600):
        _, body = await http(proxy, "GET", "/api/v1/pools")
        view: dict[str, Any] = body["pools"][index]
        if condition(view):
            return view
        await asyncio.sleep(0.05)
    raise TimeoutError(f"pool {index} never met the condition: {view}")


HEALTH = "health_window = 5.0\nhealth_min_shares = 10\nreject_ratio = 0.5\n"


async def test_a_pool_degraded_by_a_reject_storm_loses_its_miners_and_regains_them(tmp_path: Path) -> None:
    # No groups: plain priority failover, where health beyond TCP matters just as much.
    async with mining(tmp_path, "", 71, 2, 20_000.0, upstream=HEALTH) as (proxy, a, b, miners):
        await wait_until(lambda: a.stats.accepted > 10)
        a.reject_storm = True
        # Connected, answering, refusing everything: degraded, and its miners move.
        first = await pool_view_when(proxy, 0, lambda view: view["health"] == "degraded")
        await wait_until(lambda: b.stats.accepted > 10, timeout=30)
        _, body = await http(proxy, "GET", "/api/v1/pools")
        assert first["health"] == "degraded" and first["state"] == "degraded"
        assert "rejected" in first["health_reason"]
        assert body["pools"][1]["health"] == "healthy"
        rejected = a.stats.rejected_total
        a.reject_storm = False
        # Without traffic its bad window ages out; after primary_hold of health it gets
        # the miners back, over the same miner connections.
        before = a.stats.accepted
        await wait_until(lambda: a.stats.accepted > before + 10, timeout=30)
        totals = await miners.stop()
        assert totals.reconnects == 0 and totals.unanswered == 0
        assert a.stats.rejected_total == rejected  # no storm, no more rejects
        # The miners heard the pool's rejects during the storm and nothing else bad.
        assert totals.rejected_total == rejected


async def test_a_reload_puts_the_files_weights_back(tmp_path: Path) -> None:
    async with mining(tmp_path, two_routes("miners", 70, 30), 73, 4, 5_000.0) as (proxy, a, b, miners):
        status, _ = await http(
            proxy, "PUT", "/api/v1/groups/site", {"routes": [{"weight": 1, "pools": ["pool1"]}]}
        )
        assert status == 200
        await wait_until(lambda: all(len(c.miners) == 0 for c in proxy.pools.pools[0].connections))
        await wait_until(lambda: b.stats.accepted > 5, timeout=30)
        _, body = await http(proxy, "GET", "/api/v1/groups")
        before = body["groups"][0]["routes"][0]["share_difficulty_total"]["pool1"]
        assert before > 0
        # The file now says 50/50; a reload replaces the API's weights with the file's.
        path = tmp_path / "proxy.toml"
        path.write_text(
            path.read_text().replace("weight = 70", "weight = 50").replace("weight = 30", "weight = 50")
        )
        status, result = await http(proxy, "POST", "/api/v1/reload")
        assert status == 200 and result["changes"]["groups_changed"] is True
        _, body = await http(proxy, "GET", "/api/v1/groups")
        site = body["groups"][0]
        assert site["weights_from"] == "file"
        assert [(r["weight"], r["pools"]) for r in site["routes"]] == [(50, ["pool0"]), (50, ["pool1"])]
        # The work counters carry on across the PUT and the reload.
        assert site["routes"][1]["share_difficulty_total"]["pool1"] >= before
        # Whole miners come back to the first route, within the move budget: a quarter of
        # the group (here one miner) per minute.
        await wait_until(
            lambda: sum(len(c.miners) for c in proxy.pools.pools[0].connections) >= 1, timeout=30
        )
        totals = await miners.stop()
        assert totals.reconnects == 0 and totals.unanswered == 0
        assert a.stats.rejected_total == 0 and b.stats.rejected_total == 0


async def test_a_time_split_between_pools_of_different_difficulty_tells_the_miner(tmp_path: Path) -> None:
    # The second pool wants half the difficulty: a switch to it must lower the miner first
    # (set_difficulty before its job), and a switch back raise it again, or shares would be
    # rejected (by the proxy as low difficulty, or by a pool) or the pool under-credited.
    async with (
        running_pool(difficulty=DIFF, seed=75) as a,
        running_pool(difficulty=DIFF / 2, seed=76) as b,
        routed_proxy(tmp_path, [a, b], two_routes("time", 50, 50)) as proxy,
    ):
        fleet = Fleet(SimConfig(port=proxy.ports[0], hashrate=40_000.0, request_timeout=10.0), 2)
        await fleet.start()
        await fleet.wait_ready()
        await wait_until(lambda: a.stats.accepted >= 40 and b.stats.accepted >= 80, timeout=60)
        totals = await fleet.stop()
        assert totals.rejected_total == 0 and totals.unanswered == 0 and totals.reconnects == 0
        assert a.stats.rejected_total == 0 and b.stats.rejected_total == 0
        # Each miner mined at exactly the pool's difficulty on each route: every share it
        # had accepted reached a pool (none was below a pool's target and kept back, as a
        # miner not raised again on a would produce), and the work the miners were told
        # they did is what the pools credited (a miner not lowered on b would count 1e-6
        # per share there, b 5e-7).
        assert totals.accepted == a.stats.accepted + b.stats.accepted
        assert totals.accepted_work == pytest.approx(credited(a) + credited(b), rel=1e-6)
