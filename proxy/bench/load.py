"""The benchmark's load generator: many raw miner connections, as cheap as they can be.

Run as its own process (``python -m proxy.bench.load SCENARIO.json``) so the proxy under
test competes with it only for cores, never for the event loop. It speaks just enough
Stratum to subscribe, authorize and submit pre-formatted unique shares, and reports its
measurements as one JSON line on stdout. Shares are "no-hash": distinct extranonce2/nonce
pairs that are valid because the proxy runs its miners at a difficulty every hash meets.

Modes: ``closed`` (each miner keeps ``window`` submits outstanding: throughput), ``open``
(a fixed total submit rate: round-trip percentiles), ``fanout`` (miners only listen: the
arrival time of every job), ``idle`` (miners only hold their connection: memory).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import deque
from typing import Any, cast

from proxy.runner import run

READY = b'"id":3,'
"""The authorize reply: request ids 1-3 are the handshake, submits count from 10."""


class LoadMiner(asyncio.Protocol):
    """One connection; replies are matched to submits by order (ids are not needed)."""

    __slots__ = (
        "accepted",
        "authorized",
        "buffer",
        "en2_format",
        "job",
        "job_seen",
        "n",
        "notify_times",
        "ntime",
        "ready",
        "rtts",
        "sent_at",
        "seq",
        "transport",
        "window_done",
        "worker",
    )

    def __init__(self, n: int, ready: asyncio.Event, record_rtt: bool) -> None:
        self.n = n
        self.worker = f"bench.m{n:05d}".encode()
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.job = b""
        self.ntime = b""
        self.seq = 0
        self.authorized = False
        self.accepted = 0
        self.en2_format = b"%08x"
        self.job_seen = asyncio.Event()
        self.ready = ready
        self.sent_at: deque[float] | None = deque() if record_rtt else None
        self.rtts: list[float] = []
        self.notify_times: list[float] = []
        self.window_done = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Subscribe and authorize at once."""
        # uvloop's transports do not subclass asyncio.Transport, but implement it.
        self.transport = cast("asyncio.Transport", transport)
        self.transport.write(
            b'{"id":1,"method":"mining.subscribe","params":["bench/1"]}\n'
            b'{"id":3,"method":"mining.authorize","params":["' + self.worker + b'","x"]}\n'
        )

    def data_received(self, data: bytes) -> None:
        """Count replies (and time them); note jobs."""
        now = time.monotonic()
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        for line in lines:
            # The proxy puts "id" first in replies and "method" first in notifications.
            if line.startswith(b'{"id":'):
                self._on_reply(line, now)
            elif line.startswith(b'{"method":"mining.notify"'):
                self.notify_times.append(now)
                self._on_job(line)

    def _on_job(self, line: bytes) -> None:
        message = json.loads(line)
        self.job = message["params"][0].encode()
        self.ntime = message["params"][7].encode()
        self.job_seen.set()

    def _on_reply(self, line: bytes, now: float) -> None:
        if not self.authorized:
            if READY in line[:10]:
                self.authorized = True
            elif line.startswith(b'{"id":1,'):
                size = json.loads(line)["result"][2]  # extranonce2_size from subscribe
                self.en2_format = b"%%0%dx" % (2 * size)
            return
        if b'"result":true' in line:
            self.accepted += 1
        if self.sent_at is not None and self.sent_at:
            self.rtts.append(now - self.sent_at.popleft())
        self.window_done += 1
        if self.ready.is_set():
            self.submit()

    def submit(self) -> None:
        """Send one unique share."""
        self.seq += 1
        seq = self.seq
        line = b'{"id":%d,"method":"mining.submit","params":["%s","%s","%s","%s","%08x"]}\n' % (
            10 + seq,
            self.worker,
            self.job,
            self.en2_format % (seq >> 32),
            self.ntime,
            seq & 0xFFFFFFFF,
        )
        if self.sent_at is not None:
            self.sent_at.append(time.monotonic())
        assert self.transport is not None
        self.transport.write(line)


async def _connect(loop: asyncio.AbstractEventLoop, miner: LoadMiner, port: int) -> None:
    await loop.create_connection(lambda: miner, "127.0.0.1", port)


async def _connect_all(port: int, count: int, ready: asyncio.Event, record_rtt: bool) -> list[LoadMiner]:
    loop = asyncio.get_running_loop()
    miners = [LoadMiner(i, ready, record_rtt) for i in range(count)]
    batch = 500  # keep well under the listen backlog
    for start in range(0, count, batch):
        await asyncio.gather(*(_connect(loop, miner, port) for miner in miners[start : start + batch]))
    await asyncio.gather(*(m.job_seen.wait() for m in miners))
    while not all(m.authorized for m in miners):
        await asyncio.sleep(0.01)
    return miners


async def _closed(
    miners: list[LoadMiner], ready: asyncio.Event, window: int, seconds: float
) -> dict[str, Any]:
    ready.set()
    for miner in miners:
        for _ in range(window):
            miner.submit()
    await asyncio.sleep(1.0)  # warm-up
    start_done = sum(m.window_done for m in miners)
    start_accepted = sum(m.accepted for m in miners)
    start = time.monotonic()
    print(json.dumps({"event": "measure_start"}), flush=True)
    await asyncio.sleep(seconds)
    done = sum(m.window_done for m in miners) - start_done
    accepted = sum(m.accepted for m in miners) - start_accepted
    elapsed = time.monotonic() - start
    print(json.dumps({"event": "measure_end"}), flush=True)
    ready.clear()
    return {"answered": done, "accepted": accepted, "seconds": elapsed}


async def _open_phases(miners: list[LoadMiner], rate: float, seconds: float, phases: int) -> dict[str, Any]:
    """Open loop several times over the same connections; between phases, wait for a line on
    stdin (the orchestrator changes something, e.g. starts scraping the metrics)."""
    results: list[dict[str, Any]] = []
    for phase in range(phases):
        if phase:
            print(json.dumps({"event": "phase_done", "phase": phase - 1, **results[-1]}), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for miner in miners:
            miner.rtts.clear()
            miner.accepted = 0
        results.append(await _open(miners, rate, seconds))
    return {"phases": results}


async def _open(miners: list[LoadMiner], rate: float, seconds: float) -> dict[str, Any]:
    tick = 0.005
    per_tick = rate * tick
    credit = 0.0
    index = 0
    end = time.monotonic() + seconds
    next_tick = time.monotonic()
    while time.monotonic() < end:
        credit += per_tick
        while credit >= 1.0:
            miners[index % len(miners)].submit()
            index += 1
            credit -= 1.0
        next_tick += tick
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
    await asyncio.sleep(0.5)  # let the last replies arrive
    rtts = sorted(r for m in miners for r in m.rtts)
    accepted = sum(m.accepted for m in miners)
    return {"sent": index, "answered": len(rtts), "accepted": accepted, "rtts_ms": _percentiles(rtts)}


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}

    def pick(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": values[-1] * 1000}


async def _fanout(miners: list[LoadMiner], jobs: int) -> dict[str, Any]:
    base = [len(m.notify_times) for m in miners]
    print(json.dumps({"event": "ready"}), flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(len(m.notify_times) >= b + jobs for m, b in zip(miners, base, strict=True)):
            break
        await asyncio.sleep(0.05)
    # The k-th new job's arrival at each miner; the last arrival per job is what counts.
    last = [max(m.notify_times[b + k] for m, b in zip(miners, base, strict=True)) for k in range(jobs)]
    first = [min(m.notify_times[b + k] for m, b in zip(miners, base, strict=True)) for k in range(jobs)]
    return {"last_arrival": last, "first_arrival": first}


async def _idle(miners: list[LoadMiner]) -> dict[str, Any]:
    print(json.dumps({"event": "ready", "miners": len(miners)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return {"miners": len(miners)}


async def main(scenario: dict[str, Any]) -> None:
    """Run one scenario and print its result as JSON."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ready = asyncio.Event()
    mode = scenario["mode"]
    miners = await _connect_all(scenario["port"], scenario["miners"], ready, mode == "open")
    print(json.dumps({"event": "connected", "miners": len(miners)}), flush=True)
    if mode == "closed":
        result = await _closed(miners, ready, scenario["window"], scenario["seconds"])
    elif mode == "open":
        phases = scenario.get("phases", 1)
        result = await _open_phases(miners, scenario["rate"], scenario["seconds"], phases)
    elif mode == "fanout":
        result = await _fanout(miners, scenario["jobs"])
    else:
        result = await _idle(miners)
    print(json.dumps({"event": "result", **result}), flush=True)
    for miner in miners:
        if miner.transport is not None:
            miner.transport.close()


if __name__ == "__main__":
    run(main(json.loads(sys.argv[1])))
