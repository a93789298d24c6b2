"""``[[groups]]``: which miners split their hashrate over which pools, and how.

A group matches miners by worker name (globs on the full name), source network and the
listener they connected to; every criterion given must match, any entry of a list may.
The first group that matches takes the miner; a miner no group matches is in the group
named ``default``, which unless configured is one route over every pool in priority
order (the behaviour without any ``[[groups]]``).

A group's routes each take ``weight`` of its hashrate. A route is a failover chain: its
first healthy pool serves it. ``split = "miners"`` moves whole miners so each route's
measured hashrate tracks its weight; ``split = "time"`` gives every miner each route's
work for ``weight`` of every ``slice_seconds``.

These Structs check themselves (``__post_init__``); what needs the rest of the config
(pool names, listen addresses) is checked by :func:`check_groups`, called by the Config.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Sequence
from typing import Final, Literal, TypeAlias

import msgspec
from msgspec import Struct

from proxy.config_errors import ConfigError

Split: TypeAlias = Literal["miners", "time"]
"""``miners``: whole miners move between routes; ``time``: each miner's time is split."""

SPLITS: Final = ("miners", "time")
"""The accepted ``split`` values."""

DEFAULT_GROUP: Final = "default"
"""The group of every miner no configured group matches."""

MIN_SLICE_SECONDS: Final = 5.0
"""Shortest slice: a switch costs the miner a fresh job, so at most a few per minute."""

MAX_SLICE_SECONDS: Final = 3600.0
"""Longest slice: beyond an hour a per-miner time split is just whole miners, slower."""

MAX_ROUTES: Final = 16
"""Routes per group: far more than any farm's customers per site, small enough to scan."""

_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")

MAX_MATCH_ENTRIES: Final = 1024
"""Entries per match list: patterns are tried per authorize, so a bounded scan."""


class GroupMatch(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``match = {...}``: the miners a group takes (an empty table matches every miner)."""

    workers: tuple[str, ...] = ()
    """Globs (``*``, ``?``, ``[...]``) on the full worker name, e.g. ``acct.s21-*``."""
    sources: tuple[str, ...] = ()
    """Networks (CIDR) of the miner's address (the PROXY header's, behind a balancer)."""
    listeners: tuple[str, ...] = ()
    """``[server] listen`` addresses, exactly as written there."""

    def __post_init__(self) -> None:
        for key in ("workers", "sources", "listeners"):
            entries = getattr(self, key)
            if len(entries) > MAX_MATCH_ENTRIES:
                raise ConfigError(f"at most {MAX_MATCH_ENTRIES} entries", key=key)
            for i, entry in enumerate(entries):
                if not entry:
                    raise ConfigError("must not be empty", key=f"{key}[{i}]")
        for i, network in enumerate(self.sources):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(f"not a network in CIDR form: {network!r}", key=f"sources[{i}]") from None


class RouteConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[[groups.routes]]``: a share of a group's hashrate and the pools that serve it."""

    weight: float
    """This route's part of the group's hashrate, relative to the other routes' weights."""
    pools: tuple[str, ...]
    """Pool names, a failover chain: the first healthy one serves the route."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ConfigError(f"must be a finite number > 0, got {self.weight!r}", key="weight")
        if not self.pools:
            raise ConfigError("at least one pool name is required", key="pools")
        seen: set[str] = set()
        for i, name in enumerate(self.pools):
            if name in seen:
                raise ConfigError(f"pool {name!r} is listed twice", key=f"pools[{i}]")
            seen.add(name)


class GroupConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One ``[[groups]]`` entry."""

    name: str
    """Unique name, used in the API, metrics and logs."""
    routes: tuple[RouteConfig, ...]
    """Where the group's hashrate goes (at least one route)."""
    match: GroupMatch = msgspec.field(default_factory=GroupMatch)
    """Which miners are in the group."""
    split: Split = "miners"
    """``miners`` or ``time`` (see the module docstring)."""
    slice_seconds: float = 60.0
    """The period over which a time split is realised per miner (5 to 3600)."""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigError(f"must match [A-Za-z0-9_.-]{{1,64}}, got {self.name!r}", key="name")
        if not self.routes:
            raise ConfigError("at least one [[groups.routes]] entry is required", key="routes")
        if len(self.routes) > MAX_ROUTES:
            raise ConfigError(f"at most {MAX_ROUTES} routes", key="routes")
        if not (MIN_SLICE_SECONDS <= self.slice_seconds <= MAX_SLICE_SECONDS):
            raise ConfigError(
                f"must be between {MIN_SLICE_SECONDS:g} and {MAX_SLICE_SECONDS:g}, "
                f"got {self.slice_seconds!r}",
                key="slice_seconds",
            )
        owner: dict[str, int] = {}
        for r, route in enumerate(self.routes):
            for p, name in enumerate(route.pools):
                if name in owner:
                    # One route per pool in a group: a pool's accepted work is then its route's.
                    raise ConfigError(
                        f"pool {name!r} is already in routes[{owner[name]}] of this group",
                        key=f"routes[{r}].pools[{p}]",
                    )
                owner[name] = r


def check_groups(groups: Sequence[GroupConfig], pool_names: Sequence[str], listeners: Sequence[str]) -> None:
    """Checks that need the rest of the config: names unique, pools and listeners known,
    no listener claimed by two groups. Raises :class:`ConfigError` keyed from the root."""
    names: dict[str, int] = {}
    claimed: dict[str, int] = {}
    known = set(pool_names)
    for g, group in enumerate(groups):
        if group.name in names:
            other = names[group.name]
            message = f"duplicate group name {group.name!r} (also groups[{other}])"
            raise ConfigError(message, key=f"groups[{g}].name")
        names[group.name] = g
        if group.name == DEFAULT_GROUP and group.match != GroupMatch():
            message = "the default group takes every miner no other group matches: it has no match"
            raise ConfigError(message, key=f"groups[{g}].match")
        for r, route in enumerate(group.routes):
            for p, name in enumerate(route.pools):
                if name not in known:
                    raise ConfigError(f"unknown pool {name!r}", key=f"groups[{g}].routes[{r}].pools[{p}]")
        for i, listener in enumerate(group.match.listeners):
            key = f"groups[{g}].match.listeners[{i}]"
            if listener not in listeners:
                raise ConfigError(f"{listener!r} is not one of server.listen", key=key)
            if listener in claimed:
                raise ConfigError(f"{listener!r} is also matched by groups[{claimed[listener]}]", key=key)
            claimed[listener] = g


def routes_problem(routes: Sequence[RouteConfig], pool_names: Sequence[str]) -> str | None:
    """Why ``routes`` (from the API) cannot replace a group's routes, or None."""
    if not routes:
        return "at least one route is required"
    if len(routes) > MAX_ROUTES:
        return f"at most {MAX_ROUTES} routes"
    known = set(pool_names)
    seen: set[str] = set()
    for r, route in enumerate(routes):
        for name in route.pools:
            if name not in known:
                return f"routes[{r}]: unknown pool {name!r}"
            if name in seen:
                return f"routes[{r}]: pool {name!r} is in another route of this group"
            seen.add(name)
    return None


def effective_groups(groups: Sequence[GroupConfig], pool_names: Sequence[str]) -> tuple[GroupConfig, ...]:
    """The configured groups, plus the implicit ``default`` group (one route over every
    pool in priority order) unless one of that name is configured. It comes last, so it
    only takes the miners no other group matches."""
    configured = next((group for group in groups if group.name == DEFAULT_GROUP), None)
    others = tuple(group for group in groups if group.name != DEFAULT_GROUP)
    if configured is not None:
        return (*others, configured)  # wherever it is written, it takes what is left
    default = GroupConfig(name=DEFAULT_GROUP, routes=(RouteConfig(weight=1.0, pools=tuple(pool_names)),))
    return (*others, default)
