"""``stratum-proxy demo``: the whole chain on this machine, no outside pool needed.

Starts three processes, as an operator would: the bundled test pool on 127.0.0.1:3334, the
proxy on the given config (``proxy.toml.example`` listens on 127.0.0.1:3333 and points at
that pool), and a few simulated miners hashing for real through the proxy. Their output is
interleaved with a prefix each; Ctrl-C (or ``--duration``) stops all three.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

POOL_LISTEN = "127.0.0.1:3334"
PROXY_URL = "stratum+tcp://127.0.0.1:3333"


def _pump(prefix: str, stream: IO[bytes]) -> None:
    """Copy a child's output to ours, one prefixed line at a time."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip()
        print(f"{prefix:>6} | {line}", flush=True)


def _start(prefix: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    threading.Thread(target=_pump, args=(prefix, proc.stdout), daemon=True).start()
    return proc


def _wait_port(host: str, port: int, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return True
        time.sleep(0.1)
    return False


def main(args: argparse.Namespace) -> int:
    """Run pool, proxy and miners until Ctrl-C or ``--duration``; return 0 if all ran."""
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        pool = ["pool", "--listen", POOL_LISTEN, "--difficulty", "0.001", "--job-interval", "15"]
        procs.append(_start("pool", pool))
        if not _wait_port("127.0.0.1", 3334):
            print("demo: the test pool did not start (is port 3334 free?)", file=sys.stderr)
            return 1
        procs.append(_start("proxy", ["run", "--config", args.config]))
        if not _wait_port("127.0.0.1", 3333):
            print("demo: the proxy did not start (is port 3333 free?)", file=sys.stderr)
            return 1
        miners = ["simulate", "--url", PROXY_URL, "--miners", str(args.miners), "--hashrate", "100000"]
        procs.append(_start("miners", miners))
        stop.wait(args.duration)
        return 0 if all(p.poll() is None for p in procs) else 1
    finally:
        for proc in reversed(procs):  # miners first, so the proxy answers their last shares
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
            if proc.poll() is None:
                proc.kill()
