"""End to end with a REAL Prometheus server scraping the proxy (Debian's `prometheus`).

`.ci/run` installs the package; elsewhere the test is skipped with a loud reason, unless
STRATUM_PROXY_REQUIRE_REAL_SERVERS is set (CI sets it), in which case a missing server fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.app import Proxy
from proxy.tools import free_port
from tests.deploy.support import require_tool
from tests.e2e.support import ScriptedMiner, proxy_config, running_pool, running_proxy


def _require_prometheus() -> str:
    return require_tool("prometheus", "Debian package prometheus; .ci/run installs it")


@contextlib.asynccontextmanager
async def prometheus_scraping(target_port: int, tmp_path: Path) -> AsyncIterator[str]:
    """A real Prometheus on loopback scraping the proxy every second; yields its base URL."""
    binary = _require_prometheus()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: stratum-proxy\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{base}/-/ready") as response:
                        if response.status == 200:
                            break
                if proc.poll() is not None:
                    raise RuntimeError(f"prometheus exited: {proc.stderr.read() if proc.stderr else b''!r}")
                await asyncio.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()


async def _query(base: str, expr: str) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/api/v1/query", params={"query": expr}) as response,
    ):
        body = json.loads(await response.text())
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _by_labels(result: list[dict[str, Any]], *names: str) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"][n] for n in names): float(r["value"][1]) for r in result}


async def _drive_known_outcomes(proxy: Proxy) -> list[ScriptedMiner]:
    """Worker rig-a: 4 accepted, 1 duplicate, 2 stale. rig-b: 2 accepted and one of every
    other reject reason."""
    a = await ScriptedMiner.connect(proxy.ports[0], worker="farm.rig-a")
    b = await ScriptedMiner.connect(proxy.ports[0], worker="farm.rig-b")
    await a.handshake()
    await b.handshake()
    shares = [a.find_share() for _ in range(4)]
    for share in shares:
        assert (await a.submit(share))["result"] is True
    assert (await a.submit(shares[0]))["error"][0] == 22
    stale = [a.worker, "ffff", shares[1].extranonce2, shares[1].ntime, "00000001"]
    for _ in range(2):
        assert (await a.request("mining.submit", stale))["error"][0] == 21

    for _ in range(2):
        assert (await b.submit(b.find_share()))["result"] is True
    low = b.find_share(meets=False)
    assert (await b.submit(low))["error"][0] == 23
    s = b.find_share()
    early = f"{int(s.ntime, 16) - 1:08x}"
    assert (await b.request("mining.submit", [b.worker, s.job_id, s.extranonce2, early, s.nonce]))["error"][
        0
    ] == 20
    assert (await b.request("mining.submit", [*b.find_share().params(b.worker), "00000001"]))["error"][
        0
    ] == 20
    assert (await b.request("mining.submit", [b.worker, s.job_id, "zz", s.ntime, s.nonce]))["error"][0] == 20
    assert (await b.request("mining.submit", ["farm.nobody", *s.params(b.worker)[1:]]))["error"][0] == 24
    return [a, b]  # still connected: the caller checks stratum_proxy_miners_connected


@pytest.mark.slow
async def test_prometheus_sees_exactly_what_the_miners_did(tmp_path: Path) -> None:
    _require_prometheus()
    async with running_pool(difficulty=1.0) as pool, running_proxy(proxy_config([pool.port])) as proxy:
        assert proxy.http.port is not None
        async with prometheus_scraping(proxy.http.port, tmp_path) as prom:
            miners = await _drive_known_outcomes(proxy)
            expected_rejects = {
                ("farm.rig-a", "duplicate"): 1.0,
                ("farm.rig-a", "job_not_found"): 2.0,
                ("farm.rig-b", "low_difficulty"): 1.0,
                ("farm.rig-b", "invalid_ntime"): 1.0,
                ("farm.rig-b", "invalid_version"): 1.0,
                ("farm.rig-b", "invalid_params"): 1.0,
                ("farm.rig-b", "unauthorized"): 1.0,
            }
            expr = "stratum_proxy_shares_rejected_total > 0"

            async def rejects() -> dict[tuple[str, ...], float]:
                return _by_labels(await _query(prom, expr), "worker", "reason")

            # Wait for a scrape that has everything, then compare exactly.
            for _ in range(300):
                if await rejects() == expected_rejects:
                    break
                await asyncio.sleep(0.1)
            assert await rejects() == expected_rejects
            accepted = _by_labels(await _query(prom, "stratum_proxy_shares_accepted_total"), "worker")
            assert accepted == {("farm.rig-a",): 4.0, ("farm.rig-b",): 2.0}
            difficulty = _by_labels(await _query(prom, "stratum_proxy_share_difficulty_total"), "worker")
            assert difficulty == {("farm.rig-a",): pytest.approx(4e-7), ("farm.rig-b",): pytest.approx(2e-7)}
            zeros = await _query(
                prom, 'stratum_proxy_shares_rejected_total{worker="farm.rig-a",reason="unauthorized"}'
            )
            assert _by_labels(zeros, "worker") == {("farm.rig-a",): 0.0}  # zeros exist for rate()
            up = _by_labels(await _query(prom, "stratum_proxy_upstream_connected"), "pool")
            assert up == {("pool0",): 1.0}
            connected = await _query(prom, "stratum_proxy_miners_connected")
            assert float(connected[0]["value"][1]) == len(miners) == 2
