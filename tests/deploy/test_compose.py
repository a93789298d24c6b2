"""deploy/docker-compose.yml and deploy/compose/: the three services, every file they
mount exists, the proxy config passes `check`, the compose Prometheus config is the
repository's with only the target changed (and promtool accepts it beside alerts.yml),
and Grafana's provisioning reaches the Prometheus service and the repository's dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from tests.deploy.support import DEPLOY, check_config, load_yaml, require_tool

COMPOSE = DEPLOY / "docker-compose.yml"
PROVISIONING = DEPLOY / "compose" / "grafana" / "provisioning"


def _compose() -> dict[str, Any]:
    [document] = load_yaml(COMPOSE)
    assert isinstance(document, dict)
    return document


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _compose()["services"][name]
    return service


def _binds(service: str) -> dict[str, Path]:
    """``{container path: host path}`` of a service's bind mounts (named volumes left out)."""
    binds: dict[str, Path] = {}
    for volume in _service(service).get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            binds[target] = (DEPLOY / source).resolve()
    return binds


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    assert match, duration
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[match.group(2)]


def test_the_three_services() -> None:
    assert set(_compose()["services"]) == {"proxy", "prometheus", "grafana"}
    assert _service("prometheus")["image"].startswith("prom/prometheus:")
    assert _service("grafana")["image"].startswith("grafana/grafana:")


def test_every_bind_mount_and_the_build_exist() -> None:
    for service in _compose()["services"]:
        for target, source in _binds(service).items():
            assert source.exists(), f"{service}: {source} (mounted at {target}) does not exist"
    build = _service("proxy")["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert (context / "pyproject.toml").exists(), "the build context must be the repository root"
    assert (context / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_the_proxy_service() -> None:
    proxy = _service("proxy")
    config = _binds("proxy")["/etc/stratum-proxy/proxy.toml"]
    assert config == DEPLOY / "compose" / "proxy.toml"
    assert proxy["ports"] == ["3333:3333"], "miners only: metrics stay on the compose network"
    drain_grace = tomllib.loads(config.read_text())["server"].get("drain_grace", 10.0)
    # Docker SIGKILLs after the stop grace period (10 s by default): it must cover the drain.
    assert proxy["stop_signal"] == "SIGTERM"
    assert _seconds(proxy["stop_grace_period"]) > drain_grace


def test_the_compose_proxy_toml_passes_check() -> None:
    path = DEPLOY / "compose" / "proxy.toml"
    done = check_config(path)
    assert done.returncode == 0, done.stdout + done.stderr
    config = tomllib.loads(path.read_text())
    # Reachable from the prometheus service, on the port its scrape config names.
    assert config["http"]["listen"] == "0.0.0.0:9100"
    assert config["server"]["listen"] == ["0.0.0.0:3333"]


def _compose_prometheus() -> dict[str, Any]:
    binds = _binds("prometheus")
    assert binds["/etc/prometheus/prometheus.yml"] == DEPLOY / "compose" / "prometheus.yml"
    [document] = load_yaml(binds["/etc/prometheus/prometheus.yml"])
    assert isinstance(document, dict)
    return document


def test_prometheus_scrapes_the_proxy_service_with_the_repositorys_rules() -> None:
    config = _compose_prometheus()
    [job] = config["scrape_configs"]
    assert [t for sc in job["static_configs"] for t in sc["targets"]] == ["proxy:9100"]
    # rule_files are relative to the config file: alerts.yml must be mounted beside it.
    assert config["rule_files"] == ["alerts.yml"]
    assert _binds("prometheus")["/etc/prometheus/alerts.yml"] == DEPLOY / "prometheus" / "alerts.yml"
    # Everything but the targets is the repository's config, so the two cannot drift.
    [original] = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    for document in (config, original):
        for scrape in document["scrape_configs"]:
            scrape.pop("static_configs")
    assert config == original


def test_promtool_accepts_the_compose_prometheus_config_as_mounted(tmp_path: Path) -> None:
    promtool = require_tool("promtool", "Debian package prometheus; .ci/run installs it")
    # Lay the files out as the container sees them in /etc/prometheus/.
    for target, source in _binds("prometheus").items():
        if target.startswith("/etc/prometheus/"):
            shutil.copy(source, tmp_path / Path(target).name)
    done = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_grafana_provisions_the_prometheus_data_source() -> None:
    binds = _binds("grafana")
    assert binds["/etc/grafana/provisioning/datasources"] == PROVISIONING / "datasources"
    [document] = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")
    [source] = document["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    # The dashboard's data source variable picks the default one.
    assert source["isDefault"] is True


def test_grafana_provisions_the_repositorys_dashboard() -> None:
    binds = _binds("grafana")
    assert binds["/etc/grafana/provisioning/dashboards"] == PROVISIONING / "dashboards"
    [document] = load_yaml(PROVISIONING / "dashboards" / "stratum-proxy.yml")
    [provider] = document["providers"]
    assert provider["type"] == "file"
    folder = provider["options"]["path"]
    dashboards = {t: s for t, s in binds.items() if str(Path(t).parent) == folder}
    assert list(dashboards.values()) == [DEPLOY / "grafana" / "stratum-proxy.json"], (
        f"the provider reads {folder}, where the repository's dashboard must be mounted"
    )
    dashboard = json.loads((DEPLOY / "grafana" / "stratum-proxy.json").read_text())
    assert dashboard["uid"] == "stratum-proxy"
