"""``stratum-proxy run`` as a child process of a benchmark, on a config written for it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def proxy_process(config_text: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run the proxy on ``config_text``; on exit SIGTERM it (it drains), kill it after 10 s."""
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as handle:
        handle.write(config_text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "run", "--config", handle.name], stdin=subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        if proc.poll() is None:
            proc.kill()
        os.unlink(handle.name)
