"""Scripted quirks of real programs in the test pool (ckpool) and the simulator (cpuminer).

Each quirk is off by default; each test runs with it on and, where the difference is the
point, off too, so it fails when the quirk does not happen (or happens uninvited). Tests
wait for states, never for durations.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any, cast

import pytest

from proxy.mining.target import target_from_nbits
from proxy.tools import wait_until
from proxy.tools.pool import ABOVE_TARGET, PoolConfig, TestPool, nbits_for_difficulty
from proxy.tools.simulate import MinerStats, SimConfig, SimMiner
from tests.tools.support import FleetFactory, PoolFactory, RawClient, find_nonce, share_hash, target_of

DIFF = 1e-6  # about one hash in 4,300 meets it: shares are found in milliseconds

RECONNECT: dict[str, Any] = {"id": None, "method": "client.reconnect", "params": []}


def submit(worker: str, notify: list[Any], en2: str, nonce: int) -> list[str]:
    return [worker, notify[0], en2, notify[7], f"{nonce:08x}"]


def line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


def sync(pool: TestPool, text: str = "sync") -> None:
    """A marker after scripted lines: once a miner shows it, it has handled what came before."""
    pool.broadcast(line({"id": None, "method": "client.show_message", "params": [text]}))


async def handled(miner: SimMiner, pool: TestPool, text: str = "sync") -> None:
    sync(pool, text)
    await wait_until(lambda: text in miner.messages)


class WriteSpy:
    """Stands in for a session's transport and records every ``write`` call."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def spy_on(pool: TestPool) -> WriteSpy:
    (session,) = pool.sessions
    assert session.transport is not None
    spy = WriteSpy(session.transport)
    session.transport = cast(asyncio.Transport, spy)
    return spy


# --------------------------------------------------------------------------- defaults


def test_every_quirk_is_off_by_default() -> None:
    pool_quirks = (
        "integer_suggest_only",
        "strict_extranonce_subscribe",
        "reconnect_after_reject",
        "blocks_need_share_difficulty",
    )
    sim_quirks = ("keep_work_if_header_unchanged", "ignore_null_reconnect")
    assert all(getattr(PoolConfig(), name) is False for name in pool_quirks)
    assert all(getattr(SimConfig(), name) is False for name in sim_quirks)
    fields = {f.name for f in dataclasses.fields(PoolConfig)} | {
        f.name for f in dataclasses.fields(SimConfig)
    }
    assert fields >= {*pool_quirks, *sim_quirks}


def test_miner_stats_merge_sums_the_quirk_counters() -> None:
    total = MinerStats(kept_work=1, ignored_reconnects=2)
    total.merge(MinerStats(kept_work=3, ignored_reconnects=4))
    assert (total.kept_work, total.ignored_reconnects) == (4, 6)


# --------------------------------------------------------------------------- pool: ckpool 0.9.9


@pytest.mark.parametrize("quirk", [False, True])
async def test_integer_suggest_only_drops_fractional_suggestions(make_pool: PoolFactory, quirk: bool) -> None:
    pool = await make_pool(integer_suggest_only=quirk)
    client = await RawClient.connect(pool.port)
    await client.handshake()
    client.send(b'{"id":5,"method":"mining.suggest_difficulty","params":[0.5]}')
    client.send(b'{"id":6,"method":"mining.suggest_difficulty","params":[3.0]}')
    client.send(b'{"id":7,"method":"mining.suggest_difficulty","params":[3]}')
    assert (await client.reply(7))["result"] is True  # an integer is taken either way
    answered = {m.get("id") for m in client.seen if "method" not in m}
    session = pool.sessions[0]
    if quirk:
        # Lines are handled in order, so 5 and 6 were never going to be answered.
        assert answered.isdisjoint({5, 6})
        assert pool.stats.suggest_parse_failures == 2
        assert pool.stats.suggested_difficulties == [3]
    else:
        assert {5, 6} <= answered
        assert pool.stats.suggest_parse_failures == 0
        assert pool.stats.suggested_difficulties == [0.5, 3.0, 3]
    assert session.suggested_difficulty == 3
    await client.close()


@pytest.mark.parametrize("quirk", [False, True])
async def test_strict_extranonce_subscribe_drops_it_before_authorize(
    make_pool: PoolFactory, quirk: bool
) -> None:
    pool = await make_pool(strict_extranonce_subscribe=quirk)
    client = await RawClient.connect(pool.port)
    assert (await client.call(1, "mining.subscribe", ["raw-test/1.0"]))["error"] is None
    client.send({"id": 2, "method": "mining.extranonce.subscribe", "params": []})
    assert (await client.call(3, "mining.authorize", ["user.w1", "x"]))["result"] is True
    session = pool.sessions[0]
    early = [m for m in client.seen if m.get("id") == 2]
    if quirk:
        assert early == [] and not session.extranonce_subscribed
        assert pool.stats.dropped_extranonce_subscribe == 1
        assert pool.set_extranonce() == 0  # not subscribed: not told
    else:
        assert early[0]["result"] is True and session.extranonce_subscribed
        assert pool.stats.dropped_extranonce_subscribe == 0
    # Once authorized it works as usual.
    assert (await client.call(4, "mining.extranonce.subscribe", []))["result"] is True
    assert session.extranonce_subscribed
    assert pool.set_extranonce() == 1
    assert pool.stats.dropped_extranonce_subscribe == int(quirk)
    await client.close()


@pytest.mark.parametrize("clean", [True, False])
async def test_resend_current_sends_the_same_job_and_keeps_it_valid(
    make_pool: PoolFactory, clean: bool
) -> None:
    pool = await make_pool(difficulty=DIFF)
    client = await RawClient.connect(pool.port)
    hs = await client.handshake()
    first = hs.notify
    current = pool.new_job(clean=False)
    second = (await client.recv_until(lambda m: m.get("method") == "mining.notify"))["params"]
    assert second[0] == current.job_id and second[8] is False
    jobs = pool.stats.jobs

    assert pool.resend_current(clean=clean) is current
    again = (await client.recv_until(lambda m: m.get("method") == "mining.notify"))["params"]
    assert again == [*second[:8], clean]  # same id, same fields: only clean_jobs set
    assert pool.stats.jobs == jobs  # not a new job
    assert pool.book.get(current.job_id) is current and not current.voided

    # The pool's own book still takes shares on it, and on the job before it.
    en2 = "00" * hs.extranonce2_size
    for request_id, notify in enumerate((again, first), start=10):
        nonce = find_nonce(notify, hs.extranonce1, en2, difficulty=DIFF)
        reply = await client.call(request_id, "mining.submit", submit("user.w1", notify, en2, nonce))
        assert reply["result"] is True and reply["error"] is None
    assert pool.stats.accepted == 2 and pool.stats.rejected_total == 0
    await client.close()


async def test_resend_current_needs_a_job() -> None:
    with pytest.raises(RuntimeError):
        TestPool().resend_current()


@pytest.mark.parametrize("quirk", [False, True])
async def test_reconnect_after_reject_in_one_write_then_close(make_pool: PoolFactory, quirk: bool) -> None:
    pool = await make_pool(difficulty=DIFF, reconnect_after_reject=quirk)
    client = await RawClient.connect(pool.port)
    hs = await client.handshake()
    spy = spy_on(pool)
    en2 = "00" * hs.extranonce2_size
    good = find_nonce(hs.notify, hs.extranonce1, en2, difficulty=DIFF)
    assert (await client.call(4, "mining.submit", submit("user.w1", hs.notify, en2, good)))["result"] is True
    assert pool.stats.reconnects_after_reject == 0  # an accepted share sends nobody away

    low = find_nonce(hs.notify, hs.extranonce1, en2, difficulty=DIFF, meets=False)
    client.send({"id": 5, "method": "mining.submit", "params": submit("user.w1", hs.notify, en2, low)})
    reply = await client.recv()
    assert reply["id"] == 5 and reply["error"][0] == 23
    if quirk:
        assert await client.recv() == RECONNECT
        last = spy.writes[-1].splitlines()
        assert [json.loads(x) for x in last] == [reply, RECONNECT]  # one write: read together
        assert await client.closed_by_peer()
        assert pool.stats.reconnects_after_reject == 1
        await wait_until(lambda: not pool.sessions)
    else:
        assert (await client.call(6, "mining.extranonce.subscribe", []))["result"] is True
        assert RECONNECT not in client.seen and pool.sessions
        assert pool.stats.reconnects_after_reject == 0
    assert pool.stats.rejected == {"low_difficulty": 1}
    await client.close()


async def test_a_miner_sent_away_after_rejects_comes_back(
    make_pool: PoolFactory, make_fleet: FleetFactory
) -> None:
    pool = await make_pool(difficulty=DIFF, reject_every=5, reconnect_after_reject=True)
    fleet = await make_fleet(pool, 1)
    miner = fleet.miners[0]
    await wait_until(lambda: pool.stats.reconnects_after_reject >= 2 and miner.stats.handshakes >= 3)
    await wait_until(miner.ready.is_set)
    assert miner.stats.reconnects >= 2
    assert set(miner.stats.rejected) == {20}  # reject_every's code, read before the close


def regtest_shares(notify: list[Any], en1: str, en2: str) -> tuple[int, int]:
    """A nonce meeting the network target but not DIFF, and one meeting DIFF as well."""
    network = target_from_nbits(int(notify[6], 16))
    share = target_of(DIFF)
    version = int(notify[5], 16)
    above: int | None = None
    both: int | None = None
    nonce = -1
    while above is None or both is None:
        nonce = find_nonce(notify, en1, en2, difficulty=DIFF / 4, start=nonce + 1)
        value = share_hash(notify, en1, en2, nonce, version)
        assert value <= network
        if value > share and above is None:
            above = nonce
        elif value <= share and both is None:
            both = nonce
    return above, both


@pytest.mark.parametrize("quirk", [False, True])
async def test_blocks_need_share_difficulty_rejects_easy_network_hashes(
    make_pool: PoolFactory, quirk: bool
) -> None:
    # Regtest-like: the network target is easier than the share target.
    pool = await make_pool(
        difficulty=DIFF, nbits=nbits_for_difficulty(DIFF / 8), blocks_need_share_difficulty=quirk
    )
    client = await RawClient.connect(pool.port)
    hs = await client.handshake()
    en2 = "00" * hs.extranonce2_size
    above, both = regtest_shares(hs.notify, hs.extranonce1, en2)

    reply = await client.call(4, "mining.submit", submit("user.w1", hs.notify, en2, above))
    if quirk:
        assert reply == {"id": 4, "result": False, "error": None, "reject-reason": "Above target"}
        assert pool.stats.rejected == {ABOVE_TARGET: 1} and pool.stats.blocks == []
        assert pool.stats.workers["user.w1"].rejected == 1
    else:
        assert reply["result"] is True and len(pool.stats.blocks) == 1
    blocks = len(pool.stats.blocks)
    reply = await client.call(5, "mining.submit", submit("user.w1", hs.notify, en2, both))
    assert reply["result"] is True  # meets the share difficulty: a block either way
    assert len(pool.stats.blocks) == blocks + 1
    assert (
        pool.stats.blocks[-1].hash == f"{share_hash(hs.notify, hs.extranonce1, en2, both, 0x20000000):064x}"
    )
    assert pool.stats.accepted == (1 if quirk else 2)
    await client.close()


async def test_above_target_is_a_reject_for_reconnect_after_reject(make_pool: PoolFactory) -> None:
    pool = await make_pool(
        difficulty=DIFF,
        nbits=nbits_for_difficulty(DIFF / 8),
        blocks_need_share_difficulty=True,
        reconnect_after_reject=True,
    )
    client = await RawClient.connect(pool.port)
    hs = await client.handshake()
    en2 = "00" * hs.extranonce2_size
    above, _ = regtest_shares(hs.notify, hs.extranonce1, en2)
    reply = await client.call(4, "mining.submit", submit("user.w1", hs.notify, en2, above))
    assert reply["reject-reason"] == "Above target"
    assert await client.recv() == RECONNECT
    assert await client.closed_by_peer()
    assert pool.stats.reconnects_after_reject == 1 and pool.stats.blocks == []
    await client.close()


# --------------------------------------------------------------------------- simulator: cpuminer


def same_job_as_new(pool: TestPool, job_id: str) -> bytes:
    """The current notify under another id with clean_jobs: same header, "new" job."""
    assert pool.current is not None
    notify = json.loads(pool.current[1])
    notify["params"][0] = job_id
    notify["params"][8] = True
    return line(notify)


@pytest.mark.parametrize("quirk", [False, True])
async def test_keep_work_if_header_unchanged(
    make_pool: PoolFactory, make_fleet: FleetFactory, quirk: bool
) -> None:
    pool = await make_pool(difficulty=DIFF)
    fleet = await make_fleet(pool, 1, keep_work_if_header_unchanged=quirk)
    miner = fleet.miners[0]
    await wait_until(lambda: miner.stats.accepted >= 3)
    miner.pause()
    await wait_until(lambda: miner.in_flight == 0)
    old = miner.job
    assert old is not None
    jobs = miner.stats.jobs

    pool.broadcast(line({"id": None, "method": "mining.set_difficulty", "params": [2 * DIFF]}))
    pool.broadcast(same_job_as_new(pool, "feed0001"))
    await handled(miner, pool)
    assert miner.stats.jobs == jobs + 1  # the notify was read either way
    if not quirk:
        assert miner.job is not None and miner.job.job_id == "feed0001"
        assert miner.job_difficulty == 2 * DIFF and miner.stats.kept_work == 0
        return  # the pool never issued feed0001: mining on would only collect rejects

    assert miner.job is old and miner.job_difficulty == DIFF and miner.stats.kept_work == 1
    accepted = miner.stats.accepted
    miner.resume()
    await wait_until(lambda: miner.stats.accepted >= accepted + 5)
    miner.pause()
    await wait_until(lambda: miner.in_flight == 0)
    newest = list(miner.accepted_shares)[-5:]
    assert all(share[1] == old.job_id for share in newest)  # still the old job id
    assert miner.stats.rejected_total == 0

    # New header fields are new work, and the held-back difficulty comes with it.
    job = pool.new_job(clean=True)
    await wait_until(lambda: miner.job is not None and miner.job.job_id == job.job_id)
    assert miner.job_difficulty == 2 * DIFF and miner.stats.kept_work == 1


async def test_resend_current_leaves_a_minerd_at_work(
    make_pool: PoolFactory, make_fleet: FleetFactory
) -> None:
    pool = await make_pool(difficulty=DIFF)
    fleet = await make_fleet(pool, 2, keep_work_if_header_unchanged=True)
    await wait_until(lambda: pool.stats.accepted >= 10)
    job = pool.resend_current(clean=True)
    await wait_until(lambda: all(m.stats.kept_work == 1 for m in fleet.miners))
    accepted = pool.stats.accepted
    await wait_until(lambda: pool.stats.accepted >= accepted + 10)
    totals = await fleet.stop()
    assert totals.rejected_total == 0 and pool.stats.rejected_total == 0
    assert all(m.accepted_shares[-1][1] == job.job_id for m in fleet.miners)


@pytest.mark.parametrize("quirk", [False, True])
async def test_ignore_null_reconnect(make_pool: PoolFactory, make_fleet: FleetFactory, quirk: bool) -> None:
    pool = await make_pool(difficulty=DIFF)
    fleet = await make_fleet(pool, 1, ignore_null_reconnect=quirk)
    miner = fleet.miners[0]
    await wait_until(lambda: miner.stats.accepted >= 3)
    assert pool.reconnect() == 1  # params []
    pool.broadcast(line({"id": None, "method": "client.reconnect", "params": [None, pool.port, 0]}))
    if quirk:
        await handled(miner, pool)
        assert miner.stats.ignored_reconnects == 2
        accepted = miner.stats.accepted
        await wait_until(lambda: miner.stats.accepted >= accepted + 5)  # mining on, same connection
        assert miner.stats.handshakes == 1 and miner.stats.reconnects == 0
        assert pool.stats.connections == 1
    else:
        await wait_until(lambda: miner.stats.handshakes >= 2 and miner.ready.is_set())
        assert miner.stats.ignored_reconnects == 0 and pool.stats.connections >= 2


@pytest.mark.parametrize("ignore_null_reconnect", [False, True])
@pytest.mark.parametrize("port_as_string", [False, True])
async def test_reconnect_to_another_port_lands_there(
    make_pool: PoolFactory, make_fleet: FleetFactory, ignore_null_reconnect: bool, port_as_string: bool
) -> None:
    pool = await make_pool(difficulty=DIFF)
    other = await make_pool(difficulty=DIFF)
    fleet = await make_fleet(pool, 1, ignore_null_reconnect=ignore_null_reconnect)
    miner = fleet.miners[0]
    port: int | str = str(other.port) if port_as_string else other.port  # ckpool sends a string
    pool.broadcast(line({"id": None, "method": "client.reconnect", "params": ["127.0.0.1", port, 0]}))
    await wait_until(lambda: miner.stats.handshakes == 2 and miner.ready.is_set())
    assert (miner.host, miner.port) == ("127.0.0.1", other.port)
    await wait_until(lambda: not pool.sessions)
    assert [s.workers for s in other.sessions] == [{miner.worker}]
    await wait_until(lambda: other.stats.accepted >= 5)
    assert miner.stats.ignored_reconnects == 0 and other.stats.connections == 1
