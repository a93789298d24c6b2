"""Tools around the proxy: the bundled test pool and the fleet simulator.

Both are real network programs (``stratum-proxy pool`` and ``stratum-proxy simulate``) and
both can be driven in-process from tests: :class:`proxy.tools.pool.TestPool` and
:class:`proxy.tools.simulate.Fleet`. This module holds the two helpers they share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on uvloop when it is installed, else on asyncio's loop.

    ``asyncio.run(loop_factory=...)`` only exists from Python 3.12, but ``asyncio.Runner``
    takes a loop factory on 3.11 already, so this works on every supported version.
    """
    try:
        import uvloop  # noqa: PLC0415 - optional: not installed on Windows
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result: T = runner.run(main)
        return result


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
