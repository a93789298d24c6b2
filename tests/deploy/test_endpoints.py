"""The HTTP paths the artifacts probe really answer, on a real proxy running the very
configs deploy/ ships (pools and listeners moved to loopback): the Kubernetes probes,
HAProxy's health check, the Dockerfile's HEALTHCHECK command (run as Docker would) and
Prometheus's scrape path."""

from __future__ import annotations

import asyncio
import re
import sys

import aiohttp
import pytest

from proxy.config import Config, parse_config
from tests.deploy.support import DEPLOY, free_port, load_yaml
from tests.deploy.test_dockerfile import healthcheck_command
from tests.e2e.support import running_pool, running_proxy

POOL_URL = re.compile(r'^url = "stratum\+(?:tcp|ssl)://[^"]+"$', re.MULTILINE)


def _shipped_configs() -> dict[str, str]:
    [configmap] = [d for d in load_yaml(DEPLOY / "kubernetes" / "configmap.yaml") if d["kind"] == "ConfigMap"]
    return {
        "kubernetes": configmap["data"]["proxy.toml"],
        "compose": (DEPLOY / "compose" / "proxy.toml").read_text(),
    }


def _on_loopback(text: str, pool_port: int) -> Config:
    """The shipped config with every pool, listener and the HTTP endpoint on loopback, so
    the test never reaches the example pools' hosts."""
    text, pools = POOL_URL.subn(f'url = "stratum+tcp://127.0.0.1:{pool_port}"', text)
    assert pools >= 1
    for old, new in (
        ('listen = ["0.0.0.0:3333"]', 'listen = ["127.0.0.1:0"]'),
        ('listen = "0.0.0.0:9100"', 'listen = "127.0.0.1:0"'),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    config = parse_config(text)
    assert all(p.url == f"stratum+tcp://127.0.0.1:{pool_port}" for p in config.pools)
    return config


def _probed_paths() -> set[str]:
    """Every HTTP path a deploy/ artifact expects a 200 from."""
    [deployment] = [
        d for d in load_yaml(DEPLOY / "kubernetes" / "deployment.yaml") if d["kind"] == "Deployment"
    ]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    paths = {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
    haproxy = re.search(
        r"^\s*option httpchk GET (\S+)", (DEPLOY / "haproxy" / "haproxy.cfg").read_text(), re.M
    )
    assert haproxy
    paths.add(haproxy.group(1))
    [prometheus] = load_yaml(DEPLOY / "compose" / "prometheus.yml")
    paths |= {job["metrics_path"] for job in prometheus["scrape_configs"]}
    return paths


async def _healthcheck(port: int) -> int:
    """Docker's HEALTHCHECK command, with this interpreter as `python`, against ``port``."""
    argv = healthcheck_command()
    assert argv[0] == "python" and ":9100/" in argv[2]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *argv[1:-1], argv[-1].replace(":9100/", f":{port}/")
    )
    return await asyncio.wait_for(process.wait(), 30)


@pytest.mark.parametrize("name", ["kubernetes", "compose"])
async def test_every_probed_path_answers_200_on_the_shipped_config(name: str) -> None:
    paths = _probed_paths()
    assert {"/readyz", "/healthz", "/metrics"} <= paths
    async with (
        running_pool() as pool,
        running_proxy(_on_loopback(_shipped_configs()[name], pool.port)) as proxy,
    ):
        port = proxy.http.port
        assert port is not None
        async with aiohttp.ClientSession() as session:
            for path in sorted(paths):
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    assert response.status == 200, (path, await response.text())
        assert await _healthcheck(port) == 0
    # Nothing listening: the same command must report unhealthy.
    assert await _healthcheck(free_port()) != 0
