"""Tools around the proxy: the bundled test pool and the fleet simulator.

Both are real network programs (``stratum-proxy pool`` and ``stratum-proxy simulate``) and
both can be driven in-process from tests: :class:`proxy.tools.pool.TestPool` and
:class:`proxy.tools.simulate.Fleet`. This module holds small helpers they, the benchmarks and the tests share.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.005) -> None:
    """Poll ``condition`` until it holds; raise :class:`TimeoutError` after ``timeout`` seconds.

    Tests use this instead of sleeping a fixed time: they wait for a state, never assert on
    how long it took, and the timeout only turns a hang into a clear failure.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for tests and benchmarks on loopback)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
