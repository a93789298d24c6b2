"""Routing decisions, pure: what was observed of each pool and ``now`` in, a decision out.

Priority failover (the default policy): pools are listed in priority order; miners mine on
the *active* pool. When it is not ready, the best ready pool takes over at once; a pool of
higher priority takes back over once it has been healthy for ``hold`` seconds, so a pool
that flaps does not drag the fleet back and forth. Connections are kept open to the
active pool and every pool above it (to know when one recovers), none below.

Nothing here reads a clock or touches a socket; :mod:`proxy.routing.pools` feeds it and
carries out what it decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple


class PoolHealth(NamedTuple):
    """What routing knows of one configured pool, in priority order."""

    ready: bool
    """A connection finished its handshake and has a job."""
    healthy_since: float | None
    """When it last became ready without failing since (None: not healthy)."""
    removed: bool = False
    """Removed by a reload: it keeps its miners until another pool is ready, no more."""


def best_ready(pools: Sequence[PoolHealth]) -> int | None:
    """The index of the highest-priority ready pool, or None."""
    return next((i for i, pool in enumerate(pools) if pool.ready and not pool.removed), None)


def choose_active(pools: Sequence[PoolHealth], active: int | None, now: float, hold: float) -> int | None:
    """The pool miners should mine on now (an index into ``pools``), or None for none.

    ``active`` is the pool they mine on (None: none yet, or it left the config). It stays
    while it is ready and no pool above it has been healthy for ``hold`` seconds.
    """
    current = None if active is None or pools[active].removed else active
    if current is None or not pools[current].ready:
        best = best_ready(pools)
        # No other pool is ready: stay (a removed pool keeps its miners until one is).
        return active if best is None else best
    for index in range(current):
        pool = pools[index]
        if pool.ready and pool.healthy_since is not None and now - pool.healthy_since >= hold:
            return index
    return current


def keep_open(pools: Sequence[PoolHealth], active: int | None) -> int:
    """How many pools, from the top of the list, keep a connection open: the active pool
    and every pool above it; all of them while no pool is active and ready."""
    if active is None or not pools[active].ready:
        return len(pools)
    return active + 1


MAX_REDIRECT_WAIT = 300.0
"""Longest a pool's ``client.reconnect`` may keep us away: a pool must not park the farm."""


def redirect_target(
    home: tuple[str, int], host: str | None, port: int | str | None, *, allow_other_hosts: bool
) -> tuple[str, int] | None:
    """Where a pool's ``client.reconnect`` sends us: ``(host, port)``, or None to go back to
    the configured address. Another host only when allowed (a pool must not be able to
    send the farm's hashrate elsewhere on its own); ckpool sends the port as a string."""
    if host and host != home[0] and not allow_other_hosts:
        return None
    try:
        new_port = int(port) if port is not None else home[1]
    except ValueError:
        new_port = home[1]
    return (host or home[0], new_port)


def redirect_wait(wait: float) -> float:
    """The seconds a pool's reconnect ``wait`` keeps us away, bounded."""
    return min(max(wait, 0.0), MAX_REDIRECT_WAIT)


POOL_STATES: Final = ("ready", "degraded", "connecting", "down", "standby")
"""What a pool is, as operators see it (``degraded``: ready but failing a health check,
see :mod:`proxy.routing.health`)."""


def pool_states(pools: Sequence[PoolHealth], wanted: Sequence[bool], opening: Sequence[bool]) -> list[str]:
    """Each pool's state: ``ready``; ``connecting`` (a connection is being made or
    handshaking); ``standby`` (no route needs it now: below the pool serving its routes,
    or in none, so nothing is wrong with it); else ``down``."""
    states = []
    for pool, want, busy in zip(pools, wanted, opening, strict=True):
        if pool.ready and not pool.removed:
            states.append("ready")
        elif busy:
            states.append("connecting")
        elif not want:
            states.append("standby")
        else:
            states.append("down")
    return states
