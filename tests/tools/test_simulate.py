"""Simulated miners against the bundled test pool over loopback, end to end.

Tests wait for states (share counts, reconnections), never for durations, and never
assert on timing.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from proxy.mining.target import DIFF1_TARGET
from proxy.stratum.codec import parse_share_reply
from proxy.tools import wait_until
from proxy.tools.pool import REJECTED_BY_POOL, TestPool, nbits_for_difficulty
from proxy.tools.simulate import AGENT, Fleet, MinerStats, RttStats, SimConfig, parse_url, spread_bits
from tests.tools.support import FleetFactory, PoolFactory, target_of

DIFF = 2.5e-7  # one hash in ~1,070 is a share: hundreds of shares in well under a second


def assert_every_request_answered(totals: MinerStats) -> None:
    assert totals.unanswered == 0
    assert totals.unexpected_replies == 0
    assert totals.replies_received == totals.requests_sent


def within_poisson(observed: float, expected: float, sigmas: float = 6.0) -> bool:
    """A two-sided band of ``sigmas`` Poisson standard deviations (one in ~5e8 false alarms)."""
    return abs(observed - expected) <= sigmas * math.sqrt(expected) + 1


async def test_fleet_mines_and_the_pool_credits_the_work_done(
    make_pool: PoolFactory, make_fleet: FleetFactory
) -> None:
    pool = await make_pool(difficulty=DIFF, nbits=nbits_for_difficulty(20 * DIFF))
    fleet = await make_fleet(pool, 4)
    # The handshake of real firmware: configure, subscribe, authorize, extranonce.subscribe.
    sessions = sorted(pool.sessions, key=lambda s: min(s.workers))
    assert [min(s.workers) for s in sessions] == [f"sim.sim{i:04d}" for i in range(1, 5)]
    assert all(s.user_agent == AGENT and s.extranonce_subscribed for s in sessions)
    assert all(s.miner_mask == 0xFFFFFFFF and s.version_mask == 0x1FFFE000 for s in sessions)
    assert all(m.version_mask == 0x1FFFE000 for m in fleet.miners)
    await wait_until(lambda: pool.stats.accepted >= 800)
    totals = await fleet.stop()

    assert totals.handshakes == 4 and totals.reconnects == 0
    assert sorted(pool.stats.workers) == [f"sim.sim{i:04d}" for i in range(1, 5)]
    # Both sides agree on every share, and every request had its reply.
    assert_every_request_answered(totals)
    assert totals.rejected_total == 0 and pool.stats.rejected_total == 0
    assert totals.accepted == pool.stats.accepted == totals.shares_submitted
    for miner in fleet.miners:
        assert pool.stats.workers[miner.worker].accepted == miner.stats.accepted
        assert miner.stats.rtt.count == miner.stats.shares_submitted
    assert pool.stats.credited_work == pytest.approx(totals.accepted_work, rel=1e-9)
    # Block candidates: about one share in 20 meets the network target.
    assert len(pool.stats.blocks) == totals.block_candidates > 0

    # Credited work matches the hashes done: each hash is a share with probability p, so
    # the share count is Poisson with mean hashes * p; allow 6 sigma.
    p = (target_of(DIFF) + 1) / 2**256
    shares = pool.stats.credited_work / DIFF
    assert within_poisson(shares, totals.hashes * p), (shares, totals.hashes * p)
    credited_hashes = pool.stats.credited_work * 2**256 / DIFF1_TARGET
    assert 0.7 < credited_hashes / totals.hashes < 1.3


async def test_pool_rejections_reach_the_miner(make_pool: PoolFactory, make_fleet: FleetFactory) -> None:
    pool = await make_pool(difficulty=DIFF, reject_every=4)
    fleet = await make_fleet(pool, 2)
    await wait_until(lambda: pool.stats.accepted + pool.stats.rejected_total >= 100)
    totals = await fleet.stop()
    assert_every_request_answered(totals)
    rejected = pool.stats.rejected[REJECTED_BY_POOL]
    assert rejected == (pool.stats.accepted + rejected) // 4 > 0
    assert totals.rejected == {20: rejected}
    assert totals.accepted == pool.stats.accepted


async def test_duplicate_and_stale_shares_are_rejected(
    make_pool: PoolFactory, make_fleet: FleetFactory
) -> None:
    pool = await make_pool(difficulty=DIFF)
    fleet = await make_fleet(pool, 1)
    miner = fleet.miners[0]
    await wait_until(lambda: miner.stats.accepted >= 3)
    miner.pause()
    await wait_until(lambda: miner.in_flight == 0)
    share = list(miner.accepted_shares[-1])

    duplicate = parse_share_reply(await miner.request("mining.submit", share))
    assert (duplicate.accepted, duplicate.code) == (False, 22)

    job = pool.new_job(clean=True)
    await wait_until(lambda: miner.job is not None and miner.job.job_id == job.job_id)
    stale = parse_share_reply(await miner.request("mining.submit", share))
    assert (stale.accepted, stale.code) == (False, 21)
    assert pool.stats.rejected == {"duplicate": 1, "job_not_found": 1}

    accepted = miner.stats.accepted
    miner.resume()
    await wait_until(lambda: miner.stats.accepted >= accepted + 5)
    totals = await fleet.stop()
    assert miner.accepted_shares[-1][1] == job.job_id  # mining moved to the new block
    assert_every_request_answered(totals)
    assert totals.rejected_total == 0  # request() replies are the test's, not share verdicts


@pytest.mark.parametrize("extranonce2_size", [None, 4])
async def test_set_extranonce_then_new_job(
    make_pool: PoolFactory, make_fleet: FleetFactory, extranonce2_size: int | None
) -> None:
    pool = await make_pool(difficulty=DIFF)
    fleet = await make_fleet(pool, 3, record=True)
    await wait_until(lambda: pool.stats.accepted >= 30)
    # Pause so no share computed with the old extranonce1 is in flight during the switch.
    fleet.pause()
    await wait_until(lambda: fleet.in_flight == 0)
    before = {m.worker: m.extranonce1 for m in fleet.miners}

    assert pool.set_extranonce(extranonce2_size) == 3
    job = pool.current[0] if pool.current else None
    assert job is not None
    await wait_until(lambda: all(m.job is not None and m.job.job_id == job.job_id for m in fleet.miners))
    for miner, session in zip(fleet.miners, sorted(pool.sessions, key=lambda s: min(s.workers)), strict=True):
        assert miner.extranonce1 == session.extranonce1 != before[miner.worker]
        assert miner.extranonce2_size == (extranonce2_size or 8)
        methods = [m.get("method") for m in miner.received_json()]
        switch = methods.index("mining.set_extranonce")
        assert "mining.notify" in methods[switch + 1 :]  # the new job comes after

    accepted = pool.stats.accepted
    fleet.resume()
    await wait_until(lambda: pool.stats.accepted >= accepted + 30)
    totals = await fleet.stop()
    assert_every_request_answered(totals)
    assert totals.rejected_total == 0 and pool.stats.rejected_total == 0


async def test_difficulty_applies_to_the_next_job(make_pool: PoolFactory, make_fleet: FleetFactory) -> None:
    pool = await make_pool(difficulty=DIFF)
    fleet = await make_fleet(pool, 1)
    miner = fleet.miners[0]
    miner.pause()
    await wait_until(lambda: miner.in_flight == 0)
    accepted, work = miner.stats.accepted, miner.stats.accepted_work
    # A bare set_difficulty changes nothing until a job follows (cgminer's next_diff).
    pool.broadcast(b'{"id":null,"method":"mining.set_difficulty","params":[0.5]}\n')
    pool.broadcast(b'{"id":null,"method":"client.show_message","params":["sync"]}\n')
    await wait_until(lambda: miner.messages == ["sync"])
    assert miner.job_difficulty == DIFF
    job = pool.set_difficulty(2 * DIFF)
    await wait_until(lambda: miner.job is not None and miner.job.job_id == job.job_id)
    assert miner.job_difficulty == 2 * DIFF
    miner.resume()
    await wait_until(lambda: miner.stats.accepted >= accepted + 20)
    totals = await fleet.stop()
    assert_every_request_answered(totals)
    assert totals.rejected_total == 0
    assert work == pytest.approx(DIFF * accepted)
    assert totals.accepted_work - work == pytest.approx(2 * DIFF * (totals.accepted - accepted))
    assert pool.stats.credited_work == pytest.approx(totals.accepted_work)


async def test_version_mask_change_is_followed(make_pool: PoolFactory, make_fleet: FleetFactory) -> None:
    pool = await make_pool(difficulty=DIFF)
    fleet = await make_fleet(pool, 2)
    assert all(m.version_mask == 0x1FFFE000 for m in fleet.miners)
    fleet.pause()
    await wait_until(lambda: fleet.in_flight == 0)
    assert pool.set_version_mask(0x00006000) == 2
    await wait_until(lambda: all(m.version_mask == 0x6000 for m in fleet.miners))
    accepted = pool.stats.accepted
    fleet.resume()
    await wait_until(lambda: pool.stats.accepted >= accepted + 20)
    totals = await fleet.stop()
    assert totals.rejected_total == 0
    rolled = {int(share[5], 16) for m in fleet.miners for share in m.accepted_shares}
    assert rolled and all(bits & ~0x6000 == 0 for bits in rolled) and len(rolled) > 1


async def test_reconnect_on_request_to_the_same_and_to_another_pool(
    make_pool: PoolFactory, make_fleet: FleetFactory
) -> None:
    pool = await make_pool(difficulty=DIFF)
    other = await make_pool(difficulty=DIFF)
    fleet = await make_fleet(pool, 2)
    fleet.pause()
    await wait_until(lambda: fleet.in_flight == 0)

    assert pool.reconnect() == 2  # [] : the same host and port
    await wait_until(lambda: all(m.stats.handshakes == 2 for m in fleet.miners))
    assert pool.stats.connections == 4

    assert pool.reconnect("127.0.0.1", other.port, 0) == 2
    await wait_until(lambda: all(m.stats.handshakes == 3 and m.ready.is_set() for m in fleet.miners))
    fleet.resume()
    await wait_until(lambda: other.stats.accepted >= 20)
    totals = await fleet.stop()
    assert totals.reconnects == 4
    assert_every_request_answered(totals)
    assert other.stats.connections == 2


async def test_miners_ride_out_a_pool_outage(make_pool: PoolFactory, make_fleet: FleetFactory) -> None:
    pool = await make_pool(difficulty=DIFF)
    fleet = await make_fleet(pool, 3)
    await wait_until(lambda: pool.stats.accepted >= 30)
    await pool.stop_listening()
    pool.drop_all()
    await wait_until(lambda: all(m.stats.connect_failures > 0 for m in fleet.miners))
    assert not any(m.connected for m in fleet.miners)
    await pool.listen()
    await wait_until(lambda: all(m.stats.handshakes == 2 for m in fleet.miners))
    accepted = pool.stats.accepted
    await wait_until(lambda: pool.stats.accepted >= accepted + 30)
    totals = await fleet.stop()
    assert totals.reconnects == 3
    # Shares in flight when the pool died are the only requests without a reply.
    assert totals.requests_sent == totals.replies_received + totals.unanswered
    assert totals.rejected_total == 0


async def test_miner_answers_get_version_and_sends_raw_lines(
    make_pool: PoolFactory, make_fleet: FleetFactory
) -> None:
    pool = await make_pool()
    fleet = await make_fleet(pool, 1, record=True)
    miner = fleet.miners[0]
    pool.broadcast(b'{"id":"gv","method":"client.get_version","params":[]}\n')
    await wait_until(lambda: len(pool.stats.responses) == 1)
    assert pool.stats.responses[0].id == "gv"
    assert json.loads(bytes(pool.stats.responses[0].result)) == AGENT

    assert miner.send_raw(b'{"id":"raw","method":"mining.nonsense","params":[]}')
    await wait_until(lambda: any(isinstance(m, dict) and m.get("id") == "raw" for m in miner.received_json()))
    reply = next(m for m in miner.received_json() if isinstance(m, dict) and m.get("id") == "raw")
    assert reply["error"][0] == 20
    assert miner.stats.unexpected_replies == 1  # not one of its own ids

    assert miner.send_raw(b"\x16\x03\x01 not stratum")  # the pool hangs up, the miner comes back
    await wait_until(lambda: miner.stats.handshakes == 2 and miner.ready.is_set())
    assert miner.stats.reconnects == 1


async def test_no_hash_mode_loads_the_pool_with_unique_shares(
    make_pool: PoolFactory, make_fleet: FleetFactory
) -> None:
    pool = await make_pool(difficulty=1e-12)  # target 2**256 - 1: every hash is a share
    fleet = await make_fleet(pool, 5, no_hash=True, share_rate=2000.0)
    await wait_until(lambda: pool.stats.accepted >= 1000)
    totals = await fleet.stop()
    assert_every_request_answered(totals)
    assert totals.hashes == 0
    assert totals.rejected_total == pool.stats.rejected_total == 0  # never a duplicate
    assert totals.accepted == pool.stats.accepted


async def test_no_hash_shares_fail_at_a_real_difficulty(
    make_pool: PoolFactory, make_fleet: FleetFactory
) -> None:
    pool = await make_pool(difficulty=1.0)
    fleet = await make_fleet(pool, 1, no_hash=True, share_rate=1000.0)
    await wait_until(lambda: pool.stats.rejected_total >= 50)
    totals = await fleet.stop()
    assert totals.accepted == 0 and set(totals.rejected) == {23}


async def test_fleet_without_a_pool_counts_connect_failures(make_pool: PoolFactory) -> None:
    pool = await make_pool()
    port = pool.port
    await pool.stop()
    fleet = Fleet(SimConfig(host="127.0.0.1", port=port, reconnect_delay=0.01), 2)
    await fleet.start()
    await wait_until(lambda: all(m.stats.connect_failures >= 2 for m in fleet.miners))
    totals = await fleet.stop(drain_timeout=0.1)
    assert totals.connects == 0 and totals.requests_sent == 0


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("stratum+tcp://127.0.0.1:3333", ("127.0.0.1", 3333)),
        ("tcp://localhost:1", ("localhost", 1)),
        ("127.0.0.1:3334", ("127.0.0.1", 3334)),
        ("stratum+tcp://[::1]:3333/", ("::1", 3333)),
    ],
)
def test_parse_url(url: str, expected: tuple[str, int]) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize("url", ["stratum+ssl://h:1", "stratum+tcp://h", "stratum+tcp://:1", "h:port"])
def test_parse_url_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)


def test_spread_bits_stays_inside_the_mask() -> None:
    mask = 0x1FFFE000
    values = {spread_bits(i, mask) for i in range(1 << 16)}
    assert len(values) == 1 << 16 and all(v & ~mask == 0 for v in values)
    assert spread_bits(1, mask) == 0x2000 and spread_bits(0b101, 0b10110) == 0b10010


def test_rtt_stats_percentiles_and_bounded_memory() -> None:
    rtt = RttStats()
    for i in range(10_000):
        rtt.add(i / 1000)
    assert rtt.count == 10_000 and rtt.max == 9.999
    assert len(rtt.samples) == RttStats.RESERVOIR
    assert rtt.mean == pytest.approx(4.9995)
    assert 9.0 < rtt.percentile(0.99) <= 9.999


def test_sim_config_refuses_nonsense() -> None:
    cases: list[dict[str, Any]] = [
        {"hashrate": 0.0},
        {"share_rate": -1.0},
        {"reconnect_delay": -1.0},
        {"hashrate": math.inf},
    ]
    for bad in cases:
        with pytest.raises(ValueError):
            SimConfig(**bad)


def test_testpool_is_not_collected_as_a_test_class() -> None:
    assert TestPool.__test__ is False
