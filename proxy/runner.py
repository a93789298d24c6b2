"""Run a coroutine on uvloop where it is installed: the loop every command of ours uses."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

if sys.platform != "win32":  # uvloop is a dependency everywhere but Windows
    import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on uvloop (asyncio's own loop on Windows).

    ``asyncio.run(loop_factory=...)`` only exists from Python 3.12, but ``asyncio.Runner``
    takes a loop factory on 3.11 already, so this works on every supported version.
    """
    if sys.platform == "win32":  # pragma: no cover
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
