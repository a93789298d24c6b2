"""Bad input costs the sender, never the others: nothing one miner sends affects another."""

from __future__ import annotations

import asyncio

from proxy.tools import wait_until
from tests.e2e.support import ScriptedMiner, proxy_config, running_pool, running_proxy

TLS_CLIENT_HELLO = bytes.fromhex("16030102000100010003") + b"\x03\x03" + b"\x00" * 40 + b"\n"


async def _healthy_neighbour(port: int) -> ScriptedMiner:
    miner = await ScriptedMiner.connect(port, worker="farm.good")
    await miner.handshake()
    return miner


async def _still_accepting(miner: ScriptedMiner) -> None:
    assert (await miner.submit(miner.find_share()))["result"] is True


async def test_tls_client_hello_is_closed_at_once_and_others_unaffected() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        good = await _healthy_neighbour(proxy.ports[0])
        bfg = await ScriptedMiner.connect(proxy.ports[0])
        await bfg.send_raw(TLS_CLIENT_HELLO)
        assert await bfg.closed()  # bfgminer falls back to plain Stratum on this close
        http = await ScriptedMiner.connect(proxy.ports[0])
        await http.send_raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await http.closed()
        await _still_accepting(good)
        assert proxy.stats.connections["closed_bad_input"] == 2


async def test_over_long_line_is_answered_and_the_session_kept() -> None:
    async with running_pool() as pool:
        config = proxy_config([pool.port], extra="max_line_bytes = 1024")
        async with running_proxy(config) as proxy:
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.handshake()
            await miner.send_raw(
                b'{"id": 9, "method": "mining.submit", "params": ["' + b"a" * 5000 + b'"]}\n'
            )
            reply = await miner.reply(None)
            assert reply["error"][0] == 20
            assert "longer than 1024" in reply["error"][1]
            await _still_accepting(miner)


async def test_unknown_method_and_bad_params_are_answered_not_fatal() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        await miner.handshake()
        reply = await miner.request("mining.foo", [], request_id="x1")
        assert reply == {"id": "x1", "result": None, "error": [20, "Unknown method", None]}
        reply = await miner.request("mining.submit", ["farm.w1", 5, "00", "00", "00"], request_id=7)
        assert reply["error"][0] == 20 and "job_id" in reply["error"][1]
        reply = await miner.request("mining.get_transactions", ["1"], request_id="txlist1")
        assert reply["result"] == []
        reply = await miner.request("mining.suggest_difficulty", [0.5], request_id=8)
        assert reply["result"] is True
        await miner.send_raw(b"[1,2,3]\n")
        assert (await miner.reply(None))["error"][0] == 20
        await _still_accepting(miner)


async def test_non_json_after_handshake_closes_only_that_miner() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        good = await _healthy_neighbour(proxy.ports[0])
        bad = await ScriptedMiner.connect(proxy.ports[0], worker="farm.bad")
        await bad.handshake()
        await bad.send_raw(b"this is not json\n")
        assert await bad.closed()
        await _still_accepting(good)


async def test_error_budget_closes_a_spammer() -> None:
    async with running_pool() as pool:
        config = proxy_config([pool.port], extra="error_budget = 5")
        async with running_proxy(config) as proxy:
            good = await _healthy_neighbour(proxy.ports[0])
            spammer = await ScriptedMiner.connect(proxy.ports[0], worker="farm.spam")
            await spammer.send_raw(b'{"id":1,"method":"mining.nope","params":[]}\n' * 50)
            assert await spammer.closed()
            assert len(spammer.replies[1]) == 6  # five within budget, the sixth closes it
            await _still_accepting(good)
            assert proxy.stats.connections["closed_error_budget"] == 1


async def test_handshake_timeout_closes_a_silent_connection() -> None:
    async with running_pool() as pool:
        config = proxy_config([pool.port], extra="handshake_timeout = 0.3")
        async with running_proxy(config) as proxy:
            silent = await ScriptedMiner.connect(proxy.ports[0])
            assert await silent.closed()
            assert proxy.stats.connections["closed_handshake_timeout"] == 1


async def test_idle_timeout_closes_a_miner_that_stops_talking() -> None:
    async with running_pool() as pool:
        config = proxy_config([pool.port], extra="idle_timeout = 0.3")
        async with running_proxy(config) as proxy:
            miner = await ScriptedMiner.connect(proxy.ports[0])
            await miner.handshake()
            assert await miner.closed()
            assert proxy.stats.connections["closed_idle"] == 1


async def test_submit_before_subscribe_is_not_subscribed() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        reply = await miner.request("mining.submit", ["w", "1", "00000000", "00000000", "00000000"])
        assert reply["error"][:2] == [25, "Not subscribed"]


async def test_max_miners_refuses_the_excess_connection() -> None:
    async with running_pool() as pool:
        config = proxy_config([pool.port], extra="max_miners = 2")
        async with running_proxy(config) as proxy:
            first = [await _healthy_neighbour(proxy.ports[0]) for _ in range(2)]
            extra = await ScriptedMiner.connect(proxy.ports[0])
            assert await extra.closed()
            await wait_until(lambda: proxy.stats.connections.get("rejected_limit") == 1)
            for miner in first:
                await _still_accepting(miner)


async def test_a_miner_that_disconnects_mid_share_does_not_disturb_the_pool_side() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        good = await _healthy_neighbour(proxy.ports[0])
        leaver = await ScriptedMiner.connect(proxy.ports[0], worker="farm.leaver")
        await leaver.handshake()
        share = leaver.find_share(above=1e-6)
        await leaver.send({"id": 1, "method": "mining.submit", "params": share.params(leaver.worker)})
        await leaver.close()
        await asyncio.sleep(0)
        await wait_until(lambda: len(proxy.server.sessions) == 1)
        await _still_accepting(good)


async def test_authorize_before_subscribe_is_refused_without_a_worker_series() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        reply = await miner.request("mining.authorize", ["farm.early", "x"])
        assert reply["result"] is None and reply["error"][0] == 25
        assert "farm.early" not in proxy.stats.workers
        # The usual order still works on the same connection.
        await miner.handshake()
        assert "farm.w1" in proxy.stats.workers
        await miner.close()


async def test_a_minimum_difficulty_beyond_any_float_is_refused_not_raised() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        miner = await ScriptedMiner.connect(proxy.ports[0])
        line = (
            b'{"id":7,"method":"mining.configure","params":[["minimum-difficulty"],{"minimum-difficulty.value":1'
            + b"0" * 400
            + b"}]}\n"
        )
        await miner.send_raw(line)
        reply = await miner.reply(7)
        assert reply["result"] == {"minimum-difficulty": "invalid minimum-difficulty.value"}
        await miner.handshake()  # the connection carries on
        await miner.close()
