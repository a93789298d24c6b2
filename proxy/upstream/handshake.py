"""The pool's answers to our handshake, parsed: pure functions, no connection state.

Each returns what the pool granted, or raises :class:`HandshakeError` with a one-line
reason (the connection logs it and closes), so a pool's malformed answer never raises
anything else.
"""

from __future__ import annotations

import math
from typing import Any, Final, NamedTuple

import msgspec

SUGGEST_HYSTERESIS: Final = 1.5
"""Only suggest when miners want at least this much more than the pool gives."""


class HandshakeError(ValueError):
    """A pool's handshake answer is unusable; the message says why, in one line."""


class SubscribeResult(NamedTuple):
    """What a pool's ``mining.subscribe`` result gave us."""

    extranonce1: bytes
    extranonce2_size: int
    session_id: str | None
    """The pool's id for this session (offered back at the next subscribe to resume it)."""


def granted_mask(raw: bytes) -> int:
    """The version-rolling mask a ``mining.configure`` result grants (0: none)."""
    try:
        result = msgspec.json.decode(raw)
        if isinstance(result, dict) and result.get("version-rolling") is True:
            return int(str(result.get("version-rolling.mask", "0")), 16) & 0xFFFFFFFF
    except (msgspec.DecodeError, ValueError):
        pass
    return 0


def parse_subscribe(raw: bytes) -> SubscribeResult:
    """The extranonce layout and session id of a ``mining.subscribe`` result."""
    try:
        subscriptions, extranonce1, size = msgspec.json.decode(raw, type=tuple[Any, str, int])
        e1 = bytes.fromhex(extranonce1)
    except (msgspec.DecodeError, ValueError):
        raise HandshakeError(f"bad subscribe result: {bytes(raw)[:200]!r}") from None
    problem = layout_problem(e1, size)
    if problem:
        raise HandshakeError(problem)
    return SubscribeResult(e1, size, notify_session_id(subscriptions))


def layout_problem(extranonce1: bytes, extranonce2_size: int) -> str:
    """Why a pool's extranonce layout is unusable, or "" when it is fine."""
    if not 1 <= extranonce2_size <= 32 or len(extranonce1) > 32:
        sizes = f"extranonce1 {len(extranonce1)} bytes, extranonce2 {extranonce2_size}"
        return f"unusable extranonce layout: {sizes}"
    return ""


def notify_session_id(subscriptions: object) -> str | None:
    """The session id of a subscribe result's ``mining.notify`` entry, if it has one."""
    if not isinstance(subscriptions, list):
        return None
    for entry in subscriptions:
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == "mining.notify":
            sid = entry[1]
            if isinstance(sid, str) and 0 < len(sid) <= 64:
                return sid
    return None


def suggestion(wanted: float) -> float | int:
    """The value sent in ``mining.suggest_difficulty``: an integer from 1 up, rounded down.

    ckpool parses the parameter only as an integer ("Failed to parse suggest_difficulty"
    for 3.3). Rounding down keeps every miner at or below what the pool then gives, so no
    miner is clamped above its pool. Below 1 an integer cannot express it: sent as is.
    """
    return math.floor(wanted) if wanted >= 1 else wanted


def suggestion_due(wanted: float, pool_difficulty: float, last_suggested: float) -> float | int | None:
    """What to suggest to the pool when the miners want ``wanted``, or None for nothing.

    A miner's difficulty is capped at the pool's (so no work is lost), which makes a fast
    miner under a low pool difficulty submit far more shares than it should. When the
    miners would go clearly higher, suggesting what they want lets them: every share the
    pool then credits is still found by miners at or below it.
    """
    value = suggestion(wanted)
    if value > pool_difficulty * SUGGEST_HYSTERESIS and value != last_suggested:
        return value
    return None
