"""Worker counters and their exposition: counters move exactly as shares are judged."""

from __future__ import annotations

import math

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from proxy.metrics import render_workers
from proxy.mining.share import Verdict
from proxy.stats import (
    HASHES_PER_DIFFICULTY,
    OVERFLOW_WORKER,
    REJECT_REASONS,
    UPSTREAM_REJECTED,
    StatsRegistry,
    WorkerStats,
)


async def _render(stats: StatsRegistry, *, openmetrics: bool = False) -> str:
    text = b"".join([chunk async for chunk in render_workers(stats, openmetrics=openmetrics)]).decode()
    return text + "# EOF\n" if openmetrics else text  # Metrics.render closes the exposition


def _samples(text: str, *, openmetrics: bool = False) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    families = parse_openmetrics(text) if openmetrics else parse_text(text)  # type: ignore[no-untyped-call]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in families for s in family.samples}


def _count(stats: WorkerStats, verdict: Verdict, difficulty: float = 0.0) -> None:
    """What the share path does for one verdict."""
    if verdict.accepted:
        stats.accepted += 1
        stats.difficulty_sum += difficulty
    else:
        stats.counts[verdict] += 1


@pytest.mark.parametrize("openmetrics", [False, True])
async def test_counters_render_exactly_per_worker_and_reason(openmetrics: bool) -> None:
    registry = StatsRegistry()
    alice, bob = registry.worker("farm.alice"), registry.worker("farm.bob")
    for _ in range(3):
        _count(alice, Verdict.ACCEPTED, 0.5)
    _count(alice, Verdict.DUPLICATE)
    _count(alice, Verdict.LOW_DIFFICULTY)
    _count(alice, Verdict.LOW_DIFFICULTY)
    for verdict in Verdict:
        if not verdict.accepted:
            _count(bob, verdict)
    bob.counts[UPSTREAM_REJECTED] += 2

    samples = _samples(await _render(registry, openmetrics=openmetrics), openmetrics=openmetrics)
    accepted = "stratum_proxy_shares_accepted_total"
    rejected = "stratum_proxy_shares_rejected_total"
    assert samples[(accepted, (("worker", "farm.alice"),))] == 3
    assert samples[(accepted, (("worker", "farm.bob"),))] == 0
    assert samples[("stratum_proxy_share_difficulty_total", (("worker", "farm.alice"),))] == 1.5
    expected_alice = dict.fromkeys(REJECT_REASONS, 0) | {"duplicate": 1, "low_difficulty": 2}
    expected_bob = dict.fromkeys(REJECT_REASONS, 1) | {"upstream_rejected": 2}
    for worker, expected in (("farm.alice", expected_alice), ("farm.bob", expected_bob)):
        for reason, value in expected.items():
            assert samples[(rejected, (("reason", reason), ("worker", worker)))] == value, (worker, reason)
    assert set(REJECT_REASONS) == {
        "job_not_found", "duplicate", "low_difficulty", "invalid_ntime",
        "invalid_version", "invalid_params", "unauthorized", "upstream_rejected",
    }  # fmt: skip


async def test_label_values_are_escaped() -> None:
    registry = StatsRegistry()
    name = 'odd"name\\with\nnewline'
    registry.worker(name).accepted = 7
    samples = _samples(await _render(registry))
    assert samples[("stratum_proxy_shares_accepted_total", (("worker", name),))] == 7


async def test_many_workers_render_in_chunks() -> None:
    registry = StatsRegistry()
    for i in range(1234):
        registry.worker(f"w{i}").accepted = i
    chunks = [chunk async for chunk in render_workers(registry)]
    assert len(chunks) > 4  # yields between chunks of workers, not one giant string
    samples = _samples(b"".join(chunks).decode())
    assert sum(v for (name, _), v in samples.items() if name == "stratum_proxy_shares_accepted_total") == sum(
        range(1234)
    )


def test_worker_cap_counts_the_excess_as_other() -> None:
    registry = StatsRegistry(max_workers=3)
    names = [registry.worker(f"w{i}").name for i in range(5)]
    assert names == ["w0", "w1", "w2", OVERFLOW_WORKER, OVERFLOW_WORKER]
    assert registry.overflowed == 2
    assert registry.worker("w1").name == "w1"  # known names keep their own counters


def test_idle_workers_expire_and_connected_ones_stay() -> None:
    registry = StatsRegistry(worker_expiry=100.0)
    gone, here = registry.worker("gone", now=0.0), registry.worker("here", now=0.0)
    here.connections = 1
    gone.last_share = 50.0
    registry.sample(149.0)
    assert set(registry.workers) == {"gone", "here"}
    registry.sample(151.0)
    assert set(registry.workers) == {"here"}


def test_hashrate_estimate_converges_to_the_work_rate() -> None:
    stats = WorkerStats("w")
    rate_diff_per_s = 0.25  # a quarter of a difficulty-1 share per second
    now = 0.0
    stats.sample(now)
    for _ in range(400):  # 100 minutes in 15 s steps
        now += 15.0
        stats.difficulty_sum += rate_diff_per_s * 15.0
        stats.sample(now)
    expected = rate_diff_per_s * HASHES_PER_DIFFICULTY
    assert stats.hashrate[0] == pytest.approx(expected, rel=1e-6)
    assert stats.hashrate[1] == pytest.approx(expected, rel=1e-2)
    # A stop shows in the 1-minute estimate long before the 15-minute one.
    for _ in range(16):  # four minutes
        now += 15.0
        stats.sample(now)
    assert stats.hashrate[0] < 0.05 * expected < stats.hashrate[1]
    assert math.isfinite(stats.hashrate[1])
