"""Real miners' handshakes, replayed line for line against the proxy (tests/data/*.jsonl)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.e2e.support import ScriptedMiner, proxy_config, running_pool, running_proxy

DATA = Path(__file__).resolve().parent.parent / "data"
TRANSCRIPTS = sorted(p.name for p in DATA.glob("*.jsonl"))
MINER_DIRECTIONS = {"in", "miner->proxy"}


def _miner_lines(name: str) -> dict[int, list[str]]:
    """What each connection of the transcript sent to the pool, in order."""
    by_conn: dict[int, list[str]] = defaultdict(list)
    for raw in (DATA / name).read_text().splitlines():
        record = json.loads(raw)
        if record["dir"] in MINER_DIRECTIONS:
            by_conn[record["conn"]].append(record["line"])
    return dict(by_conn)


def test_every_transcript_is_replayed() -> None:
    assert len(TRANSCRIPTS) >= 10  # the test below must not pass on an empty data folder


@pytest.mark.parametrize("name", TRANSCRIPTS)
async def test_transcript_handshake_gets_exactly_one_reply_per_request(name: str) -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        for lines in _miner_lines(name).values():
            miner = await ScriptedMiner.connect(proxy.ports[0])
            if not lines[0].startswith("{"):
                # bfgminer's TLS ClientHello on a plain port: closed at once, so it falls back.
                await miner.send_raw(lines[0].encode("utf-8", "surrogateescape") + b"\n")
                assert await miner.closed()
                continue
            expected: Counter[object] = Counter()
            for line in lines:
                await miner.send_raw(line.encode() + b"\n")
                expected[json.loads(line)["id"]] += 1
            sentinel = await miner.request("mining.extranonce.subscribe", [], request_id="sentinel")
            assert sentinel["result"] is True
            # Replies come in request order, so every earlier request is answered by now.
            got = Counter({rid: len(replies) for rid, replies in miner.replies.items() if replies})
            assert got == expected
            subscribe_reply = next(
                r
                for rid, rs in miner.replies.items()
                for r in rs
                if isinstance(r.get("result"), list) and r["result"] and isinstance(r["result"][0], list)
            )
            assert len(subscribe_reply["result"][1]) == 4  # a 2-byte extranonce prefix, in hex
            await miner.close()
