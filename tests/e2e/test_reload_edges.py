"""Reload and shutdown corner cases: draining, removed pools, HTTP moves, secrets."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest

from proxy.app import Proxy
from proxy.config import ConfigError, load_config, parse_config
from proxy.tools import free_port, wait_until
from tests.e2e.support import ScriptedMiner, running_pool
from tests.e2e.test_reload import _config_text


async def _started(path: Path) -> Proxy:
    proxy = Proxy(load_config(path), config_path=str(path), sweep_interval=0.05)
    await proxy.start()
    await wait_until(lambda: proxy.pools.active is not None and proxy.pools.active.is_ready)
    return proxy


@pytest.mark.slow
async def test_reload_during_drain_is_refused_and_opens_nothing(tmp_path: Path) -> None:
    async with running_pool() as pool:
        path = tmp_path / "proxy.toml"
        path.write_text(_config_text([("main", pool.port)], initial=1e-7, extra="drain_grace = 30"))
        proxy = await _started(path)
        try:
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.handshake()
            pool.silence(jobs=False, replies=True)  # a share in flight keeps the drain going
            share = miner.find_share(above=1e-6)
            await miner.send({"id": 1, "method": "mining.submit", "params": share.params(miner.worker)})
            await wait_until(lambda: any(s.pending_forwards for s in proxy.server.sessions))
            drain = asyncio.get_running_loop().create_task(proxy.drain())
            await wait_until(lambda: proxy.draining)
            result = await proxy.reload()
            assert result["result"] == "failure" and "draining" in str(result["error"])
            assert proxy.ports == []  # the listeners stay closed
            proxy.pools.close()  # answers the share in flight: the drain can finish
            await drain
            assert (await miner.reply(1))["result"] is True
        finally:
            await proxy.stop()


async def test_removed_active_pool_is_not_reconnected_while_no_other_is_ready(tmp_path: Path) -> None:
    async with running_pool() as pool:
        path = tmp_path / "proxy.toml"
        path.write_text(_config_text([("old", pool.port)], initial=1e-7))
        proxy = await _started(path)
        try:
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.handshake()
            dead = free_port()  # nothing listens there
            path.write_text(_config_text([("new", dead)], initial=1e-7))
            assert (await proxy.reload())["result"] == "success"
            connections = pool.stats.connections
            new = proxy.pools.pools[0]
            await wait_until(lambda: new.backoff >= 0.1)  # the new pool failed a few times
            assert pool.stats.connections == connections  # no churn on the removed pool
            # Meanwhile the miner keeps mining the removed pool's valid work.
            assert (await miner.submit(miner.find_share()))["result"] is True
            # A newcomer waits for a usable pool instead of landing on the removed one.
            late = await ScriptedMiner.connect(proxy.ports[0], worker="farm.late")
            await late.send({"id": "s", "method": "mining.subscribe", "params": []})
            await asyncio.sleep(0.3)
            assert not late.replies.get("s")
            await proxy.stop()
            assert (await late.reply("s"))["error"][0] == 20  # answered at shutdown, not dropped
        finally:
            await proxy.stop()


async def test_shutdown_answers_shares_in_flight_on_a_removed_pool(tmp_path: Path) -> None:
    async with running_pool() as pool:
        path = tmp_path / "proxy.toml"
        path.write_text(_config_text([("old", pool.port)], initial=1e-7))
        proxy = await _started(path)
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        path.write_text(_config_text([("new", free_port())], initial=1e-7))
        assert (await proxy.reload())["result"] == "success"
        pool.silence(jobs=False, replies=True)
        share = miner.find_share(above=1e-6)
        await miner.send({"id": "x", "method": "mining.submit", "params": share.params(miner.worker)})
        await wait_until(lambda: any(s.pending_forwards for s in proxy.server.sessions))
        await proxy.stop()
        assert (await miner.reply("x"))["result"] is True


async def test_http_endpoint_moves_on_reload_and_a_busy_port_changes_nothing(tmp_path: Path) -> None:
    async with running_pool() as pool:
        path = tmp_path / "proxy.toml"
        text = _config_text([("main", pool.port)], initial=1e-7)
        path.write_text(text)
        proxy = await _started(path)
        busy = socket.socket()
        try:
            old_port = proxy.http.port
            new_port = free_port()
            path.write_text(text.replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{new_port}"'))
            result = await proxy.reload()
            assert result["result"] == "success" and result["changes"]["http_moved"] is True  # type: ignore[index]
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{new_port}/healthz") as response:
                    assert response.status == 200
                await wait_until(lambda: _refused(old_port))
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            taken = busy.getsockname()[1]
            path.write_text(text.replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{taken}"'))
            failed = await proxy.reload()
            assert failed["result"] == "failure" and "http.listen" in str(failed["error"])
            assert proxy.http.port == new_port  # still serving where it was
        finally:
            busy.close()
            await proxy.stop()


def _refused(port: int | None) -> bool:
    assert port is not None
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_a_malformed_pool_url_never_echoes_a_password() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('[[pools]]\nname = "p"\nurl = "stratum+tcp:/acct:hunter2@pool:3333"\nuser = "u"\n')
    assert "hunter2" not in str(caught.value)


async def test_non_utf8_authorization_header_is_a_401_not_a_500(tmp_path: Path) -> None:
    async with running_pool() as pool:
        token = tmp_path / "token"
        token.write_text("0123456789abcdef-token")
        path = tmp_path / "proxy.toml"
        path.write_text(
            _config_text([("main", pool.port)], initial=1e-7).replace(
                "[http]\n", f'[http]\nadmin_token_file = "{token}"\n'
            )
        )
        proxy = await _started(path)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.http.port)
            writer.write(
                b"POST /api/v1/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            status_line = await reader.readline()
            assert status_line.split()[1] == b"401", status_line
            writer.close()
        finally:
            await proxy.stop()
