"""deploy/: Prometheus config and alerts checked by the real promtool, the Grafana dashboard
parsed, and every metric they use really exported by a running proxy."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import aiohttp

from tests.deploy.support import require_tool
from tests.e2e.support import ScriptedMiner, proxy_config, running_pool, running_proxy

DEPLOY = Path(__file__).resolve().parent.parent.parent / "deploy"
METRIC = re.compile(r"\b(stratum_proxy_[a-z0-9_]+)")


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool", "Debian package prometheus; .ci/run installs it")
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60)


def test_promtool_accepts_the_scrape_config() -> None:
    done = _promtool("check", "config", "prometheus.yml", cwd=DEPLOY / "prometheus")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_alert_rules() -> None:
    done = _promtool("check", "rules", "alerts.yml", cwd=DEPLOY / "prometheus")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 10 rules found" in done.stdout


def test_alert_rules_fire_on_synthetic_series() -> None:
    done = _promtool("test", "rules", "alerts_test.yml", cwd=DEPLOY / "prometheus")
    assert done.returncode == 0, done.stdout + done.stderr


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "stratum-proxy.json").read_text())
    assert dashboard["uid"] == "stratum-proxy" and dashboard["panels"]
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def test_dashboard_has_the_panels_operators_need() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "stratum-proxy.json").read_text())
    titles = {panel["title"] for panel in dashboard["panels"]}
    needed_panels = ("Fleet hashrate", "Rejects by reason", "Pool verdict latency", "Miners connected")
    for needed in (*needed_panels, "Target vs realised split"):
        assert needed in titles
    assert any(p["type"] == "table" and "worker" in p["title"].lower() for p in dashboard["panels"])


async def test_every_metric_in_dashboard_and_alerts_is_exported() -> None:
    used = set(METRIC.findall("\n".join(_dashboard_exprs())))
    used |= set(METRIC.findall((DEPLOY / "prometheus" / "alerts.yml").read_text()))
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        assert (await miner.submit(miner.find_share(above=1e-6)))["result"] is True
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{proxy.http.port}/metrics") as response,
        ):
            exported = set(METRIC.findall(await response.text()))
        await miner.close()
    assert used, "no metric found in deploy/: the regex is broken"
    assert used <= exported, used - exported
