"""README's run command: the demo chain works end to end on a fresh machine."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.slow
def test_demo_runs_pool_proxy_and_miners_with_shares_flowing() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy",
            "demo",
            "--config",
            str(ROOT / "proxy.toml.example"),
            "--duration",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:]
    summary = re.search(
        r"sim summary: .*submitted (\d+) accepted (\d+) rejected (\d+).*unanswered (\d+)", out
    )
    assert summary, out[-3000:]
    submitted, accepted, rejected, unanswered = map(int, summary.groups())
    assert accepted > 0 and accepted == submitted
    assert rejected == 0 and unanswered == 0
    assert "proxy stopped" in out  # the proxy shut down cleanly on the demo's signal
