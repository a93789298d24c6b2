"""Every Prometheus metric of the proxy, rendered at scrape time from its own counters.

Two parts, one response:

* fleet- and pool-level metrics live in a prometheus-client registry: the pool verdict
  latency histogram (observed once per forwarded share, through a child looked up once per
  pool), the reload counter and the build gauge, and a custom ``Collector`` that reads the
  pool manager and the miner server when scraped;
* per-worker families (tens of thousands of series) are rendered straight from the
  :class:`~proxy.stats.WorkerStats` objects the share path already counts into, with label
  values escaped once per worker, in chunks that yield to the event loop in between, so a
  scrape of 10,000 workers never holds the loop for more than a few milliseconds. This is
  the scrape-time collector the prometheus-client docs recommend over 10,000 ``labels()``
  children, made cooperative because ``generate_latest`` would render it in one go.

Both the Prometheus text format and OpenMetrics are served.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client import exposition as text_exposition
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.registry import Collector

from proxy import __version__
from proxy.routing.policy import POOL_STATES
from proxy.stats import REASON_SLOTS, REJECT_REASONS, StatsRegistry, WorkerStats
from proxy.views import group_views, pool_views

if TYPE_CHECKING:
    from proxy.downstream import MinerServer
    from proxy.routing.pools import PoolManager
    from proxy.routing.state import PoolState

# No *_created series next to every counter and histogram: they double the series count
# and no dashboard or alert of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

PREFIX: Final = "stratum_proxy"
CHUNK: Final = 500
"""Workers rendered between two yields to the event loop (~2 ms of work)."""

TEXT_CONTENT_TYPE: Final = text_exposition.CONTENT_TYPE_LATEST
OPENMETRICS_CONTENT_TYPE: Final = openmetrics_exposition.CONTENT_TYPE_LATEST

SUBMIT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Pool verdict latency buckets: a healthy pool answers in tens of milliseconds."""


class _PoolCollector(Collector):
    """Pool and fleet state, read from the live objects at scrape time."""

    def __init__(self, pools: PoolManager, server: MinerServer, stats: StatsRegistry) -> None:
        self.pools = pools
        self.server = server
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        """Yield the pool- and fleet-level families."""
        yield from self._pools()
        yield from self._groups()
        yield from self._fleet()

    def _pools(self) -> Iterator[Metric]:
        shares = CounterMetricFamily(
            f"{PREFIX}_upstream_shares",
            "Shares forwarded to a pool, by its verdict.",
            labels=["pool", "result"],
        )
        timeouts = CounterMetricFamily(
            f"{PREFIX}_upstream_timeouts", "Forwarded shares a pool did not answer in time.", labels=["pool"]
        )
        connected = GaugeMetricFamily(
            f"{PREFIX}_upstream_connected", "1 while the pool has a ready connection.", labels=["pool"]
        )
        states = GaugeMetricFamily(
            f"{PREFIX}_pool_state",
            "1 for the state each pool is in: ready, connecting, down, or standby (not needed now).",
            labels=["pool", "state"],
        )
        active = GaugeMetricFamily(
            f"{PREFIX}_upstream_active", "1 for each pool serving a route.", labels=["pool"]
        )
        connections = GaugeMetricFamily(
            f"{PREFIX}_upstream_connections", "Open connections to the pool.", labels=["pool"]
        )
        difficulty = GaugeMetricFamily(
            f"{PREFIX}_upstream_difficulty", "The pool's share difficulty.", labels=["pool"]
        )
        blocks = CounterMetricFamily(
            f"{PREFIX}_blocks_found", "Block candidates the pool accepted.", labels=["pool"]
        )
        candidates = CounterMetricFamily(
            f"{PREFIX}_block_candidates",
            "Shares meeting the network target sent to the pool (on a test network nearly all).",
            labels=["pool"],
        )
        jobs = CounterMetricFamily(f"{PREFIX}_jobs", "Jobs received from the pool.", labels=["pool"])
        for view in pool_views(self.pools, self.pools.clock()):
            name = [view.name]
            for each in POOL_STATES:
                states.add_metric([view.name, each], 1 if each == view.state else 0)
            shares.add_metric([view.name, "accepted"], view.accepted)
            shares.add_metric([view.name, "rejected"], view.rejected)
            timeouts.add_metric(name, view.timeouts)
            connected.add_metric(name, 1 if view.connected else 0)
            active.add_metric(name, 1 if view.active else 0)
            connections.add_metric(name, view.connections)
            if view.difficulty is not None:
                difficulty.add_metric(name, view.difficulty)
            blocks.add_metric(name, view.blocks)
            candidates.add_metric(name, view.block_candidates)
            jobs.add_metric(name, view.jobs)
        yield from (
            shares,
            timeouts,
            connected,
            states,
            active,
            connections,
            difficulty,
            blocks,
            candidates,
            jobs,
        )

    def _groups(self) -> Iterator[Metric]:
        """Weights and delivered work per route (routes labelled by their index in the
        group, as in the API's list); the same read model as ``/api/v1/groups``."""
        weight = GaugeMetricFamily(
            f"{PREFIX}_route_weight",
            "The part of its group's hashrate a route should get now (its weight over those up).",
            labels=["group", "route"],
        )
        work = CounterMetricFamily(
            f"{PREFIX}_route_share_difficulty",
            "Accepted share difficulty a group delivered to a pool of a route.",
            labels=["group", "route", "pool"],
        )
        for view in group_views(self.pools.groups.groups, self.pools.clock()):
            for index, route in enumerate(view.routes):
                weight.add_metric([view.name, str(index)], route.fraction)
                for pool in route.pools:
                    work.add_metric(
                        [view.name, str(index), pool], route.share_difficulty_total.get(pool, 0.0)
                    )
        yield from (weight, work)

    def _fleet(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            f"{PREFIX}_miners_connected", "Miner connections open.", value=len(self.server.sessions)
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_workers", "Distinct worker names tracked.", value=len(self.stats.workers)
        )
        yield CounterMetricFamily(
            f"{PREFIX}_workers_overflow",
            "Authorizations counted under worker _other because max_workers was reached.",
            value=self.stats.overflowed,
        )
        outcomes = CounterMetricFamily(
            f"{PREFIX}_connections", "Miner connections by outcome.", labels=["result"]
        )
        for result, count in sorted(self.stats.connections.items()):
            outcomes.add_metric([result], count)
        yield outcomes


class Metrics:
    """The proxy's metrics: a prometheus-client registry plus the per-worker families."""

    def __init__(self, stats: StatsRegistry, pools: PoolManager, server: MinerServer) -> None:
        self.stats = stats
        self.registry = CollectorRegistry(auto_describe=False)
        self.submit_seconds = Histogram(
            f"{PREFIX}_upstream_submit_seconds",
            "Seconds from forwarding a share to the pool's verdict.",
            ["pool"],
            buckets=SUBMIT_BUCKETS,
            registry=self.registry,
        )
        self.reloads = Counter(
            f"{PREFIX}_config_reloads", "Config reloads by result.", ["result"], registry=self.registry
        )
        for result in ("success", "failure"):
            self.reloads.labels(result)  # both series exist from the start, at 0
        self.add_pools(pool.name for pool in pools.pools)
        build = Gauge(
            f"{PREFIX}_build_info", "Version of the running proxy.", ["version"], registry=self.registry
        )
        build.labels(__version__).set(1)
        self.registry.register(_PoolCollector(pools, server, stats))

    def add_pools(self, names: Iterable[str]) -> None:
        """Create the latency series of these pools at zero (rate() needs the zero)."""
        for name in names:
            self.submit_seconds.labels(name)

    def observe_submit(self, pool: PoolState, seconds: float) -> None:
        """A pool answered a forwarded share; the histogram child is looked up once per pool."""
        child = pool.latency_metric
        if child is None:
            child = pool.latency_metric = self.submit_seconds.labels(pool.name)
        child.observe(seconds)

    def remove_pools(self, names: Iterable[str]) -> None:
        """Drop the latency series of pools a reload removed."""
        for name in names:
            with contextlib.suppress(KeyError):
                self.submit_seconds.remove(name)

    async def render(self, *, openmetrics: bool = False) -> bytes:
        """The whole exposition; yields to the event loop between chunks of workers."""
        if openmetrics:
            head = openmetrics_exposition.generate_latest(self.registry)  # type: ignore[no-untyped-call]
            head = head.removesuffix(b"# EOF\n")
        else:
            head = text_exposition.generate_latest(self.registry)
        parts = [head]
        async for chunk in render_workers(self.stats, openmetrics=openmetrics):
            parts.append(chunk)
        if openmetrics:
            parts.append(b"# EOF\n")
        return b"".join(parts)


_WORKER_COUNTERS: Final = (
    ("shares_accepted", "Shares accepted, per worker."),
    ("shares_rejected", "Shares rejected, per worker and reason."),
    ("share_difficulty", "Sum of the difficulty of accepted shares; hashrate (H/s) = rate * 2**32."),
)


def _header(name: str, help_text: str, kind: str, openmetrics: bool) -> str:
    # OpenMetrics names a counter family without its _total suffix; the text format with it.
    family = f"{PREFIX}_{name}" if openmetrics or kind != "counter" else f"{PREFIX}_{name}_total"
    return f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n"


def _accepted_lines(workers: list[WorkerStats]) -> str:
    return "".join(f'{PREFIX}_shares_accepted_total{{worker="{w.label}"}} {w.accepted}\n' for w in workers)


def _difficulty_lines(workers: list[WorkerStats]) -> str:
    return "".join(
        f'{PREFIX}_share_difficulty_total{{worker="{w.label}"}} {w.difficulty_sum!r}\n' for w in workers
    )


_REASON_PREFIXES: Final = tuple(
    (f'",reason="{reason}"}} ', slot) for reason, slot in zip(REJECT_REASONS, REASON_SLOTS, strict=True)
)


def _rejected_lines(workers: list[WorkerStats]) -> str:
    start = f'{PREFIX}_shares_rejected_total{{worker="'
    return "".join(
        f"{start}{w.label}{middle}{w.counts[slot]}\n" for w in workers for middle, slot in _REASON_PREFIXES
    )


def _last_share_lines(workers: list[WorkerStats], offset: float) -> str:
    return "".join(
        f'{PREFIX}_worker_last_share_timestamp_seconds{{worker="{w.label}"}} {w.last_share + offset:.3f}\n'
        for w in workers
        if w.last_share
    )


async def render_workers(stats: StatsRegistry, *, openmetrics: bool = False) -> AsyncIterator[bytes]:
    """The per-worker families, a chunk of workers at a time (the loop runs in between)."""
    workers = list(stats.workers.values())  # a snapshot: workers may come and go meanwhile
    # The share path stamps loop time; convert to wall-clock seconds for the timestamp gauge.
    offset = time.time() - asyncio.get_running_loop().time()
    renderers = (_accepted_lines, _rejected_lines, _difficulty_lines)
    for (name, help_text), render in zip(_WORKER_COUNTERS, renderers, strict=True):
        yield _header(name, help_text, "counter", openmetrics).encode()
        for start in range(0, len(workers), CHUNK):
            yield render(workers[start : start + CHUNK]).encode()
            await asyncio.sleep(0)
    yield _header(
        "worker_last_share_timestamp_seconds",
        "Unix time of the worker's last accepted share.",
        "gauge",
        openmetrics,
    ).encode()
    for start in range(0, len(workers), CHUNK):
        yield _last_share_lines(workers[start : start + CHUNK], offset).encode()
        await asyncio.sleep(0)
