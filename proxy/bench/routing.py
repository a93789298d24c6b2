"""``stratum-proxy bench routing``: does a weighted split land where its weights say?

Two bundled pools, each in a process of its own, a ``stratum-proxy run`` subprocess routing
between them at 70/30, and a simulated fleet in another process. The judge is the pools'
own ledgers: each pool counts the shares it accepted (it checks every one itself), and
the realised split is one pool's accepted work over both. Scenarios:

* ``time``: 100 miners whose rates are spread 10x, ``split = "time"``;
* ``miners``: the same fleet, ``split = "miners"`` (whole miners, by measured hashrate);
* ``single``: one miner, ``split = "time"``;
* ``api``: during a time split, ``PUT /api/v1/groups/site`` turns 70/30 into 30/70; how
  many slices until one slice's realised split is within 2 points of the new target.

Also counted: shares the miners were told were stale (unknown job: what a switch could
cost), miner reconnects and requests left unanswered. The miners run in load mode (unique
shares at a difficulty every hash meets), so 100 of them cost little CPU and their share
rates stand for their hashrates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, cast

import aiohttp

from proxy.bench.process import proxy_process
from proxy.config import PoolConfig as ProxyPool
from proxy.config_groups import GroupConfig, RouteConfig
from proxy.routing.groups import Group
from proxy.routing.ports import PlacedMiner
from proxy.routing.state import PoolState
from proxy.runner import run as run_loop
from proxy.tools import free_port
from proxy.tools.pool import PoolConfig, TestPool
from proxy.tools.simulate import Fleet, SimConfig

DIFFICULTY = 1e-12
"""Met by every hash: load-mode shares are valid without a search."""

TOKEN = "bench-routing-admin-token-000000"


# --------------------------------------------------------------------------- child processes


def _pool_child(port: int, seed: int, pipe: Connection) -> None:
    """A bundled pool on ``port``; answers ``"stats"`` on ``pipe`` until ``"stop"``."""

    async def main() -> None:
        pool = TestPool(PoolConfig(port=port, difficulty=DIFFICULTY, job_interval=30.0, seed=seed))
        await pool.start()
        try:
            while True:
                command = await asyncio.to_thread(pipe.recv)
                if command == "stop":
                    return
                pipe.send({"accepted": pool.stats.accepted, "rejected": pool.stats.rejected_total})
        finally:
            await pool.stop()

    run_loop(main())


def _fleet_child(port: int, rates: list[float], pipe: Connection) -> None:
    """Miners with the given share rates against ``port``; ``"stop"`` returns the totals."""

    async def main() -> None:
        fleets = [
            Fleet(
                SimConfig(port=port, no_hash=True, share_rate=rate, request_timeout=10.0),
                1,
                first_index=i + 1,
            )
            for i, rate in enumerate(rates)
        ]
        for fleet in fleets:
            await fleet.start()
        for fleet in fleets:
            await fleet.wait_ready(60.0)
        pipe.send("ready")
        await asyncio.to_thread(pipe.recv)
        totals = [await fleet.stop() for fleet in fleets]
        pipe.send(
            {
                "shares": sum(t.shares_submitted for t in totals),
                "accepted": sum(t.accepted for t in totals),
                "stale": sum(t.rejected.get(21, 0) for t in totals),
                "rejected": sum(t.rejected_total for t in totals),
                "reconnects": sum(t.reconnects for t in totals),
                "unanswered": sum(t.unanswered for t in totals),
            }
        )

    run_loop(main())


@contextlib.contextmanager
def _child(target: Any, *args: Any) -> Iterator[Connection]:
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=target, args=(*args, theirs), daemon=True)
    process.start()
    try:
        yield ours
    finally:
        with contextlib.suppress(OSError, BrokenPipeError):
            ours.send("stop")
        process.join(15)
        if process.is_alive():
            process.kill()


# --------------------------------------------------------------------------- scale, in process


class _Miner:
    """What a group reads of a miner (its work); for the in-process scale figures."""

    def __init__(self) -> None:
        self.work = 0.0


def scale(miners: int = 100_000, slice_seconds: float = 60.0) -> str:
    """The routing decisions' own cost for a site of ``miners``: joining them all, and a
    time split's ticks over one slice (twice a second, as the proxy ticks)."""
    pools = {
        n: PoolState(ProxyPool(name=n, url=f"stratum+tcp://127.0.0.1:{i + 1}", user="u"), i)
        for i, n in enumerate("ab")
    }
    lines = []
    for split in ("time", "miners"):
        config = GroupConfig(
            name="site",
            split=split,
            slice_seconds=slice_seconds,
            routes=(RouteConfig(weight=70, pools=("a",)), RouteConfig(weight=30, pools=("b",))),
        )
        group = Group(config, pools)
        for route in group.routes:
            route.serving = route.chain[0]
        fleet = [cast(PlacedMiner, _Miner()) for _ in range(miners)]
        start = time.perf_counter()
        for index, miner in enumerate(fleet):
            group.join(miner, f"acct.rig-{index}", 0.0)
        joined = time.perf_counter() - start
        ticks, switches, worst = 0, 0, 0.0
        start = time.perf_counter()
        for step in range(1, int(2 * slice_seconds) + 1):
            tick = time.perf_counter()
            for session, index in group.due_switches(step / 2):
                group.members[session].route = index
                switches += 1
            group.rebalance(step / 2)
            worst = max(worst, time.perf_counter() - tick)
            ticks += 1
        per_tick = (time.perf_counter() - start) / ticks
        lines.append(
            f"{split:<6} split, {miners:,} miners: join {joined / miners * 1e6:.1f} us each;"
            f" tick {per_tick * 1e3:.2f} ms mean, {worst * 1e3:.1f} ms worst;"
            f" {switches:,} switches in one slice"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- the run


@dataclass
class SplitResult:
    """One scenario's figures."""

    scenario: str
    miners: int
    seconds: float
    target: float
    realised: float
    pool_shares: int
    stale: int
    shares: int
    reconnects: int
    unanswered: int
    slices_to_new_split: int | None = None
    notes: list[str] = field(default_factory=list)


def _config(pools: list[int], listen: int, http: int, split: str, slice_seconds: float, token: str) -> str:
    return f"""
[server]
listen = ["127.0.0.1:{listen}"]
max_miners = 5000
[[pools]]
name = "a"
url = "stratum+tcp://127.0.0.1:{pools[0]}"
user = "bench.a"
[[pools]]
name = "b"
url = "stratum+tcp://127.0.0.1:{pools[1]}"
user = "bench.b"
[difficulty]
initial = {DIFFICULTY}
minimum = {DIFFICULTY}
maximum = 1.0
vardiff = false
[log]
level = "warning"
status_interval = 0
[http]
listen = "127.0.0.1:{http}"
admin_token_file = "{token}"
[[groups]]
name = "site"
split = "{split}"
slice_seconds = {slice_seconds}
[[groups.routes]]
weight = 70
pools = ["a"]
[[groups.routes]]
weight = 30
pools = ["b"]
"""


def _rates(miners: int) -> list[float]:
    """Share rates spread 10x (1 to 10 shares/s), evenly over the fleet."""
    if miners == 1:
        return [20.0]
    return [1.0 + 9.0 * i / (miners - 1) for i in range(miners)]


async def _ask(pipe: Connection, command: str = "stats") -> dict[str, Any]:
    pipe.send(command)
    reply: dict[str, Any] = await asyncio.to_thread(pipe.recv)
    return reply


async def _ready(http: aiohttp.ClientSession, port: int) -> bool:
    try:
        async with http.get(f"http://127.0.0.1:{port}/api/v1/pools") as response:
            body = await response.json()
            return all(p["state"] == "ready" for p in body["pools"])
    except aiohttp.ClientError:
        return False


async def run_split(
    scenario: str, miners: int, split: str, seconds: float, slice_seconds: float, token_file: str
) -> SplitResult:
    """Run one scenario for ``seconds`` of measurement after the fleet is ready."""
    pool_ports, listen, http_port = [free_port(), free_port()], free_port(), free_port()
    with (
        _child(_pool_child, pool_ports[0], 1) as pool_a,
        _child(_pool_child, pool_ports[1], 2) as pool_b,
        proxy_process(_config(pool_ports, listen, http_port, split, slice_seconds, token_file)),
    ):
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while not await _ready(http, http_port):
                if time.monotonic() > deadline:
                    raise TimeoutError("the proxy did not connect to both pools")
                await asyncio.sleep(0.2)
            with _child(_fleet_child, listen, _rates(miners)) as fleet:
                await asyncio.to_thread(fleet.recv)  # "ready"
                # Let a miners split measure and settle first, as an operator would.
                await asyncio.sleep(120.0 if split == "miners" else 2 * slice_seconds)
                start_a, start_b = await _ask(pool_a), await _ask(pool_b)
                started = time.monotonic()
                slices = None
                if scenario == "api":
                    slices = await _weight_change(http, http_port, pool_a, pool_b, slice_seconds)
                else:
                    await asyncio.sleep(seconds)
                end_a, end_b = await _ask(pool_a), await _ask(pool_b)
                elapsed = time.monotonic() - started
                totals = await _ask(fleet, "stop")
    got_a = end_a["accepted"] - start_a["accepted"]
    got_b = end_b["accepted"] - start_b["accepted"]
    return SplitResult(
        scenario=scenario,
        miners=miners,
        seconds=elapsed,
        target=0.3 if scenario == "api" else 0.7,
        realised=got_a / max(1, got_a + got_b),
        pool_shares=got_a + got_b,
        stale=totals["stale"],
        shares=totals["shares"],
        reconnects=totals["reconnects"],
        unanswered=totals["unanswered"],
        slices_to_new_split=slices,
    )


async def _weight_change(
    http: aiohttp.ClientSession, port: int, pool_a: Connection, pool_b: Connection, slice_seconds: float
) -> int | None:
    """PUT 30/70 and count the slices until one slice's split is within 2 points of it."""
    body = {"routes": [{"weight": 30, "pools": ["a"]}, {"weight": 70, "pools": ["b"]}]}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http.put(
        f"http://127.0.0.1:{port}/api/v1/groups/site", data=json.dumps(body), headers=headers
    ) as r:
        if r.status != 200:
            raise RuntimeError(f"PUT failed: {r.status} {await r.text()}")
    before_a, before_b = await _ask(pool_a), await _ask(pool_b)
    for index in range(1, 6):
        await asyncio.sleep(slice_seconds)
        now_a, now_b = await _ask(pool_a), await _ask(pool_b)
        got_a = now_a["accepted"] - before_a["accepted"]
        got_b = now_b["accepted"] - before_b["accepted"]
        if got_a + got_b and abs(got_a / (got_a + got_b) - 0.3) <= 0.02:
            return index
        before_a, before_b = now_a, now_b
    return None


async def run(minutes: float, scenarios: tuple[str, ...], token_file: str) -> list[SplitResult]:
    """Every scenario asked for, one after the other."""
    seconds = minutes * 60.0
    plans = {
        "time": ("time", 100, "time", seconds, 60.0),
        "miners": ("miners", 100, "miners", seconds, 60.0),
        "single": ("single", 1, "time", seconds, 60.0),
        "api": ("api", 100, "time", 0.0, 30.0),
    }
    return [await run_split(*plans[name], token_file) for name in scenarios]


def report(results: list[SplitResult]) -> str:
    """The figures as README shows them."""
    lines = [
        "scenario  miners  minutes  target  realised  off(pts)  pool shares  stale/shares"
        "  reconnects  unanswered"
    ]
    for r in results:
        lines.append(
            f"{r.scenario:<8}  {r.miners:>6}  {r.seconds / 60:>7.1f}  {r.target:>6.2f}  {r.realised:>8.4f}"
            f"  {100 * (r.realised - r.target):>+8.2f}  {r.pool_shares:>11}  {r.stale:>5}/{r.shares:<7}"
            f"  {r.reconnects:>10}  {r.unanswered:>10}"
        )
        if r.slices_to_new_split is not None or r.scenario == "api":
            reached = r.slices_to_new_split
            lines.append(
                f"          weight change 70/30 -> 30/70: within 2 points in slice {reached} after the PUT"
                if reached is not None
                else "          weight change 70/30 -> 30/70: not within 2 points in 5 slices"
            )
    return "\n".join(lines)
