"""Helpers of the tools tier: a raw Stratum client and an independent share hasher.

The hasher follows docs/protocol.md step by step with hashlib only, so a share the test pool
accepts or rejects is judged against code that shares nothing with :mod:`proxy.mining`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import struct
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import Any

from proxy.mining.target import DIFF1_TARGET
from proxy.tools.pool import TestPool
from proxy.tools.simulate import Fleet

LOOPBACK = "127.0.0.1"

PoolFactory = Callable[..., Awaitable[TestPool]]
"""The ``make_pool`` fixture: ``await make_pool(**PoolConfig overrides)``."""

FleetFactory = Callable[..., Awaitable[Fleet]]
"""The ``make_fleet`` fixture: ``await make_fleet(pool, miners, **SimConfig overrides)``."""


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def share_hash(notify: list[Any], extranonce1: str, extranonce2: str, nonce: int, version: int) -> int:
    """docs/protocol.md, "How a share is checked", steps 1 to 5, for a share at the job's ntime."""
    _, prevhash, coinb1, coinb2, branch, _, nbits, ntime, _ = notify
    root = sha256d(bytes.fromhex(coinb1 + extranonce1 + extranonce2 + coinb2))
    for sibling in branch:
        root = sha256d(root + bytes.fromhex(sibling))
    prev = bytes.fromhex(prevhash)
    prev = b"".join(prev[i : i + 4][::-1] for i in range(0, 32, 4))
    header = (
        struct.pack("<I", version) + prev + root + struct.pack("<III", int(ntime, 16), int(nbits, 16), nonce)
    )
    return int.from_bytes(sha256d(header), "little")


def target_of(difficulty: float) -> int:
    """floor(DIFF1 / difficulty), exactly."""
    exact = Fraction(difficulty)
    return DIFF1_TARGET * exact.denominator // exact.numerator


def find_nonce(
    notify: list[Any],
    extranonce1: str,
    extranonce2: str,
    *,
    difficulty: float,
    meets: bool = True,
    version: int | None = None,
    start: int = 0,
) -> int:
    """The first nonce from ``start`` whose hash meets (or, with ``meets=False``, misses)
    the difficulty; the target is computed in integers like the validator's."""
    target = target_of(difficulty)
    version = int(notify[5], 16) if version is None else version
    nonce = start
    while (share_hash(notify, extranonce1, extranonce2, nonce, version) <= target) != meets:
        nonce += 1
    return nonce


class RawClient:
    """A bare Stratum connection: send dicts or bytes, read decoded lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        return cls(reader, writer)

    def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode()
        self.writer.write(data if data.endswith(b"\n") else data + b"\n")

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        if not line:
            raise ConnectionError("closed by the pool")
        message: dict[str, Any] = json.loads(line)
        self.seen.append(message)
        return message

    async def recv_until(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """Read until a message matches; earlier ones stay in :attr:`seen`."""
        while True:
            message = await self.recv(timeout)
            if match(message):
                return message

    async def reply(self, request_id: object, timeout: float = 5.0) -> dict[str, Any]:
        return await self.recv_until(lambda m: m.get("id") == request_id and "method" not in m, timeout)

    async def call(self, request_id: object, method: str, params: list[Any]) -> dict[str, Any]:
        self.send({"id": request_id, "method": method, "params": params})
        return await self.reply(request_id)

    async def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True once the pool closed the connection (anything it still sends is skipped)."""
        while True:
            try:
                if not await asyncio.wait_for(self.reader.readline(), timeout):
                    return True
            except ConnectionError:
                return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def handshake(self, worker: str = "user.w1", *, mask: str | None = "ffffffff") -> HandshakeResult:
        """configure (unless ``mask`` is None), subscribe, authorize; then the first job."""
        granted = 0
        if mask is not None:
            reply = await self.call(
                1, "mining.configure", [["version-rolling"], {"version-rolling.mask": mask}]
            )
            result = reply["result"]
            granted = int(result["version-rolling.mask"], 16) if result["version-rolling"] is True else 0
        subscribe = await self.call(2, "mining.subscribe", ["raw-test/1.0"])
        _, extranonce1, extranonce2_size = subscribe["result"]
        assert (await self.call(3, "mining.authorize", [worker, "x"]))["result"] is True
        set_difficulty = await self.recv_until(lambda m: m.get("method") == "mining.set_difficulty")
        notify = await self.recv_until(lambda m: m.get("method") == "mining.notify")
        difficulty = set_difficulty["params"][0]
        return HandshakeResult(granted, extranonce1, extranonce2_size, difficulty, notify["params"])


class HandshakeResult:
    """What a raw handshake learned."""

    def __init__(
        self, mask: int, extranonce1: str, extranonce2_size: int, difficulty: float, notify: list[Any]
    ) -> None:
        self.mask = mask
        self.extranonce1 = extranonce1
        self.extranonce2_size = extranonce2_size
        self.difficulty = difficulty
        self.notify = notify
