"""``stratum-proxy bench daemon``: the proxy as a process, under load from another process.

This process hosts the bundled test pool; the proxy runs as ``stratum-proxy run`` in a
subprocess, and the miners are :mod:`proxy.bench.load` in a third. Scenarios:

a. closed loop, 100 miners with 16 submits in flight each: shares/s answered and the
   proxy's CPU time per share (from /proc), next to bare validation measured in this run;
b. open loop, 1,000 miners offered 2,000 shares/s in total: submit round-trip p50/p99;
c. job fan-out to 1,000 and 10,000 miners: pool notify to the last miner receiving it;
d. as many idle subscribed miners as the open-file limit allows: proxy RSS per miner;
e. 10,000 workers at 2,000 shares/s: p99 submit round-trip without and with /metrics
   scraped every second, and the time of each scrape.

Linux only (it reads /proc). Figures go in README; nothing here is asserted in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from proxy.bench import validate
from proxy.bench.process import proxy_process
from proxy.tools import free_port
from proxy.tools.pool import PoolConfig, TestPool

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

TARGETS = {
    "e_p99_rise_ms": 5.0,
    "e_scrape_ms": 500.0,
    "a_cpu_ratio": 2.5,
    "a_shares_per_s": 25_000,
    "b_p99_ms": 2.0,
    "c_1000_ms": 20.0,
    "c_10000_ms": 150.0,
    "d_kib_per_miner": 6.0,
}


@dataclass
class Row:
    """One line of the results table."""

    name: str
    value: str
    target: str
    ok: bool


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def _proxy_config(pool_port: int, listen_port: int, http_port: int) -> str:
    # Difficulty 1e-10 is met by every hash, so the load generator's shares need no search;
    # the pool's difficulty 1 means none of them is forwarded (one in 4 billion would be).
    return f"""
[server]
listen = ["127.0.0.1:{listen_port}"]
max_miners = 19800
handshake_timeout = 120.0
[[pools]]
name = "bench"
url = "stratum+tcp://127.0.0.1:{pool_port}"
user = "bench.proxy"
[difficulty]
initial = 1e-10
minimum = 1e-12
maximum = 1e6
vardiff = false
[log]
level = "warning"
[http]
listen = "127.0.0.1:{http_port}"
"""


@contextlib.asynccontextmanager
async def _stack() -> AsyncIterator[tuple[TestPool, subprocess.Popen[bytes], int, int]]:
    pool = TestPool(PoolConfig(difficulty=1.0, job_interval=3600.0, block_interval=3600.0, seed=2026))
    branch = [bytes([i]) * 32 for i in range(12)]
    pool.factory.branch = lambda: list(branch)  # type: ignore[method-assign]  # the 12-deep branch of the validation bench
    await pool.start()
    listen, http_port = free_port(), free_port()
    try:
        with proxy_process(_proxy_config(pool.port, listen, http_port)) as proc:
            await _wait_listening(listen)
            while not pool.started_sessions:
                await asyncio.sleep(0.05)
            yield pool, proc, listen, http_port
    finally:
        await pool.stop()


async def _wait_listening(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError("proxy did not start listening")


class _Load:
    """The load generator subprocess and its JSON event lines."""

    def __init__(self, scenario: dict[str, Any]) -> None:
        self.scenario = scenario
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> _Load:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "proxy.bench.load",
            json.dumps(self.scenario),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return self

    async def event(self, name: str) -> dict[str, Any]:
        """Wait for the next event line called ``name``."""
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 300)
            if not line:
                raise RuntimeError(f"load generator exited before {name!r}")
            message: dict[str, Any] = json.loads(line)
            if message.get("event") == name:
                return message

    def release(self) -> None:
        """Let an idle scenario finish."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"\n")

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def closed_loop(bare_ns: float, miners: int = 100, seconds: float = 5.0) -> list[Row]:
    """Scenario (a)."""
    async with (
        _stack() as (_, proc, port, _http),
        _Load({"mode": "closed", "port": port, "miners": miners, "window": 16, "seconds": seconds}) as load,
    ):
        await load.event("measure_start")
        cpu0 = _cpu_seconds(proc.pid)
        await load.event("measure_end")
        cpu = _cpu_seconds(proc.pid) - cpu0
        result = await load.event("result")
    _check_all_accepted(result)
    rate = result["answered"] / result["seconds"]
    us_per_share = cpu / max(result["answered"], 1) * 1e6
    ratio = us_per_share * 1000 / bare_ns
    return [
        Row(
            f"(a) closed loop, {miners} miners: answered",
            f"{rate:,.0f} shares/s",
            ">= 25,000",
            rate >= 25_000,
        ),
        Row(
            "(a) proxy CPU per share",
            f"{us_per_share:.1f} us = {ratio:.2f}x bare validation ({bare_ns / 1000:.1f} us)",
            "<= 2.5x",
            ratio <= TARGETS["a_cpu_ratio"],
        ),
    ]


async def open_loop(miners: int = 1000, rate: float = 2000.0, seconds: float = 5.0) -> list[Row]:
    """Scenario (b)."""
    async with (
        _stack() as (_, _proc, port, _http),
        _Load({"mode": "open", "port": port, "miners": miners, "rate": rate, "seconds": seconds}) as load,
    ):
        result = await load.event("result")
    _check_all_accepted(result["phases"][0])
    pct = result["phases"][0]["rtts_ms"]
    return [
        Row(
            f"(b) {miners} miners, {rate:,.0f} shares/s offered",
            f"p50 {pct['p50']:.2f} ms, p99 {pct['p99']:.2f} ms ({result['phases'][0]['answered']} answered)",
            "p99 <= 2 ms",
            pct["p99"] <= TARGETS["b_p99_ms"],
        )
    ]


async def fanout(miners: int, jobs: int = 5) -> list[Row]:
    """Scenario (c) for one fleet size."""
    async with _stack() as (pool, _proc, port, _http):
        scenario = {"mode": "fanout", "port": port, "miners": miners, "jobs": jobs}
        async with _Load(scenario) as load:
            await load.event("ready")
            sent = []
            for _ in range(jobs):
                sent.append(time.monotonic())
                pool.new_job(clean=False)
                await asyncio.sleep(max(0.5, miners / 10_000))
            result = await load.event("result")
    latencies = sorted((last - t0) * 1000 for last, t0 in zip(result["last_arrival"], sent, strict=True))
    median = latencies[len(latencies) // 2]
    target = TARGETS["c_1000_ms"] if miners <= 1000 else TARGETS["c_10000_ms"]
    return [
        Row(
            f"(c) job fan-out to {miners:,} miners",
            f"median {median:.1f} ms, worst {latencies[-1]:.1f} ms (pool notify -> last miner)",
            f"<= {target:.0f} ms",
            median <= target,
        )
    ]


async def idle(miners: int | None = None) -> list[Row]:
    """Scenario (d)."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    count = miners or min(19_000, limit - 500)
    async with _stack() as (_, proc, port, _http):
        await asyncio.sleep(0.5)
        before = _rss_bytes(proc.pid)
        async with _Load({"mode": "idle", "port": port, "miners": count}) as load:
            await load.event("ready")
            await asyncio.sleep(1.0)
            after = _rss_bytes(proc.pid)
            load.release()
            await load.event("result")
    kib = (after - before) / count / 1024
    return [
        Row(
            f"(d) {count:,} idle subscribed miners",
            f"{kib:.2f} KiB per miner (RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB)",
            "19,000 at <= 6 KiB",
            kib <= TARGETS["d_kib_per_miner"] and count >= 19_000,
        )
    ]


async def scraping(miners: int = 10_000, rate: float = 2000.0, seconds: float = 8.0) -> list[Row]:
    """Scenario (e): p99 submit round-trip without and with /metrics scraped every second."""
    scrape_ms: list[float] = []
    async with _stack() as (_, _proc, port, http_port):
        scenario = {
            "mode": "open",
            "port": port,
            "miners": miners,
            "rate": rate,
            "seconds": seconds,
            "phases": 2,
        }
        async with _Load(scenario) as load:
            quiet = await load.event("phase_done")
            scraper = asyncio.get_running_loop().create_task(_scrape_every_second(http_port, scrape_ms))
            load.release()
            result = await load.event("result")
            scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scraper
    busy = result["phases"][1]
    for phase in (quiet, busy):
        _check_all_accepted(phase)
    rise = busy["rtts_ms"]["p99"] - quiet["rtts_ms"]["p99"]
    worst = max(scrape_ms) if scrape_ms else float("nan")
    median = sorted(scrape_ms)[len(scrape_ms) // 2] if scrape_ms else float("nan")
    return [
        Row(
            f"(e) {miners:,} workers, {rate:,.0f} shares/s: p99 without / with scrapes",
            f"{quiet['rtts_ms']['p99']:.2f} / {busy['rtts_ms']['p99']:.2f} ms (rise {rise:+.2f} ms)",
            "rise <= 5 ms",
            rise <= TARGETS["e_p99_rise_ms"],
        ),
        Row(
            f"(e) /metrics scrape of {miners:,} workers",
            f"median {median:.0f} ms, worst {worst:.0f} ms ({len(scrape_ms)} scrapes)",
            "< 500 ms",
            worst < TARGETS["e_scrape_ms"],
        ),
    ]


async def _scrape_every_second(port: int, times_ms: list[float]) -> None:
    async with aiohttp.ClientSession() as session:
        while True:
            start = time.monotonic()
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                body = await response.read()
            times_ms.append((time.monotonic() - start) * 1000)
            if b"stratum_proxy_shares_accepted_total" not in body:
                raise RuntimeError("scrape returned no worker series")
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - start)))


def _check_all_accepted(result: dict[str, Any]) -> None:
    if result["accepted"] != result["answered"]:
        raise RuntimeError(f"bench shares were rejected: {result}")  # the figures would be meaningless


SCENARIOS = ("a", "b", "c", "d", "e")


async def run(scenarios: tuple[str, ...] = SCENARIOS) -> list[Row]:
    """Run the chosen scenarios in order."""
    rows: list[Row] = []
    if "a" in scenarios:
        bare = validate.run(shares=10_000, repeats=5)
        rows.append(
            Row("bare validation of a realistic share", f"{bare.validate_ns / 1000:.1f} us", "-", True)
        )
        rows += await closed_loop(bare.validate_ns)
    if "b" in scenarios:
        rows += await open_loop()
    if "c" in scenarios:
        rows += await fanout(1000)
        rows += await fanout(10_000)
    if "d" in scenarios:
        rows += await idle()
    if "e" in scenarios:
        rows += await scraping()
    return rows


def report(rows: list[Row]) -> str:
    """The results table."""
    width = max(len(r.name) for r in rows)
    value_width = max(len(r.value) for r in rows)
    lines = [f"{'scenario':{width}}  {'result':{value_width}}  target"]
    for row in rows:
        mark = "" if row.target == "-" else ("  OK" if row.ok else "  MISSED")
        lines.append(f"{row.name:{width}}  {row.value:{value_width}}  {row.target}{mark}")
    return "\n".join(lines)
