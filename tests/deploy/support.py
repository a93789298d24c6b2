"""Shared helpers for the deploy/ artifact tests: paths, real tools, YAML, config checks.

A missing tool skips its test with a loud reason, except when
STRATUM_PROXY_REQUIRE_REAL_SERVERS is set (CI sets it): then the test fails, so CI cannot
turn green by not having the tool.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest

from proxy.tools import free_port

__all__ = ["free_port"]  # re-exported for the deploy tests

REPO = Path(__file__).resolve().parent.parent.parent
DEPLOY = REPO / "deploy"
REQUIRED = bool(os.environ.get("STRATUM_PROXY_REQUIRE_REAL_SERVERS"))


def missing(reason: str) -> NoReturn:
    """Skip loudly, or fail when real tools are required (CI)."""
    if REQUIRED:
        pytest.fail(f"REQUIRED BUT MISSING: {reason}")
    pytest.skip(f"SKIPPED LOUDLY: {reason}")


def require_tool(name: str, install: str) -> str:
    """The absolute path of executable ``name``; ``install`` says where it comes from."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        missing(f"no `{name}` on PATH ({install})")
    return path


def yaml_module() -> ModuleType:
    """PyYAML, imported at run time so mypy needs no stubs and its absence is a loud skip."""
    try:
        return importlib.import_module("yaml")
    except ImportError:
        missing("PyYAML is not installed (pip install pyyaml; it belongs in the test extra)")


def load_yaml(path: Path) -> list[Any]:
    """Every document in the YAML file at ``path`` (safe loader: plain data only)."""
    yaml = yaml_module()
    documents: list[Any] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents, f"{path} holds no YAML document"
    return documents


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """``stratum-proxy check --config path`` with this interpreter (the project's venv)."""
    return subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
