"""deploy/systemd/stratum-proxy.service: verified by the real systemd-analyze, hardening
scored offline, and its settings (stop timeout vs. drain grace, reload, limits) checked."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from proxy.config import ServerConfig
from tests.deploy.support import DEPLOY, REPO, require_tool

UNIT = DEPLOY / "systemd" / "stratum-proxy.service"
INSTALLED_BINARY = "/usr/local/bin/stratum-proxy"
INSTALLED_CONFIG = "/etc/stratum-proxy/proxy.toml"
SYSTEMD = "Debian package systemd"


def _unit(text: str | None = None) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values in order]}}``; units repeat keys (ExecReload=), so no configparser."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in (UNIT.read_text() if text is None else text).splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        sections[section][key.strip()].append(value.strip())
    return sections


def _runnable_copy(tmp_path: Path) -> Path:
    """The unit with its binary pointed at this venv's stratum-proxy.

    `verify` insists that every Exec*= binary exists; rewriting a copy keeps the real unit
    pointing where the README installs it.
    """
    binary = Path(sys.executable).parent / "stratum-proxy"
    assert binary.exists(), f"{binary} missing: is the project installed in this venv?"
    text = UNIT.read_text()
    assert text.count(INSTALLED_BINARY) >= 3, "ExecStartPre, ExecStart and ExecReload use the binary"
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED_BINARY, str(binary)))
    return copy


def test_systemd_analyze_verify_passes_without_warnings(tmp_path: Path) -> None:
    tool = require_tool("systemd-analyze", SYSTEMD)
    done = subprocess.run(
        [tool, "verify", str(_runnable_copy(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    # verify exits 0 on an unknown or misplaced key and only warns: any output is a failure.
    assert done.returncode == 0, done.stdout + done.stderr
    assert (done.stdout + done.stderr).strip() == "", done.stdout + done.stderr


def test_hardening_exposure_is_rated_ok(tmp_path: Path) -> None:
    tool = require_tool("systemd-analyze", SYSTEMD)
    done = subprocess.run(
        [tool, "security", "--offline=yes", str(_runnable_copy(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    # systemd rates <= 2.0 "OK"; an unhardened service scores 9.6 ("UNSAFE").
    assert float(match.group(1)) <= 2.0, done.stdout


def test_unit_settings() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["Type"] == ["exec"]
    assert service["User"] == service["Group"] == ["stratum-proxy"]
    assert service["DynamicUser"] == ["no"]
    assert service["ExecStart"] == [f"{INSTALLED_BINARY} run --config {INSTALLED_CONFIG}"]
    assert service["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["Restart"] == ["on-failure"]
    assert service["LimitNOFILE"] == ["65536"]
    assert int(service["LimitNOFILE"][0]) > ServerConfig().max_miners
    # systemd must not SIGKILL a drain in progress: the stop timeout exceeds the grace.
    assert float(service["TimeoutStopSec"][0]) > ServerConfig().drain_grace
    assert service["CapabilityBoundingSet"] == [""]
    assert service["ReadOnlyPaths"] == ["/etc/stratum-proxy"]
    assert service["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    for key in (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ):
        assert service[key] == ["yes"], key
    assert service["ProtectSystem"] == ["strict"]
    assert service["SystemCallArchitectures"] == ["native"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_units_check_commands_run(tmp_path: Path) -> None:
    """ExecStartPre= and the first ExecReload= run `check`: run them for real, on a config."""
    service = _unit(_runnable_copy(tmp_path).read_text())["Service"]
    commands = [*service["ExecStartPre"], *service["ExecReload"][:-1]]
    assert commands, "no `check` before start or reload"
    good = REPO / "proxy.toml.example"
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nno_such_key = 1\n")
    for command in commands:
        argv = shlex.split(command)
        assert argv[1:] == ["check", "--config", INSTALLED_CONFIG], command
        for config, expected in ((good, 0), (bad, 2)):
            done = subprocess.run(
                [*argv[:-1], str(config)], capture_output=True, text=True, check=False, timeout=60
            )
            assert done.returncode == expected, (command, config, done.stdout + done.stderr)
