"""The bundled test pool over loopback, driven by a raw client: protocol, jobs, verdicts, bad input."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
from typing import Any

import pytest

from proxy.mining.hashing import merkle_root
from proxy.mining.target import DIFF1_TARGET, target_from_nbits
from proxy.tools import wait_until
from proxy.tools.pool import (
    BLOCK_SUBSIDY,
    REJECTED_BY_POOL,
    PoolConfig,
    merkle_branch,
    nbits_for_difficulty,
)
from tests.tools.support import PoolFactory, RawClient, find_nonce, sha256d, share_hash, target_of

DIFF = 1e-6  # about one hash in 4,300 meets it: shares are found in milliseconds


def submit(worker: str, notify: list[Any], en2: str, nonce: int, vbits: str | None = None) -> list[str]:
    params = [worker, notify[0], en2, notify[7], f"{nonce:08x}"]
    return params if vbits is None else [*params, vbits]


def error_code(reply: dict[str, Any]) -> int | None:
    return None if reply["error"] is None else int(reply["error"][0])


# --------------------------------------------------------------------------- handshake and jobs


async def test_handshake_answers_like_a_pool(make_pool: PoolFactory) -> None:
    pool = await make_pool(difficulty=DIFF)
    client = await RawClient.connect(pool.port)
    configure = await client.call(
        1,
        "mining.configure",
        [
            ["version-rolling", "minimum-difficulty", "subscribe-extranonce", "info"],
            {"version-rolling.mask": "ffffffff", "version-rolling.min-bit-count": 2},
        ],
    )
    assert configure["result"] == {
        "version-rolling": True,
        "version-rolling.mask": "1fffe000",
        "minimum-difficulty": False,
        "subscribe-extranonce": True,
        "info": False,
    }
    subscribe = (await client.call(2, "mining.subscribe", ["cgminer/4.11.1"]))["result"]
    subscriptions, extranonce1, size = subscribe
    assert [s[0] for s in subscriptions] == ["mining.set_difficulty", "mining.notify"]
    assert len(bytes.fromhex(extranonce1)) == 4 and size == 8
    assert (await client.call("auth", "mining.authorize", ["acct.w1", "x"]))["result"] is True
    # set_difficulty first, then the job: miners apply a difficulty to the next job.
    first = await client.recv()
    second = await client.recv()
    assert first == {"id": None, "method": "mining.set_difficulty", "params": [DIFF]}
    assert second["method"] == "mining.notify" and len(second["params"]) == 9
    assert (await client.call(7, "mining.extranonce.subscribe", []))["result"] is True
    assert (await client.call(8, "mining.suggest_difficulty", [0.5]))["result"] is True
    assert (await client.call(9, "mining.suggest_target", ["00" * 32]))["result"] is True
    assert (await client.call(10, "mining.get_transactions", [second["params"][0]]))["result"] == []
    unknown = await client.call(11, "mining.capabilities", [])
    assert unknown["error"][:2] == [20, "Unknown method"]
    assert pool.stats.suggested_difficulties == [0.5]
    assert pool.sessions[0].user_agent == "cgminer/4.11.1"
    await client.close()


async def test_missing_miner_mask_means_all_bits(make_pool: PoolFactory) -> None:
    pool = await make_pool(version_mask=0x00FFE000)
    client = await RawClient.connect(pool.port)
    reply = await client.call(1, "mining.configure", [["version-rolling"], {}])
    assert reply["result"] == {"version-rolling": True, "version-rolling.mask": "00ffe000"}
    narrow = await client.call(
        2, "mining.configure", [["version-rolling"], {"version-rolling.mask": "0000e000"}]
    )
    assert narrow["result"]["version-rolling.mask"] == "0000e000"
    await client.close()


async def test_notify_carries_a_real_coinbase_and_branch(make_pool: PoolFactory) -> None:
    pool = await make_pool(extranonce2_size=6)
    client = await RawClient.connect(pool.port)
    hs = await client.handshake()
    _, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean = hs.notify
    assert (version, nbits, clean) == ("20000000", "1d00ffff", True)
    assert abs(int(ntime, 16) - time.time()) < 86_400  # the current time, not a constant
    assert prevhash.endswith("00000000")  # a block hash in stratum word order, as ckpool sends
    assert len(branch) <= 12 and all(len(bytes.fromhex(h)) == 32 for h in branch)

    tx = bytes.fromhex(coinb1 + hs.extranonce1 + "00" * hs.extranonce2_size + coinb2)
    assert tx[:4] == struct.pack("<I", 1) and tx[4] == 1  # version 1, one input
    assert tx[5:37] == b"\0" * 32 and tx[37:41] == b"\xff" * 4  # the null prevout of a coinbase
    script_len = tx[41]
    script = tx[42 : 42 + script_len]
    height_len = script[0]
    height = int.from_bytes(script[1 : 1 + height_len], "little")
    assert height == pool.factory.height  # BIP34: the height is the first push
    # The extranonce sits in a push of exactly extranonce1 + extranonce2 bytes.
    en_at = len(bytes.fromhex(coinb1)) - 42
    assert script[en_at - 1] == 4 + hs.extranonce2_size
    rest = tx[42 + script_len :]
    assert rest[:4] == b"\xff" * 4 and rest[4] == 1  # sequence, one output
    (value,) = struct.unpack("<q", rest[5:13])
    assert value >= BLOCK_SUBSIDY
    assert rest[13 + 1 + rest[13] :] == b"\0\0\0\0"  # output script, then lock time 0
    await client.close()


@pytest.mark.parametrize("count", range(10))
def test_merkle_branch_folds_to_the_full_tree_root(count: int) -> None:
    txids = [hashlib.sha256(bytes([i])).digest() for i in range(count)]
    coinbase = sha256d(b"coinbase")
    level = [coinbase, *txids]
    while len(level) > 1:  # the whole tree, Bitcoin's way
        if len(level) % 2:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    assert merkle_root(coinbase, merkle_branch(txids)) == level[0]


@pytest.mark.parametrize("difficulty", [1e-6, 5e-5, 1.0, 1e6])
def test_nbits_for_difficulty_round_trips(difficulty: float) -> None:
    target = target_from_nbits(nbits_for_difficulty(difficulty))
    assert difficulty <= DIFF1_TARGET / target <= difficulty * 1.0001


async def test_extranonce1_is_unique_per_connection(make_pool: PoolFactory) -> None:
    pool = await make_pool()
    clients = [await RawClient.connect(pool.port) for _ in range(5)]
    extranonces = set()
    for client in clients:
        reply = await client.call(1, "mining.subscribe", [])
        extranonces.add(reply["result"][1])
    assert len(extranonces) == 5
    for client in clients:
        await client.close()


# --------------------------------------------------------------------------- verdicts


async def test_every_share_verdict_has_its_code(make_pool: PoolFactory) -> None:
    pool = await make_pool(difficulty=DIFF)
    client = await RawClient.connect(pool.port)
    hs = await client.handshake("acct.w1")
    job = hs.notify
    en1 = hs.extranonce1
    en2 = "00" * hs.extranonce2_size
    base = int(job[5], 16)
    good = find_nonce(job, en1, en2, difficulty=DIFF, version=base | 0x2000)
    low = find_nonce(job, en1, en2, difficulty=DIFF, meets=False)

    async def verdict(params: list[str]) -> int | None:
        return error_code(await client.call(4, "mining.submit", params))

    assert await verdict(submit("acct.w1", job, en2, good, "00002000")) is None
    assert await verdict(submit("acct.w1", job, en2, good, "00002000")) == 22
    assert await verdict(submit("acct.w1", job, en2, low)) == 23
    assert await verdict(submit("acct.w1", [*job[:0], "nope", *job[1:]], en2, good)) == 21
    assert await verdict(submit("acct.w1", job, en2[:-2], good)) == 20  # extranonce2 too short
    assert await verdict(submit("acct.w1", job, en2, good, "80000000")) == 20  # outside the mask
    late = [*job[:7], f"{int(job[7], 16) + 7001:08x}", job[8]]
    assert await verdict(submit("acct.w1", late, en2, good)) == 20  # ntime beyond the window
    assert await verdict(submit("acct.other", job, en2, good)) == 24

    pool.new_job(clean=True)  # a new block voids the job
    another = find_nonce(job, en1, en2, difficulty=DIFF, start=good + 1)
    assert await verdict(submit("acct.w1", job, en2, another)) == 21

    stranger = await RawClient.connect(pool.port)
    assert error_code(await stranger.call(4, "mining.submit", submit("acct.w1", job, en2, good))) == 25

    stats = pool.stats
    assert stats.accepted == 1 and stats.credited_work == DIFF
    assert stats.workers["acct.w1"].accepted == 1 and stats.workers["acct.w1"].rejected == 7
    assert "acct.other" not in stats.workers  # never authorized: no per-worker series
    assert stats.rejected == {
        "duplicate": 1,
        "low_difficulty": 1,
        "job_not_found": 2,
        "invalid_params": 1,
        "invalid_version": 1,
        "invalid_ntime": 1,
        "unauthorized": 1,
        "not_subscribed": 1,
    }
    await client.close()
    await stranger.close()


async def test_refused_rolling_rejects_version_bits(make_pool: PoolFactory) -> None:
    pool = await make_pool(difficulty=DIFF, version_mask=0)
    client = await RawClient.connect(pool.port)
    hs = await client.handshake()
    assert hs.mask == 0
    assert client.seen[0]["result"] == {"version-rolling": False}
    en2 = "00" * hs.extranonce2_size
    nonce = find_nonce(hs.notify, hs.extranonce1, en2, difficulty=DIFF)
    rolled = await client.call(4, "mining.submit", submit("user.w1", hs.notify, en2, nonce, "00002000"))
    assert error_code(rolled) == 20
    plain = await client.call(5, "mining.submit", submit("user.w1", hs.notify, en2, nonce))
    assert error_code(plain) is None
    await client.close()


async def test_reject_every_refuses_valid_shares_with_code_20(make_pool: PoolFactory) -> None:
    pool = await make_pool(difficulty=DIFF, reject_every=3)
    client = await RawClient.connect(pool.port)
    hs = await client.handshake()
    en2 = "00" * hs.extranonce2_size
    codes = []
    nonce = -1
    for i in range(6):
        nonce = find_nonce(hs.notify, hs.extranonce1, en2, difficulty=DIFF, start=nonce + 1)
        reply = await client.call(i, "mining.submit", submit("user.w1", hs.notify, en2, nonce))
        codes.append(error_code(reply))
        if reply["error"] is not None:
            assert reply["error"][1] == "Rejected by test pool"
    assert codes == [None, None, 20, None, None, 20]
    assert pool.stats.accepted == 4 and pool.stats.rejected == {REJECTED_BY_POOL: 2}
    await client.close()


async def test_block_candidates_are_recorded(make_pool: PoolFactory) -> None:
    # Network target at 4x the share difficulty: about one share in four is a block.
    pool = await make_pool(difficulty=DIFF, nbits=nbits_for_difficulty(4 * DIFF))
    client = await RawClient.connect(pool.port)
    hs = await client.handshake()
    en2 = "00" * hs.extranonce2_size
    block = find_nonce(hs.notify, hs.extranonce1, en2, difficulty=4 * DIFF)
    reply = await client.call(4, "mining.submit", submit("user.w1", hs.notify, en2, block))
    assert reply["result"] is True
    assert len(pool.stats.blocks) == 1
    found = pool.stats.blocks[0]
    assert (found.worker, found.job_id, found.height) == ("user.w1", hs.notify[0], pool.factory.height)
    assert int(found.hash, 16) <= target_from_nbits(int(hs.notify[6], 16))
    await client.close()


async def test_difficulty_change_applies_from_the_next_job(make_pool: PoolFactory) -> None:
    pool = await make_pool(difficulty=DIFF)
    client = await RawClient.connect(pool.port)
    hs = await client.handshake()
    old_job = hs.notify
    en2 = "00" * hs.extranonce2_size
    job = pool.set_difficulty(1000 * DIFF)
    assert (await client.recv())["params"] == [1000 * DIFF]
    new_job = (await client.recv())["params"]
    assert new_job[0] == job.job_id and new_job[8] is False
    # The old job keeps the old (easier) difficulty; the new one is judged at the new one.
    nonce = find_nonce(old_job, hs.extranonce1, en2, difficulty=DIFF)
    assert error_code(await client.call(4, "mining.submit", submit("user.w1", old_job, en2, nonce))) is None
    nonce = -1
    while True:  # a share good enough for the old difficulty but not for the new one
        nonce = find_nonce(new_job, hs.extranonce1, en2, difficulty=DIFF, start=nonce + 1)
        if share_hash(new_job, hs.extranonce1, en2, nonce, int(new_job[5], 16)) > target_of(1000 * DIFF):
            break
    assert error_code(await client.call(5, "mining.submit", submit("user.w1", new_job, en2, nonce))) == 23
    assert pool.stats.credited_work == DIFF
    await client.close()


async def test_set_version_mask_reaches_rolling_miners_only(make_pool: PoolFactory) -> None:
    pool = await make_pool()
    rolling = await RawClient.connect(pool.port)
    await rolling.handshake(mask="1fffe000")
    plain = await RawClient.connect(pool.port)
    await plain.handshake(mask=None)
    assert pool.set_version_mask(0x0FFFF000) == 1
    message = await rolling.recv()
    assert message == {"id": None, "method": "mining.set_version_mask", "params": ["0fffe000"]}
    await rolling.close()
    await plain.close()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "garbage",
    [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"GET / HTTP/1.1", b"hello pool", b"{not json"],
)
async def test_non_stratum_input_closes_only_that_connection(make_pool: PoolFactory, garbage: bytes) -> None:
    pool = await make_pool()
    bystander = await RawClient.connect(pool.port)
    await bystander.handshake()
    offender = await RawClient.connect(pool.port)
    offender.send(garbage)
    assert await offender.closed_by_peer()
    assert (await bystander.call(9, "mining.extranonce.subscribe", []))["result"] is True
    newcomer = await RawClient.connect(pool.port)
    assert (await newcomer.call(1, "mining.subscribe", []))["error"] is None
    for client in (bystander, offender, newcomer):
        await client.close()


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b'{"id":1,"method":"mining.submit","params":["w"]}', 20),
        (b'{"id":1,"method":"mining.authorize","params":[]}', 20),
        (b'{"id":1,"method":"mining.suggest_difficulty","params":[-1]}', 20),
        (b'{"id":1,"method":7,"params":[]}', 20),
        (b'{"id":1,"method":"client.hax","params":[]}', 20),
        (b"[1,2,3]", 20),
        (b'{"id":1,"params":[]}', 20),
    ],
)
async def test_malformed_requests_get_an_error_and_the_connection_lives(
    make_pool: PoolFactory, line: bytes, code: int
) -> None:
    pool = await make_pool()
    client = await RawClient.connect(pool.port)
    client.send(line)
    reply = await client.recv()
    assert error_code(reply) == code
    assert (await client.call(2, "mining.subscribe", []))["error"] is None
    await client.close()


async def test_overlong_line_is_refused_and_the_stream_resynchronises(make_pool: PoolFactory) -> None:
    pool = await make_pool(max_line=1024)
    client = await RawClient.connect(pool.port)
    client.send(b'{"id":1,"method":"mining.subscribe","params":["' + b"x" * 4000 + b'"]}')
    reply = await client.recv()
    assert error_code(reply) == 20 and reply["id"] is None
    assert (await client.call(2, "mining.subscribe", []))["error"] is None
    await client.close()


async def test_responses_from_miners_are_recorded(make_pool: PoolFactory) -> None:
    pool = await make_pool()
    client = await RawClient.connect(pool.port)
    await client.handshake()
    assert pool.broadcast(b'{"id":"v","method":"client.get_version","params":[]}\n') == 1
    request = await client.recv()
    assert request["method"] == "client.get_version"
    client.send({"id": "v", "result": "raw-test/1.0", "error": None})
    await wait_until(lambda: len(pool.stats.responses) == 1)
    assert bytes(pool.stats.responses[0].result) == b'"raw-test/1.0"'
    await client.close()


# --------------------------------------------------------------------------- pool control


async def test_stop_listening_refuses_connections_and_listen_resumes(make_pool: PoolFactory) -> None:
    pool = await make_pool()
    kept = await RawClient.connect(pool.port)
    await kept.handshake()
    await pool.stop_listening()
    assert not pool.listening
    with pytest.raises(OSError):
        await RawClient.connect(pool.port)
    assert (await kept.call(9, "mining.extranonce.subscribe", []))["result"] is True  # still served
    await pool.listen()
    again = await RawClient.connect(pool.port)
    assert (await again.call(1, "mining.subscribe", []))["error"] is None
    assert pool.drop_all() == 2
    assert await kept.closed_by_peer() and await again.closed_by_peer()
    await kept.close()
    await again.close()


async def test_silence_stops_jobs_and_replies(make_pool: PoolFactory) -> None:
    pool = await make_pool(job_interval=0.01)
    client = await RawClient.connect(pool.port)
    await client.handshake()
    pool.silence(jobs=True, replies=True)
    jobs = pool.stats.jobs
    last_job = pool.current[0].job_id if pool.current else ""
    client.send({"id": 5, "method": "mining.extranonce.subscribe", "params": []})
    seen = []
    with pytest.raises(TimeoutError):
        while True:  # whatever was already on its way, then nothing
            seen.append(await client.recv(timeout=0.2))
    assert all(m.get("id") != 5 for m in seen)  # muted replies are dropped, not delayed
    assert all(m["params"][0] <= last_job for m in seen if m.get("method") == "mining.notify")
    assert pool.stats.jobs == jobs
    pool.unsilence()
    notify = await client.recv_until(
        lambda m: m.get("method") == "mining.notify" and m["params"][0] > last_job
    )
    assert notify["params"][8] is False  # timer jobs keep earlier jobs valid
    await client.close()


def test_config_refuses_nonsense() -> None:
    for bad in (
        {"difficulty": 0.0},
        {"difficulty": float("nan")},
        {"extranonce2_size": 0},
        {"extranonce2_size": 17},
        {"job_interval": 0.0},
        {"reject_every": -1},
        {"max_branch": 13},
        {"version_mask": 1 << 32},
    ):
        with pytest.raises(ValueError):
            PoolConfig(**bad)


async def test_slow_reader_is_dropped_not_buffered_forever(make_pool: PoolFactory) -> None:
    pool = await make_pool()
    client = await RawClient.connect(pool.port)
    await client.handshake()
    session = pool.sessions[0]
    # The client never reads: once the kernel buffers are full, the pool's own buffer
    # passes its cap and the pool lets go of the connection.
    line = b'{"id":null,"method":"client.show_message","params":["' + b"x" * 65536 + b'"]}\n'
    for _ in range(1000):  # up to 64 MiB: more than any kernel buffers on loopback
        if session.closed:
            break
        pool.broadcast(line)
        await asyncio.sleep(0)
    assert session.closed
    await client.close()
