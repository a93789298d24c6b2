"""PROXY protocol on the miner listener: the real address from a trusted balancer only."""

from __future__ import annotations

import json
import socket
import struct

import aiohttp

from tests.e2e.support import ScriptedMiner, proxy_config, running_pool, running_proxy


def _v2_header(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    body = (
        socket.inet_aton(source[0])
        + socket.inet_aton(destination[0])
        + struct.pack("!HH", source[1], destination[1])
    )
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


async def _workers(port: int | None) -> list[dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/api/v1/workers") as response,
    ):
        workers: list[dict[str, object]] = json.loads(await response.text())["workers"]
        return workers


async def test_v1_and_v2_headers_give_the_miners_real_address() -> None:
    async with running_pool() as pool:
        config = proxy_config([pool.port], extra="proxy_protocol = true")
        async with running_proxy(config) as proxy:
            v2 = await ScriptedMiner.connect(proxy.ports[0], worker="farm.v2")
            await v2.send_raw(_v2_header(("203.0.113.9", 41000), ("198.51.100.1", 3333)))
            await v2.handshake()
            v1 = await ScriptedMiner.connect(proxy.ports[0], worker="farm.v1")
            await v1.send_raw(b"PROXY TCP4 192.0.2.44 198.51.100.1 52000 3333\r\n")
            await v1.handshake()
            assert (await v1.submit(v1.find_share()))["result"] is True
            peers = {str(w["worker"]): w["peers"] for w in await _workers(proxy.http.port)}
            assert peers == {"farm.v2": ["203.0.113.9:41000"], "farm.v1": ["192.0.2.44:52000"]}


async def test_header_from_an_untrusted_peer_is_refused() -> None:
    async with running_pool() as pool:
        config = proxy_config([pool.port], extra='proxy_protocol = true\ntrusted_proxies = ["10.0.0.0/8"]')
        async with running_proxy(config) as proxy:
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.send_raw(_v2_header(("203.0.113.9", 41000), ("198.51.100.1", 3333)))
            assert await miner.closed()
            assert proxy.stats.connections["rejected_untrusted_proxy"] == 1


async def test_stratum_without_the_expected_header_is_closed() -> None:
    async with running_pool() as pool:
        config = proxy_config([pool.port], extra="proxy_protocol = true")
        async with running_proxy(config) as proxy:
            good = await ScriptedMiner.connect(proxy.ports[0], worker="farm.good")
            await good.send_raw(b"PROXY TCP4 192.0.2.1 198.51.100.1 1000 3333\r\n")
            await good.handshake()
            bare = await ScriptedMiner.connect(proxy.ports[0])
            await bare.send({"id": 1, "method": "mining.subscribe", "params": []})
            assert await bare.closed()
            assert (await good.submit(good.find_share()))["result"] is True
