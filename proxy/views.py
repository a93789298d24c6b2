"""Read models: what the proxy shows of its pools and routing, built once per request as
msgspec Structs and rendered by ``/api/v1/pools``, ``/api/v1/groups`` and ``/metrics``
alike, so the API and the metrics cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from proxy.routing.groups import WINDOWS, Group
from proxy.routing.pools import PoolManager
from proxy.routing.state import pool_states
from proxy.stats import HASHES_PER_DIFFICULTY


class PoolView(msgspec.Struct):
    """One pool in ``/api/v1/pools``."""

    name: str
    url: str
    user: str
    state: str
    health: str
    """``healthy``, ``degraded`` or ``down``."""
    health_reason: str
    """Why it is degraded or down (empty when healthy)."""
    active: bool
    connected: bool
    """It has a ready connection (handshake done, a job received)."""
    connections: int
    miners: int
    difficulty: float | None
    extranonce2_size: int | None
    extranonce_prefix_size: int | None
    miner_extranonce2_size: int | None
    version_mask: str | None
    latency_seconds: float
    accepted: int
    rejected: int
    timeouts: int
    blocks: int
    block_candidates: int
    jobs: int
    last_job_age_seconds: float | None


def pool_views(manager: PoolManager, now: float) -> list[PoolView]:
    """The read model of every configured pool at ``now``."""
    views = []
    serving = manager.router.serving()
    for pool, state in zip(manager.pools, pool_states(manager.pools, manager.needed), strict=True):
        ready = pool.ready_connections()
        conn = max(ready, key=lambda c: c.last_job) if ready else None  # its freshest
        views.append(
            PoolView(
                name=pool.name,
                url=pool.config.url,
                user=pool.config.user,
                state=state,
                health=pool.health,
                health_reason=pool.health_reason,
                active=pool in serving,
                connected=conn is not None,
                connections=len(pool.connections),
                miners=sum(len(c.miners) for c in pool.connections),
                difficulty=conn.difficulty if conn else None,
                extranonce2_size=conn.extranonce2_size if conn else None,
                extranonce_prefix_size=conn.prefix_size if conn else None,
                miner_extranonce2_size=conn.miner_extranonce2_size if conn else None,
                version_mask=f"{conn.version_mask:08x}" if conn else None,
                latency_seconds=pool.latency,
                accepted=pool.accepted,
                rejected=pool.rejected,
                timeouts=pool.timeouts,
                blocks=pool.blocks,
                block_candidates=pool.candidates,
                jobs=pool.jobs,
                last_job_age_seconds=round(now - conn.last_job, 3) if conn else None,
            )
        )
    return views


class RouteView(msgspec.Struct):
    """One route of a group."""

    weight: float
    """As configured (or set through the API)."""
    pools: list[str]
    """The failover chain."""
    serving_pool: str | None
    """The pool mining for the route now; null when none of its pools is healthy."""
    health: dict[str, str]
    """Each pool of the chain: ``healthy``, ``degraded`` or ``down``."""
    fraction: float
    """Its part of the group's hashrate now: its weight over the weights of the routes
    that are up (0 while it is down)."""
    miners: int
    """Miners mining for it now."""
    realised_10m: float | None
    """Its part of the group's accepted share difficulty over 10 minutes (null: none)."""
    realised_1h: float | None
    """The same over an hour."""
    share_difficulty_total: dict[str, float]
    """Accepted share difficulty by pool, since start (Prometheus counter values)."""


class GroupView(msgspec.Struct):
    """One group in ``/api/v1/groups``."""

    name: str
    split: str
    slice_seconds: float
    miners: int
    hashrate_ths: float
    """The group's measured hashrate (accepted share difficulty per second), in TH/s."""
    split_by_miners: int
    """Time-split miners that cannot change pools without a new extranonce they cannot be
    told (different layouts, no ``mining.extranonce.subscribe``): split as whole miners."""
    weights_from: str
    """``file``, or who set them through the API (a reload puts the file's back)."""
    routes: list[RouteView]


def group_view(group: Group, now: float) -> GroupView:
    """The read model of one group at ``now``."""
    realised = {label: group.realised(seconds, now) for label, seconds in WINDOWS.items()}
    fractions = group.fractions()
    counts = [0] * len(group.routes)
    for member in group.members.values():
        if member.route < len(counts):
            counts[member.route] += 1
    routes = [
        RouteView(
            weight=route.weight,
            pools=route.pool_names,
            serving_pool=route.serving.name if route.serving is not None else None,
            health={pool.name: pool.health for pool in route.chain},
            fraction=round(fractions[index], 6),
            miners=counts[index],
            realised_10m=_round(realised["10m"][index]),
            realised_1h=_round(realised["1h"][index]),
            share_difficulty_total=group.work(route),
        )
        for index, route in enumerate(group.routes)
    ]
    return GroupView(
        name=group.name,
        split=group.config.split,
        slice_seconds=group.config.slice_seconds,
        miners=len(group.members),
        hashrate_ths=round(group.rate() * HASHES_PER_DIFFICULTY / 1e12, 6),
        split_by_miners=sum(1 for m in group.members.values() if m.pinned),
        weights_from=f"api ({group.overridden_by})" if group.overridden_by else "file",
        routes=routes,
    )


def group_views(groups: Sequence[Group], now: float) -> list[GroupView]:
    """Every group's read model."""
    return [group_view(group, now) for group in groups]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
