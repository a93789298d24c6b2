"""The HTTP side against a live proxy: metrics, health, readiness, JSON API, no secrets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from proxy.app import Proxy
from proxy.config import parse_config
from proxy.tools import wait_until
from tests.e2e.support import HTTP_TOML, ScriptedMiner, proxy_config, running_pool, running_proxy

SECRET = "pool-pass-s3cret"


def _config(pool_port: int, upstream: str = "") -> Any:
    return parse_config(
        '[server]\nlisten = ["127.0.0.1:0"]\n'
        f'[[pools]]\nname = "main"\nurl = "stratum+tcp://127.0.0.1:{pool_port}"\n'
        f'user = "acct.proxy"\npassword = "{SECRET}"\n'
        f"[upstream]\n{upstream}\n"
        "[difficulty]\ninitial = 1e-7\nminimum = 1e-9\nvardiff = false\n" + HTTP_TOML
    )


async def _get(proxy: Proxy, path: str, accept: str | None = None) -> tuple[int, str, str]:
    headers = {"Accept": accept} if accept else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{proxy.http.port}{path}", headers=headers) as response,
    ):
        return response.status, response.headers["Content-Type"], await response.text()


async def test_metrics_api_and_health_reflect_what_miners_did() -> None:
    async with running_pool(difficulty=1e-6) as pool, running_proxy(_config(pool.port)) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0], worker="farm.rig1")
        await miner.handshake()
        for _ in range(3):
            assert (await miner.submit(miner.find_share()))["result"] is True
        dup = miner.find_share()
        await miner.submit(dup)
        assert (await miner.submit(dup))["error"][0] == 22
        assert (await miner.submit(miner.find_share(above=1e-6)))["result"] is True
        await wait_until(lambda: pool.stats.accepted >= 1)  # earlier shares may have met it too
        forwarded = pool.stats.accepted

        status, content_type, text = await _get(proxy, "/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for f in parse_text(text) for s in f.samples
        }
        worker = (("worker", "farm.rig1"),)
        assert samples[("stratum_proxy_shares_accepted_total", worker)] == 5
        assert samples[("stratum_proxy_shares_rejected_total", (("reason", "duplicate"), *worker))] == 1
        assert samples[("stratum_proxy_shares_rejected_total", (("reason", "low_difficulty"), *worker))] == 0
        assert samples[("stratum_proxy_share_difficulty_total", worker)] == 5e-7
        assert (
            samples[("stratum_proxy_upstream_shares_total", (("pool", "main"), ("result", "accepted")))]
            == forwarded
        )
        assert samples[("stratum_proxy_upstream_connected", (("pool", "main"),))] == 1
        assert samples[("stratum_proxy_upstream_difficulty", (("pool", "main"),))] == 1e-6
        assert samples[("stratum_proxy_upstream_submit_seconds_count", (("pool", "main"),))] == forwarded
        assert samples[("stratum_proxy_miners_connected", ())] == 1
        assert samples[("stratum_proxy_connections_total", (("result", "accepted"),))] == 1
        assert samples[("stratum_proxy_jobs_total", (("pool", "main"),))] >= 1
        assert samples[("stratum_proxy_config_reloads_total", (("result", "failure"),))] == 0
        assert ("stratum_proxy_build_info", (("version", "0.1.0"),)) in samples

        status, content_type, text = await _get(proxy, "/metrics", accept="application/openmetrics-text")
        assert status == 200 and content_type.startswith("application/openmetrics-text")
        families = {f.name: f for f in parse_openmetrics(text)}  # type: ignore[no-untyped-call]
        assert families["stratum_proxy_shares_accepted"].type == "counter"

        status, _, body = await _get(proxy, "/api/v1/workers")
        assert status == 200
        (view,) = json.loads(body)["workers"]
        assert view["worker"] == "farm.rig1" and view["accepted"] == 5 and view["connections"] == 1
        assert view["rejected"]["duplicate"] == 1 and view["difficulty"] == [1e-7]
        assert view["last_share"] is not None

        status, _, body = await _get(proxy, "/api/v1/pools")
        (pool_view,) = json.loads(body)["pools"]
        assert pool_view["state"] == "ready" and pool_view["active"] is True
        assert pool_view["extranonce_prefix_size"] == 2 and pool_view["miner_extranonce2_size"] == 6
        assert pool_view["accepted"] == forwarded

        status, _, body = await _get(proxy, "/api/v1/status")
        assert status == 200 and json.loads(body)["version"] == "0.1.0"
        assert (await _get(proxy, "/healthz"))[0] == 200
        await miner.close()


async def test_no_response_ever_contains_the_pool_password() -> None:
    async with running_pool() as pool, running_proxy(_config(pool.port)) as proxy:
        for path in ("/metrics", "/healthz", "/readyz", "/api/v1/workers", "/api/v1/pools", "/api/v1/status"):
            _, _, body = await _get(proxy, path)
            assert SECRET not in body, path
        assert SECRET not in repr(proxy.config)


async def test_readyz_follows_the_pool_down_and_back() -> None:
    fast = "backoff_initial = 0.05\nbackoff_max = 0.2\nconnect_timeout = 1.0"
    async with running_pool() as pool, running_proxy(_config(pool.port, fast)) as proxy:
        status, _, body = await _get(proxy, "/readyz")
        assert status == 200, body
        await pool.stop_listening()
        pool.drop_all()
        await wait_until(lambda: not proxy.pools.pools[0].is_ready)
        status, _, body = await _get(proxy, "/readyz")
        assert status == 503
        assert json.loads(body) == {"ready": False, "reason": "no pool connected and authorized"}
        await pool.listen()
        await wait_until(lambda: proxy.pools.pools[0].is_ready)
        assert (await _get(proxy, "/readyz"))[0] == 200


async def test_readyz_is_503_when_the_newest_job_is_stale() -> None:
    async with running_pool() as pool, running_proxy(_config(pool.port)) as proxy:
        conn = proxy.pools.pools[0].ready_connections()[0]
        conn.last_job -= 10 * proxy.config.upstream.silence_timeout  # as if no job for long
        status, _, body = await _get(proxy, "/readyz")
        assert status == 503 and "no fresh job" in body
        pool.new_job()
        await wait_until(lambda: proxy.clock() - conn.last_job < 1.0)
        assert (await _get(proxy, "/readyz"))[0] == 200


async def test_an_idle_backup_pool_is_standby_not_down() -> None:
    async with (
        running_pool() as primary,
        running_pool(seed=5) as backup,
        running_proxy(proxy_config([primary.port, backup.port])) as proxy,
    ):
        # At start every pool is tried; once the primary is active the backup is let go.
        for _ in range(100):
            status, _, body = await _get(proxy, "/api/v1/pools")
            states = {view["name"]: view["state"] for view in json.loads(body)["pools"]}
            if states["pool1"] == "standby":
                break
            await asyncio.sleep(0.1)
        assert status == 200
        assert states == {"pool0": "ready", "pool1": "standby"}
        _, _, text = await _get(proxy, "/metrics")
        samples = {
            (s.labels["pool"], s.labels["state"]): s.value
            for family in parse_text(text)
            if family.name == "stratum_proxy_pool_state"
            for s in family.samples
        }
        assert samples[("pool1", "standby")] == 1 and samples[("pool1", "down")] == 0
        assert samples[("pool0", "ready")] == 1
