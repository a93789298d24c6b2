"""Weighted split decisions, pure: which group a miner is in, which route it mines for.

A group's routes each take a weight of its hashrate. A route whose pools are all down or
degraded takes nothing: its weight goes to the other routes in proportion to theirs
(:func:`route_fractions`).

``split = "time"``: each miner spends each route's fraction of every slice on it. Every
miner has a stable phase (a hash of its worker name, never connect or authorize time,
so miners that connect together do not switch together); the route a miner is on at
``now`` is where ``now / slice + phase`` falls in the cumulative fractions
(:func:`time_route`). With phases spread evenly, the group's split holds at every moment,
not only on average over a slice.

``split = "miners"``: whole miners are assigned so each route's measured hashrate
(accepted share difficulty per second) tracks its fraction. :func:`plan_moves` moves the
fewest miners that bring every route within a band of its target, never more than a
given number at once (the caller's per-minute budget); inside the band nothing moves, so
measurement noise does not shuffle miners back and forth.

Nothing here reads a clock or touches a socket: :mod:`proxy.routing.groups` feeds it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import math
import re
from collections.abc import Sequence
from typing import Final

from proxy.config_groups import GroupMatch

MINERS_BAND: Final = 0.01
"""A miners split leaves routes alone while each is within 1 % of the group's hashrate of
its target: closer than that is below what share counts over minutes can tell apart."""

MOVES_PER_MINUTE: Final = 0.25
"""At most a quarter of a group's miners move per minute (each move costs a fresh job)."""

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Matcher:
    """A group's ``match``, compiled once: globs as one regex, networks parsed."""

    __slots__ = ("_listeners", "_networks", "_workers")

    def __init__(self, match: GroupMatch) -> None:
        self._workers = (
            re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in match.workers))
            if match.workers
            else None
        )
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in match.sources)
        self._listeners = frozenset(match.listeners)

    def matches(self, worker: str | None, source: IpAddress | None, listener: str | None) -> bool:
        """True when every criterion given matches. ``worker`` None: not known yet (a
        subscribe): the worker criterion is left out, so the guess can be refined."""
        if self._workers is not None and worker is not None and self._workers.fullmatch(worker) is None:
            return False
        if self._networks and (source is None or not any(source in n for n in self._networks)):
            return False
        return not self._listeners or listener in self._listeners


def choose_group(
    matchers: Sequence[Matcher], worker: str | None, source: IpAddress | None, listener: str | None
) -> int:
    """The index of the first matching group; the last one (``default``) takes the rest."""
    for index, matcher in enumerate(matchers[:-1]):
        if matcher.matches(worker, source, listener):
            return index
    return len(matchers) - 1


def parse_source(peer: str) -> IpAddress | None:
    """The address part of a ``HOST:PORT`` peer string (IPv6 with or without brackets)."""
    host = peer.rsplit(":", 1)[0].strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def route_fractions(weights: Sequence[float], up: Sequence[bool]) -> list[float]:
    """Each route's part of the group's hashrate: its weight over the weights of the
    routes that are up; 0 for a route that is down. All zeros when none is up."""
    total = sum(w for w, ok in zip(weights, up, strict=True) if ok)
    if total <= 0:
        return [0.0] * len(weights)
    return [w / total if ok else 0.0 for w, ok in zip(weights, up, strict=True)]


def slice_phase(worker: str) -> float:
    """A miner's stable phase in [0, 1): where in each slice its own slice starts."""
    digest = hashlib.blake2b(worker.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def time_route(fractions: Sequence[float], phase: float, now: float, slice_seconds: float) -> int | None:
    """The route a time-split miner of ``phase`` mines for at ``now`` (None: none is up)."""
    position = (now / slice_seconds + phase) % 1.0
    cumulative = 0.0
    last = None
    for index, fraction in enumerate(fractions):
        if fraction <= 0:
            continue
        cumulative += fraction
        last = index
        if position < cumulative:
            return index
    return last  # rounding left position just past the last boundary


def next_switch(fractions: Sequence[float], phase: float, now: float, slice_seconds: float) -> float:
    """When the route :func:`time_route` gives next changes (``now`` + at most a slice)."""
    position = (now / slice_seconds + phase) % 1.0
    cumulative = 0.0
    for fraction in fractions:
        if fraction <= 0:
            continue
        cumulative += fraction
        if position < cumulative - 1e-12:
            return now + (cumulative - position) * slice_seconds
    return now + (1.0 - position) * slice_seconds


def pick_route(fractions: Sequence[float], loads: Sequence[float]) -> int | None:
    """The route a new miner of a miners split goes to: the one furthest below its target
    (``loads``: each route's hashrate now, in any unit). None when no route is up."""
    total = sum(loads)
    best, best_gap = None, -math.inf
    for index, fraction in enumerate(fractions):
        if fraction <= 0:
            continue
        gap = fraction * (total + 1.0) - loads[index]  # +1: a newcomer's own weight
        if gap > best_gap:
            best, best_gap = index, gap
    return best


def plan_moves(
    routes: Sequence[int],
    rates: Sequence[float],
    fractions: Sequence[float],
    limit: int,
    movable: Sequence[bool] | None = None,
) -> list[tuple[int, int]]:
    """Moves ``(miner, route)`` that bring a miners split to its target.

    ``routes[i]`` is the route miner ``i`` is on, ``rates[i]`` its hashrate. Each step
    takes the route furthest above its target and the one furthest below, and moves the
    miner of the first whose hashrate best fits the smaller of the two gaps, if that
    narrows the error; it stops when every route is within :data:`MINERS_BAND`, nothing
    helps, or ``limit`` moves are planned. Miners on a route that is down all move.
    ``movable[i]`` False: miner ``i`` counts in its route's load but is never moved.
    """
    can_move = movable if movable is not None else [True] * len(routes)
    total = sum(rates)
    if total <= 0 or not any(f > 0 for f in fractions):
        return []
    count = len(fractions)
    loads = [0.0] * count
    for route, rate in zip(routes, rates, strict=True):
        loads[route] += rate
    current = list(routes)
    moves: list[tuple[int, int]] = []
    for miner, route in enumerate(routes):
        if fractions[route] <= 0 and can_move[miner] and len(moves) < limit:
            target = _most_below(loads, fractions, total)
            _apply(moves, current, loads, miner, target, rates[miner])
    band = MINERS_BAND * total
    while len(moves) < limit:
        errors = [loads[r] - fractions[r] * total for r in range(count)]
        over = max(range(count), key=errors.__getitem__)
        under = _most_below(loads, fractions, total)
        if errors[over] <= band and -errors[under] <= band:
            break
        gap = min(errors[over], -errors[under])
        candidates = [m for m, r in enumerate(current) if r == over and rates[m] > 0 and can_move[m]]
        if not candidates:
            break
        miner = min(candidates, key=lambda m: abs(rates[m] - gap))
        rate = rates[miner]
        # Moving ``rate`` from over to under must narrow the two routes' combined error.
        before = abs(errors[over]) + abs(errors[under])
        after = abs(errors[over] - rate) + abs(errors[under] + rate)
        if after >= before - 1e-9 * total:
            break
        _apply(moves, current, loads, miner, under, rate)
    return moves


def _most_below(loads: Sequence[float], fractions: Sequence[float], total: float) -> int:
    """The up route furthest below its target."""
    up = [r for r in range(len(fractions)) if fractions[r] > 0]
    return min(up, key=lambda r: loads[r] - fractions[r] * total)


def _apply(
    moves: list[tuple[int, int]], current: list[int], loads: list[float], miner: int, route: int, rate: float
) -> None:
    loads[current[miner]] -= rate
    loads[route] += rate
    current[miner] = route
    moves.append((miner, route))


def move_budget(members: int, recent_moves: int) -> int:
    """Moves still allowed this minute for a group of ``members`` miners (at least one,
    so a small group still converges)."""
    allowed = max(1, math.floor(members * MOVES_PER_MINUTE))
    return max(0, allowed - recent_moves)
