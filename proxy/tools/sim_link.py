"""A simulated miner's connection: writing lines, request ids and matching replies to them.

:class:`MinerLink` is the plumbing part of :class:`proxy.tools.simulate.SimMiner`: it holds
the open stream, numbers requests (ids unique per connection), keeps what is waiting for a
reply, counts replies and share verdicts, and fails the waiting futures when the
connection ends. What the lines mean is the business of the rest of the miner.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from proxy.stratum.codec import parse_share_reply
from proxy.stratum.errors import LineTooLong
from proxy.stratum.framing import LineFramer
from proxy.stratum.messages import Response
from proxy.tools import wait_until
from proxy.tools.sim_stats import NO_CODE, MinerStats


class Pending:
    """A request waiting for its reply."""

    __slots__ = ("difficulty", "future", "params", "sent", "submit")

    def __init__(
        self, submit: bool, params: list[Any], difficulty: float, future: asyncio.Future[Response] | None
    ) -> None:
        self.submit = submit
        self.params = params
        self.difficulty = difficulty
        self.future = future
        self.sent = time.perf_counter()


class MinerLink:
    """One miner's connection to its pool, and the requests in flight on it."""

    def __init__(self, stats: MinerStats, accepted_shares: deque[list[Any]], *, max_line: int) -> None:
        self.stats = stats
        self.accepted_shares = accepted_shares  # submit params of accepted shares, newest last
        self.max_line = max_line
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, Pending] = {}

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._writer is not None

    @property
    def local_address(self) -> str | None:
        """``HOST:PORT`` of this end of the connection (what a proxy sees as the miner)."""
        if self._writer is None:
            return None
        host, port = self._writer.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    @property
    def in_flight(self) -> int:
        """Requests sent on the current connection and not answered yet."""
        return len(self._pending)

    async def wait_answered(self, timeout: float) -> None:
        """Wait up to ``timeout`` until nothing is in flight or the connection is gone."""
        with contextlib.suppress(TimeoutError):
            await wait_until(lambda: not self._pending or not self.connected, timeout)

    # ------------------------------------------------------------------ connection

    def attach(self, writer: asyncio.StreamWriter) -> None:
        """Use a new connection; request ids start again at 1."""
        self._writer = writer
        self._ids = itertools.count(1)

    def detach(self) -> None:
        """Forget the connection, counting what was left unanswered."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        self.stats.unanswered += len(self._pending)
        self.fail_futures()
        self._pending.clear()

    def close(self) -> None:
        """Close the connection now (the reader then sees its end)."""
        if self._writer is not None:
            self._writer.close()

    async def read(self, reader: asyncio.StreamReader, on_line: Callable[[bytes], None]) -> None:
        """Feed every line read to ``on_line`` until the connection ends."""
        framer = LineFramer(self.max_line)
        try:
            while data := await reader.read(65536):
                for item in framer.feed(data):
                    if isinstance(item, LineTooLong):
                        self.stats.bad_lines += 1
                    else:
                        on_line(item)
        except OSError:
            pass
        finally:
            # Fail the handshake's futures at once rather than after its timeout.
            self.fail_futures()

    def fail_futures(self) -> None:
        """Fail every request that waits for its reply (the connection ended first)."""
        for pending in self._pending.values():
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(ConnectionError("connection closed before the reply"))

    async def drain(self) -> None:
        """Wait for the output buffer to drain: a slow server slows the miner."""
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(ConnectionError):  # the reader sees the end too
                await writer.drain()

    # ------------------------------------------------------------------ output

    def write(self, data: bytes) -> bool:
        """Write ``data`` as is; False when not connected."""
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        writer.write(data)
        return True

    def send(self, method: str, params: list[Any], pending: Pending) -> bool:
        """Send a request with the next id and remember it; False when not connected."""
        request_id = next(self._ids)
        line = msgspec.json.encode({"id": request_id, "method": method, "params": params}) + b"\n"
        if not self.write(line):
            return False
        self._pending[request_id] = pending
        self.stats.requests_sent += 1
        return True

    def submit(self, params: list[Any], difficulty: float) -> bool:
        """Send a share whose reply is only counted; False when not connected."""
        return self.send("mining.submit", params, Pending(True, params, difficulty, None))

    async def call(self, method: str, params: list[Any], timeout: float) -> Response:
        """Send a request and return its reply.

        Raises :class:`ConnectionError` when not connected or when the connection ends
        first, :class:`TimeoutError` after ``timeout``.
        """
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        if not self.send(method, params, Pending(False, params, 0.0, future)):
            raise ConnectionError("not connected")
        return await asyncio.wait_for(future, timeout)

    # ------------------------------------------------------------------ input

    def on_response(self, response: Response) -> None:
        """Match a reply to its request: count it, judge a share, wake a caller."""
        request_id = response.id
        pending = self._pending.pop(request_id, None) if type(request_id) is int else None
        if pending is None:
            self.stats.unexpected_replies += 1  # a raw line's reply, or a pool bug
            return
        stats = self.stats
        stats.replies_received += 1
        if pending.submit:
            stats.rtt.add(time.perf_counter() - pending.sent)
            verdict = parse_share_reply(response)
            if verdict.accepted:
                stats.accepted += 1
                stats.accepted_work += pending.difficulty
                self.accepted_shares.append(pending.params)
            else:
                stats.rejected[NO_CODE if verdict.code is None else verdict.code] += 1
        if pending.future is not None and not pending.future.done():
            pending.future.set_result(response)
