"""Test support for the loopback tiers: a scripted miner, share search, a proxy fixture.

:class:`ScriptedMiner` is a deliberately plain Stratum client: tests drive it line by line
and read exactly what the proxy answered, which the fleet simulator hides behind counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from proxy.app import Proxy
from proxy.config import Config, parse_config
from proxy.mining.hashing import HEADER, merkle_root, prevhash_from_stratum, sha256d
from proxy.mining.target import target_from_difficulty
from proxy.tools import wait_until
from proxy.tools.pool import PoolConfig, TestPool

HTTP_TOML = '[http]\nlisten = "127.0.0.1:0"\n'
"""Every test proxy serves HTTP on a free port (see ``proxy.http.port``)."""

READ_TIMEOUT = 10.0
"""Generous: a test waits for an answer that must come; this only stops a hung test."""


@dataclass
class MinerJob:
    """A mining.notify as the miner sees it."""

    job_id: str
    prevhash: str
    coinb1: str
    coinb2: str
    branch: list[str]
    version: str
    nbits: str
    ntime: str
    clean: bool


@dataclass
class FoundShare:
    """A share ready to submit, with the hash the miner computed for it."""

    job_id: str
    extranonce2: str
    ntime: str
    nonce: str
    version_bits: str | None
    hash_int: int

    def params(self, worker: str) -> list[str]:
        """Submit params for ``worker``."""
        base = [worker, self.job_id, self.extranonce2, self.ntime, self.nonce]
        return [*base, self.version_bits] if self.version_bits is not None else base


@dataclass
class ScriptedMiner:
    """One miner connection driven by a test."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    worker: str = "farm.w1"
    extranonce1: bytes = b""
    extranonce2_size: int = 0
    difficulty: float = 1.0
    version_mask: int = 0
    jobs: list[MinerJob] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[Any, list[dict[str, Any]]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))
    _en2: itertools.count[int] = field(default_factory=itertools.count)

    @classmethod
    async def connect(cls, port: int, worker: str = "farm.w1") -> ScriptedMiner:
        """Open a connection to the proxy on loopback."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        return cls(reader, writer, worker=worker)

    async def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message."""
        await self.send_raw(json.dumps(message).encode() + b"\n")

    async def send_raw(self, data: bytes) -> None:
        """Send bytes as they are."""
        self.writer.write(data)
        await self.writer.drain()

    async def request(self, method: str, params: list[Any], request_id: Any = None) -> dict[str, Any]:
        """Send a request and wait for the reply with its id."""
        rid = next(self._ids) if request_id is None else request_id
        await self.send({"id": rid, "method": method, "params": params})
        return await self.reply(rid)

    async def reply(self, request_id: Any) -> dict[str, Any]:
        """Wait for the next reply with ``request_id`` (ids need not be unique)."""
        while not self.replies.get(request_id):
            await self.read_one()
        return self.replies[request_id].pop(0)

    async def read_one(self, timeout: float = READ_TIMEOUT) -> dict[str, Any]:
        """Read and file one line from the proxy."""
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        if not line:
            raise ConnectionError("proxy closed the connection")
        message: dict[str, Any] = json.loads(line)
        method = message.get("method")
        if method is None:
            self.replies.setdefault(message.get("id"), []).append(message)
        else:
            self._on_notification(method, message["params"])
            self.notifications.append(message)
        return message

    def _on_notification(self, method: str, params: list[Any]) -> None:
        if method == "mining.set_difficulty":
            self.difficulty = float(params[0])
        elif method == "mining.notify":
            job = MinerJob(*params)
            if job.clean:
                self.jobs.clear()
            self.jobs.append(job)
        elif method == "mining.set_extranonce":
            self.extranonce1 = bytes.fromhex(params[0])
            self.extranonce2_size = int(params[1])
        elif method == "mining.set_version_mask":
            self.version_mask = int(params[0], 16)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Read until ``predicate()`` holds."""
        while not predicate():
            await self.read_one()

    async def handshake(self, *, configure: bool = True, extranonce_subscribe: bool = True) -> None:
        """configure, subscribe, authorize (and extranonce.subscribe); wait for the first job."""
        if configure:
            result = (
                await self.request(
                    "mining.configure", [["version-rolling"], {"version-rolling.mask": "ffffffff"}]
                )
            )["result"]
            if result.get("version-rolling") is True:
                self.version_mask = int(result["version-rolling.mask"], 16)
        sub = (await self.request("mining.subscribe", ["scripted/1.0"]))["result"]
        self.extranonce1 = bytes.fromhex(sub[1])
        self.extranonce2_size = int(sub[2])
        if extranonce_subscribe:
            assert (await self.request("mining.extranonce.subscribe", []))["result"] is True
        assert (await self.request("mining.authorize", [self.worker, "x"]))["result"] is True
        await self.wait_for(lambda: bool(self.jobs))

    def header_hash(self, job: MinerJob, extranonce2: bytes, ntime: int, nonce: int, version: int) -> int:
        """The share hash the proxy will compute (docs/protocol.md)."""
        coinbase = bytes.fromhex(job.coinb1) + self.extranonce1 + extranonce2 + bytes.fromhex(job.coinb2)
        root = merkle_root(sha256d(coinbase), [bytes.fromhex(b) for b in job.branch])
        header = HEADER.pack(
            version, prevhash_from_stratum(job.prevhash), root, ntime, int(job.nbits, 16), nonce
        )
        return int.from_bytes(sha256d(header), "little")

    def find_share(
        self,
        *,
        difficulty: float | None = None,
        above: float | None = None,
        job: MinerJob | None = None,
        meets: bool = True,
        roll: int = 0,
    ) -> FoundShare:
        """Search nonces for a share meeting ``difficulty`` (not meeting it with ``meets=False``).

        ``above``: also require the share to meet that difficulty (e.g. the pool's). ``roll``:
        version bits to set (must be inside the granted mask).
        """
        job = job or self.jobs[-1]
        target = target_from_difficulty(difficulty or self.difficulty)
        upper = target_from_difficulty(above) if above else None
        ntime = int(job.ntime, 16)
        version = (int(job.version, 16) & ~self.version_mask & 0xFFFFFFFF) | roll
        for _ in range(10_000):
            en2 = next(self._en2).to_bytes(self.extranonce2_size, "big")
            for nonce in range(5_000):
                h = self.header_hash(job, en2, ntime, nonce, version)
                ok = h <= target and (upper is None or h <= upper)
                if ok == meets:
                    return FoundShare(
                        job.job_id, en2.hex(), job.ntime, f"{nonce:08x}", f"{roll:08x}" if roll else None, h
                    )
        raise AssertionError("no share found; difficulty too high for a Python search")

    async def submit(
        self, share: FoundShare, *, worker: str | None = None, request_id: Any = None
    ) -> dict[str, Any]:
        """Submit a share and return the proxy's reply."""
        return await self.request("mining.submit", share.params(worker or self.worker), request_id)

    async def closed(self) -> bool:
        """True once the proxy has closed the connection (reads until EOF)."""
        with contextlib.suppress(ConnectionError):
            while True:
                await self.read_one()
        return True

    async def close(self) -> None:
        """Close our side."""
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def proxy_config(
    pool_ports: list[int],
    extra: str = "",
    upstream: str = "",
    *,
    listen: str = "127.0.0.1:0",
    **difficulty: float | bool,
) -> Config:
    """A proxy config on a free loopback port with the given pools in priority order.

    ``extra`` goes into ``[server]``, ``upstream`` into ``[upstream]``.
    """
    pools = "\n".join(
        f'[[pools]]\nname = "pool{i}"\nurl = "stratum+tcp://127.0.0.1:{port}"\nuser = "acct.proxy{i}"\n'
        for i, port in enumerate(pool_ports)
    )
    diff = {"initial": 1e-7, "minimum": 1e-9, "maximum": 1e6, "vardiff": False} | difficulty
    diff_toml = "\n".join(
        f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}" for k, v in diff.items()
    )
    text = (
        f'[server]\nlisten = ["{listen}"]\n{extra}\n{pools}\n'
        f"[upstream]\n{upstream}\n[difficulty]\n{diff_toml}\n{HTTP_TOML}"
    )
    return parse_config(text)


@contextlib.asynccontextmanager
async def running_pool(**options: Any) -> AsyncIterator[TestPool]:
    """A bundled test pool on a free loopback port."""
    defaults: dict[str, Any] = {
        "difficulty": 1e-6,
        "job_interval": 3600.0,
        "block_interval": 3600.0,
        "seed": 7,
    }
    pool = TestPool(PoolConfig(**(defaults | options)))
    await pool.start()
    try:
        yield pool
    finally:
        await pool.stop()


@contextlib.asynccontextmanager
async def running_proxy(config: Config, *, sweep_interval: float = 0.1) -> AsyncIterator[Proxy]:
    """A proxy started in this event loop; waits until a pool is ready."""
    proxy = Proxy(config, sweep_interval=sweep_interval)
    await proxy.start()
    try:
        await wait_until(lambda: proxy.pools.active is not None and proxy.pools.active.is_ready)
        yield proxy
    finally:
        await proxy.stop()
