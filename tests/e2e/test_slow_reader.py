"""A miner that stops reading is dropped once its unsent lines pile up; others carry on."""

from __future__ import annotations

import asyncio
import socket

import pytest

from proxy.tools import wait_until
from tests.e2e.support import ScriptedMiner, proxy_config, running_pool, running_proxy


@pytest.mark.slow
async def test_a_miner_that_never_reads_is_dropped_and_others_keep_mining() -> None:
    async with running_pool() as pool, running_proxy(proxy_config([pool.port])) as proxy:
        good = await ScriptedMiner.connect(proxy.ports[0], worker="farm.good")
        await good.handshake()
        # A client with a tiny receive buffer that subscribes, authorizes and then never
        # reads again: every job sent to it piles up in the proxy.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", proxy.ports[0]))
        await asyncio.get_running_loop().sock_sendall(
            sock,
            b'{"id":1,"method":"mining.subscribe","params":[]}\n'
            b'{"id":2,"method":"mining.authorize","params":["farm.stuck","x"]}\n',
        )
        await wait_until(lambda: "farm.stuck" in proxy.stats.workers)
        try:
            for _ in range(20_000):  # far more than the kernel buffers and the high-water mark
                pool.new_job(clean=False)
                if proxy.stats.connections.get("closed_not_reading"):
                    break
                await asyncio.sleep(0)
            assert proxy.stats.connections.get("closed_not_reading") == 1
            await wait_until(lambda: len(proxy.server.sessions) == 1)
            book = proxy.pools.pools[0].connections[0].book
            assert book.current is not None
            newest = book.current.job_id
            await good.wait_for(lambda: good.jobs[-1].job_id == newest)  # it read every job
            assert (await good.submit(good.find_share()))["result"] is True
        finally:
            sock.close()
