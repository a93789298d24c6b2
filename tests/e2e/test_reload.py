"""Config reload (in-process and by SIGHUP), the admin API, and graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.app import Proxy
from proxy.config import load_config
from proxy.tools import free_port, wait_until
from proxy.tools.simulate import Fleet, SimConfig
from tests.e2e.support import ScriptedMiner, running_pool

TINY = 1e-10  # every hash meets it: the simulator's no-hash shares are valid


def _config_text(
    pools: list[tuple[str, int]], *, initial: float, listen: str = "127.0.0.1:0", extra: str = ""
) -> str:
    blocks = "".join(
        f'[[pools]]\nname = "{name}"\nurl = "stratum+tcp://127.0.0.1:{port}"\nuser = "acct.{name}"\n'
        for name, port in pools
    )
    return (
        f'[server]\nlisten = ["{listen}"]\nsubmit_timeout = 2.0\n{extra}\n{blocks}'
        "[upstream]\nbackoff_initial = 0.05\nbackoff_max = 0.2\nprimary_hold = 0.2\n"
        f"[difficulty]\ninitial = {initial!r}\nminimum = 1e-12\nvardiff = false\n"
        '[http]\nlisten = "127.0.0.1:0"\n'
    )


async def _http(proxy: Proxy, method: str, path: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"http://127.0.0.1:{proxy.http.port}{path}", headers=headers) as response,
    ):
        body: dict[str, Any] = json.loads(await response.text())
        return response.status, body


async def test_reload_moves_200_submitting_miners_to_new_pools_and_difficulty(tmp_path: Path) -> None:
    async with (
        running_pool(difficulty=TINY, seed=41) as old_pool,
        running_pool(difficulty=TINY, seed=42) as new_pool,
    ):
        path = tmp_path / "proxy.toml"
        path.write_text(_config_text([("old", old_pool.port)], initial=TINY))
        proxy = Proxy(load_config(path), config_path=str(path), sweep_interval=0.1)
        await proxy.start()
        await wait_until(lambda: proxy.pools.active is not None and proxy.pools.active.is_ready)
        fleet = Fleet(SimConfig(port=proxy.ports[0], no_hash=True, share_rate=2.0, request_timeout=10.0), 200)
        try:
            await fleet.start()
            await fleet.wait_ready(timeout=30)
            await wait_until(lambda: old_pool.stats.accepted >= 200, timeout=30)

            path.write_text(_config_text([("new", new_pool.port)], initial=TINY / 2))
            result = await proxy.reload()
            assert result["result"] == "success", result
            changes: Any = result["changes"]
            assert changes["pools_added"] == ["new"] and changes["pools_removed"] == ["old"]
            assert changes["difficulty_changed"] is True

            # On the wire: every miner gets the new difficulty and mines for the new pool.
            await wait_until(lambda: all(m.job_difficulty == TINY / 2 for m in fleet.miners), timeout=30)
            before = new_pool.stats.accepted
            await wait_until(lambda: new_pool.stats.accepted >= before + 200, timeout=30)
            _, status = await _http(proxy, "GET", "/api/v1/status")
            assert status["last_reload"]["result"] == "success"
            _, pools = await _http(proxy, "GET", "/api/v1/pools")
            assert [p["name"] for p in pools["pools"]] == ["new"] and pools["pools"][0]["active"] is True
        finally:
            totals = await fleet.stop()
            await proxy.stop()
        assert totals.unanswered == 0 and totals.replies_received == totals.requests_sent
        assert totals.reconnects == 0  # nobody was disconnected
        assert totals.rejected_total == 0
        assert proxy.stats.connections.get("accepted") == 200


async def test_invalid_file_changes_nothing_and_says_which_key(tmp_path: Path) -> None:
    async with running_pool() as pool:
        path = tmp_path / "proxy.toml"
        good = _config_text([("main", pool.port)], initial=1e-7)
        path.write_text(good)
        proxy = Proxy(load_config(path), config_path=str(path), sweep_interval=0.1)
        await proxy.start()
        try:
            await wait_until(lambda: proxy.pools.active is not None and proxy.pools.active.is_ready)
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.handshake()
            before = proxy.config
            path.write_text(good.replace("vardiff = false", "vardiff = false\nwarp_speed = 9"))
            result = await proxy.reload()
            assert result["result"] == "failure"
            assert "difficulty.warp_speed" in str(result["error"]) and ":" in str(result["error"])
            assert proxy.config is before
            assert proxy.metrics.reloads.labels("failure")._value.get() == 1
            assert (await miner.submit(miner.find_share()))["result"] is True  # still serving
            await miner.close()
        finally:
            await proxy.stop()


async def test_admin_reload_needs_the_token(tmp_path: Path) -> None:
    async with running_pool() as pool:
        token_file = tmp_path / "token"
        token_file.write_text("s3cret-admin-token-0123456789\n")
        path = tmp_path / "proxy.toml"
        text = _config_text([("main", pool.port)], initial=1e-7).replace(
            "[http]\n", f'[http]\nadmin_token_file = "{token_file}"\n'
        )
        path.write_text(text)
        proxy = Proxy(load_config(path), config_path=str(path), sweep_interval=0.1)
        await proxy.start()
        try:
            assert (await _http(proxy, "POST", "/api/v1/reload"))[0] == 401
            assert (await _http(proxy, "POST", "/api/v1/reload", token="wrong-token-000000000000"))[0] == 401
            status, body = await _http(proxy, "POST", "/api/v1/reload", token="s3cret-admin-token-0123456789")
            assert status == 200 and body["result"] == "success"
            for path_ in ("/api/v1/status", "/api/v1/pools", "/metrics"):
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{proxy.http.port}{path_}") as response,
                ):
                    assert "s3cret-admin-token" not in await response.text()
        finally:
            await proxy.stop()


async def test_admin_api_is_disabled_without_a_token_file(tmp_path: Path) -> None:
    async with running_pool() as pool:
        path = tmp_path / "proxy.toml"
        path.write_text(_config_text([("main", pool.port)], initial=1e-7))
        proxy = Proxy(load_config(path), config_path=str(path))
        await proxy.start()
        try:
            status, body = await _http(proxy, "POST", "/api/v1/reload", token="anything-at-all-000000")
            assert status == 403 and "admin_token_file" in body["error"]
        finally:
            await proxy.stop()


async def test_listeners_added_and_removed_keep_existing_miners(tmp_path: Path) -> None:
    async with running_pool() as pool:
        first, second = free_port(), free_port()
        path = tmp_path / "proxy.toml"
        path.write_text(_config_text([("main", pool.port)], initial=1e-7, listen=f"127.0.0.1:{first}"))
        proxy = Proxy(load_config(path), config_path=str(path), sweep_interval=0.1)
        await proxy.start()
        try:
            await wait_until(lambda: proxy.pools.active is not None and proxy.pools.active.is_ready)
            miner = await ScriptedMiner.connect(first)
            await miner.handshake()
            path.write_text(_config_text([("main", pool.port)], initial=1e-7, listen=f"127.0.0.1:{second}"))
            result = await proxy.reload()
            changes: Any = result["changes"]
            assert changes["listeners_added"] == [f"127.0.0.1:{second}"]
            assert changes["listeners_removed"] == [f"127.0.0.1:{first}"]
            assert (await miner.submit(miner.find_share()))["result"] is True  # still connected
            newcomer = await ScriptedMiner.connect(second)
            await newcomer.handshake()
            refused = False
            try:
                await ScriptedMiner.connect(first)
            except OSError:
                refused = True
            assert refused
        finally:
            await proxy.stop()


async def _start_process(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "run", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _connect_when_up(port: int) -> ScriptedMiner:
    for _ in range(200):
        try:
            return await ScriptedMiner.connect(port)
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError("the proxy process never listened")


@pytest.mark.slow
async def test_sighup_reloads_and_sigterm_drains_a_real_process(tmp_path: Path) -> None:
    async with running_pool(difficulty=1e-6) as pool:
        port = free_port()
        path = tmp_path / "proxy.toml"
        path.write_text(_config_text([("main", pool.port)], initial=1e-7, listen=f"127.0.0.1:{port}"))
        proc = await _start_process(path)
        try:
            miner = await _connect_when_up(port)
            await miner.handshake()
            assert miner.difficulty == 1e-7
            path.write_text(_config_text([("main", pool.port)], initial=2e-7, listen=f"127.0.0.1:{port}"))
            proc.send_signal(signal.SIGHUP)
            await miner.wait_for(lambda: miner.difficulty == 2e-7)  # re-targeted on the wire

            pool.silence(jobs=False, replies=True)  # a forwarded share stays in flight...
            share = miner.find_share(above=1e-6, difficulty=2e-7)
            await miner.send(
                {"id": "inflight", "method": "mining.submit", "params": share.params(miner.worker)}
            )
            await asyncio.sleep(0.2)
            proc.send_signal(signal.SIGTERM)  # ...when the proxy is told to stop
            assert (await miner.reply("inflight"))["result"] is True  # answered, never dropped
            assert any(n["method"] == "client.reconnect" for n in miner.notifications) or await miner.closed()
            assert await miner.closed()
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_second_stop_signal_exits_at_once(tmp_path: Path) -> None:
    async with running_pool() as pool:
        port = free_port()
        path = tmp_path / "proxy.toml"
        text = _config_text(
            [("main", pool.port)], initial=1e-7, listen=f"127.0.0.1:{port}", extra="drain_grace = 60"
        )
        path.write_text(text)
        proc = await _start_process(path)
        try:
            miner = await _connect_when_up(port)
            await miner.handshake()
            pool.silence(jobs=False, replies=True)
            share = miner.find_share(above=1e-6)
            await miner.send({"id": 1, "method": "mining.submit", "params": share.params(miner.worker)})
            await asyncio.sleep(0.2)
            proc.send_signal(signal.SIGTERM)  # drains: the share waits for a silent pool...
            await asyncio.sleep(0.3)
            assert proc.returncode is None
            proc.send_signal(signal.SIGTERM)  # ...so the operator insists
            assert await asyncio.wait_for(proc.wait(), 10) != 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_reload_onto_a_busy_port_changes_nothing(tmp_path: Path) -> None:
    async with running_pool() as pool:
        path = tmp_path / "proxy.toml"
        first = free_port()
        path.write_text(_config_text([("main", pool.port)], initial=1e-7, listen=f"127.0.0.1:{first}"))
        proxy = Proxy(load_config(path), config_path=str(path), sweep_interval=0.1)
        await proxy.start()
        busy = socket.socket()
        try:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            taken = busy.getsockname()[1]
            before = proxy.config
            path.write_text(_config_text([("main", pool.port)], initial=5e-7, listen=f"127.0.0.1:{taken}"))
            result = await proxy.reload()
            assert result["result"] == "failure" and "server.listen" in str(result["error"])
            assert proxy.config is before  # difficulty untouched too
            assert proxy.ports == [first]
        finally:
            busy.close()
            await proxy.stop()
