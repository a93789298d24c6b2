"""Project-wide test configuration.

Every async test runs twice: on asyncio's own loop and on uvloop, the loop the daemon uses
in production (uvloop's transports differ in small ways, such as not subclassing
``asyncio.Transport``), when the installed pytest-asyncio can parametrize loop factories.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from pytest_asyncio.plugin import PytestAsyncioSpecs


def _loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories


if hasattr(PytestAsyncioSpecs, "pytest_asyncio_loop_factories"):  # pytest-asyncio >= 1.3

    def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, Any]:
        """Run every async test on asyncio's loop and on uvloop."""
        return _loop_factories()
