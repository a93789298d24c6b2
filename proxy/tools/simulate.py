"""The fleet simulator: N miners in one process (``stratum-proxy simulate``).

Each :class:`SimMiner` has its own TCP connection and behaves like real firmware: it sends
``mining.configure`` (version rolling with mask ``ffffffff`` and min-bit-count 2, plus
subscribe-extranonce), ``mining.subscribe`` with an agent string, ``mining.authorize`` as
``USER.simNNNN`` and ``mining.extranonce.subscribe``; it applies ``mining.set_difficulty``
to the next job (as cgminer does), works only the newest job (``clean_jobs`` voids older
work), follows ``mining.set_version_mask`` at once, waits for the next notify after
``mining.set_extranonce``, reconnects on ``client.reconnect`` and answers
``client.get_version``.

Two modes:

* real (default): each miner really searches nonces, with sha256d on real headers built
  from the job, its extranonce1, its own extranonce2 counter and rolled version bits, at
  most ``hashrate`` hashes per second, and submits shares that meet its difficulty. Hashes
  actually done are counted, so pool-credited work can be checked against them. All miners
  share one CPU: Python does a few hundred thousand hashes per second in total, so use
  tiny difficulties (``1e-6`` is about one share per 4,300 hashes).
* ``no_hash`` (load mode): each miner submits ``share_rate`` distinct shares per second
  (new nonce each, new extranonce2 per job) without hashing. They are valid only when the
  difficulty makes every hash pass, i.e. a target of ``2**256 - 1``: difficulty at most
  ``DIFF1 / 2**256`` (about ``2.3e-10``; e.g. ``stratum-proxy pool --difficulty 1e-12``).
  At any higher difficulty the pool rightly answers most of them with error 23.

Some real miners' quirks can be switched on, each by one :class:`SimConfig` field and all
off by default: cpuminer's (minerd's) keeping of its work when a notify leaves the header
unchanged, and its ignoring of a ``client.reconnect`` without a host.

Per miner and in total the simulator counts requests sent, replies received (matched by
request id, unique per connection), unanswered requests (their connection ended first),
acceptances, rejections by error code, hashes, block candidates, reconnects and submit
round-trip times.

A miner is composed of three parts, each in its own module: the connection and the
matching of replies to requests (:mod:`proxy.tools.sim_link`), the nonce search
(:mod:`proxy.tools.sim_work`) and the counters (:mod:`proxy.tools.sim_stats`); the
handshake and the handling of pool messages are here, with the miner and the fleet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from proxy import __version__
from proxy.mining.job import Job, JobError
from proxy.runner import run
from proxy.stratum.codec import decode_server_line
from proxy.stratum.errors import PeerError
from proxy.stratum.framing import DEFAULT_MAX_LINE
from proxy.stratum.messages import (
    GetVersion,
    Notify,
    Reconnect,
    Response,
    SetDifficulty,
    SetExtranonce,
    SetVersionMask,
    ShowMessage,
)
from proxy.tools import wait_until
from proxy.tools.sim_link import MinerLink
from proxy.tools.sim_stats import NO_CODE, MinerStats, RttStats
from proxy.tools.sim_work import BATCH_SECONDS, MAX_BATCH, WorkEngine, spread_bits

# The counters and spread_bits live in the parts' modules and are re-exported from here,
# where tests, the benchmarks and the CLI have always imported them.
__all__ = [
    "AGENT",
    "BATCH_SECONDS",
    "MAX_BATCH",
    "MAX_RECONNECT_WAIT",
    "NO_CODE",
    "RECONNECT_DRAIN",
    "REQUESTED_MASK",
    "Fleet",
    "MinerStats",
    "RttStats",
    "SimConfig",
    "SimMiner",
    "config_from_args",
    "main",
    "parse_url",
    "simulate",
    "spread_bits",
]

AGENT: Final = f"stratum-proxy-sim/{__version__}"
"""The user agent sent in ``mining.subscribe`` and as the ``client.get_version`` answer."""

REQUESTED_MASK: Final = 0xFFFFFFFF
"""The version-rolling mask asked for, as cgminer and ASIC firmware do."""

MAX_RECONNECT_WAIT: Final = 60.0
"""A ``client.reconnect`` wait longer than this is cut down: a simulator must not hang."""

RECONNECT_DRAIN = 5.0
"""Seconds a miner told to reconnect waits for the replies it is still owed before leaving."""

_RESPONSE_DECODER: Final = msgspec.json.Decoder(Response)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SimConfig:
    """What every simulated miner of a fleet shares."""

    host: str = "127.0.0.1"
    port: int = 3333
    user: str = "sim"
    password: str = "x"
    hashrate: float = 20_000.0
    share_rate: float = 1.0
    no_hash: bool = False
    agent: str = AGENT
    version_rolling: bool = True
    reconnect_delay: float = 1.0
    request_timeout: float = 10.0
    record: bool = False
    max_line: int = DEFAULT_MAX_LINE

    # Quirks of real miners, each off by default (the defaults behave like careful firmware).
    keep_work_if_header_unchanged: bool = False
    """cpuminer (minerd): a ``mining.notify`` whose header fields (prevhash, coinb1, coinb2,
    merkle branch, version, nbits, ntime) equal those of the job being worked leaves the
    work alone, whatever its job id or clean_jobs: shares keep the old job id and the old
    difficulty (a ``mining.set_difficulty`` since is taken only with the next new work).
    Counted in ``MinerStats.kept_work``."""
    ignore_null_reconnect: bool = False
    """cpuminer: a ``client.reconnect`` whose host is null or empty (ckpool's ``[]``) does
    nothing at all: the miner stays on this connection and mines on. Counted in
    ``MinerStats.ignored_reconnects``. A reconnect with a host is followed as usual."""

    def __post_init__(self) -> None:
        for name in ("hashrate", "share_rate", "request_timeout"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number")
        if self.reconnect_delay < 0:
            raise ValueError("reconnect_delay must be >= 0")


def parse_url(url: str) -> tuple[str, int]:
    """``stratum+tcp://host:port`` (also ``tcp://`` or bare ``host:port``) into its parts."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "stratum+tcp", url
    if scheme not in ("stratum+tcp", "tcp"):
        raise ValueError(f"unsupported scheme {scheme!r}: only stratum+tcp")
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected stratum+tcp://HOST:PORT, got {url!r}")
    return host.strip("[]"), int(port)


# --------------------------------------------------------------------------- one miner


class _Dialogue:
    """The Stratum side of one miner: its handshake and what it does with each pool message.

    It sets the work inputs of the miner's :class:`WorkEngine` (a new job, difficulty,
    version mask, extranonce) as firmware would, answers ``client.get_version`` and, on
    ``client.reconnect``, leaves once the replies in flight arrived.
    """

    def __init__(
        self,
        config: SimConfig,
        worker: str,
        link: MinerLink,
        work: WorkEngine,
        *,
        received: list[bytes],
        messages: list[str],
    ) -> None:
        self.config = config
        self.worker = worker
        self.link = link
        self.work = work
        self.stats = link.stats
        self.received = received
        self.messages = messages
        self.next_difficulty = 1.0  # Stratum's default until set_difficulty says otherwise
        # Where a client.reconnect sends the miner: (host, port, wait), None meaning "the
        # same"; the miner reads it once this connection is over.
        self.reconnect_to: tuple[str | None, int | None, float] | None = None
        self._leave_task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        """A new connection: the difficulty is Stratum's default again."""
        self.next_difficulty = 1.0

    async def _call(self, method: str, params: list[Any]) -> Response:
        return await self.link.call(method, params, self.config.request_timeout)

    async def handshake(self) -> bool:
        """configure, subscribe, authorize, extranonce.subscribe; False when refused."""
        work = self.work
        if self.config.version_rolling:
            reply = await self._call(
                "mining.configure",
                [
                    ["version-rolling", "subscribe-extranonce"],
                    {"version-rolling.mask": f"{REQUESTED_MASK:08x}", "version-rolling.min-bit-count": 2},
                ],
            )
            work.version_mask = _granted_mask(reply)
        subscribed = _subscribe_result(await self._call("mining.subscribe", [self.config.agent]))
        if subscribed is None:
            self.stats.handshake_failures += 1
            return False
        work.extranonce1, work.extranonce2_size = subscribed
        reply = await self._call("mining.authorize", [self.worker, self.config.password])
        if _decode_raw(reply.result) is not True:
            self.stats.handshake_failures += 1
            return False
        work.authorized = True
        self.stats.handshakes += 1
        await self._call("mining.extranonce.subscribe", [])  # refused or not, mine on
        work.job_changed()
        return True

    def on_line(self, line: bytes) -> None:
        """Handle one line from the pool: a reply or a notification."""
        if self.config.record:
            self.received.append(line)
        try:
            # Replies are most of the traffic; decode them directly rather than through
            # the tagged union, which only knows notifications and would fail first.
            message = decode_server_line(line) if b'"method"' in line else _RESPONSE_DECODER.decode(line)
        except (PeerError, msgspec.DecodeError):
            self.stats.bad_lines += 1
            return
        match message:
            case Response():
                self.link.on_response(message)
            case Notify():
                self._on_notify(message)
            case SetDifficulty():
                self.next_difficulty = message.params.difficulty  # for the next job
            case SetVersionMask():
                self._on_set_version_mask(message)
            case SetExtranonce():
                self._on_set_extranonce(message)
            case Reconnect():
                self._on_reconnect(message)
            case ShowMessage():
                self.messages.append(message.params.message)
            case GetVersion():
                reply = {"id": message.id, "result": self.config.agent, "error": None}
                self.link.write(msgspec.json.encode(reply) + b"\n")

    def _on_notify(self, message: Notify) -> None:
        try:
            job = Job.from_fields(message.params, seq=0, created=0.0)
        except JobError:
            self.stats.bad_lines += 1
            return
        self.stats.jobs += 1
        work = self.work
        if self.config.keep_work_if_header_unchanged and _same_header(work.job, job):
            # minerd compares the 76 header bytes of the new work with its own and keeps
            # its work (job id and target included) when they are equal.
            self.stats.kept_work += 1
            return
        # Only the newest job is worked, so clean_jobs or not, older work stops here.
        work.job = job
        work.job_difficulty = self.next_difficulty
        work.job_changed()

    def _on_set_version_mask(self, message: SetVersionMask) -> None:
        try:
            mask = int(message.params.mask, 16)
        except ValueError:
            self.stats.bad_lines += 1
            return
        self.work.version_mask = mask & REQUESTED_MASK  # valid at once (BIP310)
        self.work.job_changed()

    def _on_set_extranonce(self, message: SetExtranonce) -> None:
        try:
            extranonce1 = bytes.fromhex(message.params.extranonce1)
        except ValueError:
            self.stats.bad_lines += 1
            return
        work = self.work
        work.extranonce1 = extranonce1
        work.extranonce2_size = message.params.extranonce2_size
        work.job = None  # old jobs are void with another extranonce: wait for the next notify
        work.job_changed()

    def _on_reconnect(self, message: Reconnect) -> None:
        p = message.params
        if self.config.ignore_null_reconnect and not p.host:
            self.stats.ignored_reconnects += 1  # cpuminer: no host, not a reconnect
            return
        port: int | None = None
        if p.port is not None:
            with contextlib.suppress(ValueError):
                port = int(p.port)  # ckpool sends the port as a string
        wait = min(max(float(p.wait or 0.0), 0.0), MAX_RECONNECT_WAIT)
        self.reconnect_to = (p.host or None, port, wait)
        # Like careful firmware: no new shares, let the replies in flight arrive, then go.
        self.work.leaving = True
        self._leave_task = asyncio.get_running_loop().create_task(self._leave_when_answered())

    async def _leave_when_answered(self) -> None:
        await self.link.wait_answered(RECONNECT_DRAIN)
        self.link.close()


class SimMiner:
    """One simulated miner: its own connection, handshake, job handling, hashing and stats.

    ``await start()`` launches it (it connects, and reconnects after a drop, until
    :meth:`stop`); :attr:`ready` is set once it is authorized and has a job. For tests:
    :meth:`send_raw` writes any line, :meth:`request` sends a request and returns the
    reply, and with ``SimConfig(record=True)`` every line received is kept in
    :attr:`received`.

    It composes three parts: :attr:`link` (the connection and request correlation),
    :attr:`dialogue` (handshake and pool messages) and :attr:`work` (the nonce search).
    """

    def __init__(self, config: SimConfig, index: int) -> None:
        self.config = config
        self.index = index
        self.worker = f"{config.user}.sim{index:04d}"
        self.stats = MinerStats(rtt=RttStats(seed=index))
        self.received: list[bytes] = []
        self.messages: list[str] = []  # client.show_message texts
        self.accepted_shares: deque[list[Any]] = deque(maxlen=32)  # submit params, newest last
        self.host = config.host
        self.port = config.port
        self.link = MinerLink(self.stats, self.accepted_shares, max_line=config.max_line)
        rate = config.share_rate if config.no_hash else config.hashrate
        self.work = WorkEngine(self.link, self.stats, worker=self.worker, rate=rate, no_hash=config.no_hash)
        self.dialogue = _Dialogue(
            config, self.worker, self.link, self.work, received=self.received, messages=self.messages
        )
        self.ready = self.work.ready
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self.link.connected

    @property
    def local_address(self) -> str | None:
        """``HOST:PORT`` of this end of the connection (what a proxy sees as the miner)."""
        return self.link.local_address

    @property
    def in_flight(self) -> int:
        """Requests sent on the current connection and not answered yet."""
        return self.link.in_flight

    @property
    def extranonce1(self) -> bytes:
        """The extranonce1 the pool gave this connection."""
        return self.work.extranonce1

    @property
    def extranonce2_size(self) -> int:
        """The extranonce2 size the pool gave this connection."""
        return self.work.extranonce2_size

    @property
    def version_mask(self) -> int:
        """The version-rolling mask in force (0 when rolling was not granted)."""
        return self.work.version_mask

    @property
    def authorized(self) -> bool:
        """True once the pool authorized this connection's worker."""
        return self.work.authorized

    @property
    def job(self) -> Job | None:
        """The job being worked (only the newest is)."""
        return self.work.job

    @property
    def job_difficulty(self) -> float:
        """The difficulty the current job is worked at."""
        return self.work.job_difficulty

    # ------------------------------------------------------------------ control

    async def start(self) -> None:
        """Start connecting; returns at once (see :attr:`ready`)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.worker)

    def pause(self) -> None:
        """Stop hashing and submitting (replies to what was sent still arrive)."""
        self.work.pause()

    def resume(self) -> None:
        """Hash and submit again."""
        self.work.resume()

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop working, wait up to ``drain_timeout`` for in-flight replies, then disconnect.

        Requests still unanswered then are counted in ``stats.unanswered``.
        """
        self.pause()
        await self.link.wait_answered(drain_timeout)
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def disconnect(self) -> None:
        """Drop the connection now (the miner reconnects after ``reconnect_delay``)."""
        self.link.close()

    def send_raw(self, line: bytes) -> bool:
        """Write ``line`` as is (a newline is added when missing); False when not connected."""
        return self.link.write(line if line.endswith(b"\n") else line + b"\n")

    async def request(self, method: str, params: list[Any], timeout: float | None = None) -> Response:
        """Send a request with this miner's next id and return the reply.

        Raises :class:`ConnectionError` when not connected or when the connection ends
        first, :class:`TimeoutError` after ``timeout`` (default ``request_timeout``).
        """
        return await self.link.call(method, params, timeout or self.config.request_timeout)

    def received_json(self) -> list[Any]:
        """Every recorded line decoded as JSON (undecodable lines as ``None``)."""
        out: list[Any] = []
        for line in self.received:
            try:
                out.append(msgspec.json.decode(line))
            except msgspec.DecodeError:
                out.append(None)
        return out

    # ------------------------------------------------------------------ connection loop

    async def _run(self) -> None:
        """Connect, run a session, and reconnect until stopped."""
        first = True
        while not self._stopping:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                self.stats.connect_failures += 1
                await asyncio.sleep(self.config.reconnect_delay)
                continue
            self.stats.connects += 1
            if not first:
                self.stats.reconnects += 1
            first = False
            self.link.attach(writer)
            self.work.reset()
            self.dialogue.reset()
            try:
                await self._session(reader)
            finally:
                self.link.detach()
                self.work.clear()
            await asyncio.sleep(self._next_wait())

    def _next_wait(self) -> float:
        """Where to reconnect and after how long: a client.reconnect target or the same pool."""
        target, self.dialogue.reconnect_to = self.dialogue.reconnect_to, None
        if target is None:
            return self.config.reconnect_delay
        host, port, wait = target
        self.host = host or self.host
        self.port = self.port if port is None else port
        return wait

    async def _session(self, reader: asyncio.StreamReader) -> None:
        """Read lines while the handshake and then the work loop run."""
        reader_task = asyncio.create_task(self.link.read(reader, self.dialogue.on_line))
        work_task: asyncio.Task[None] | None = None
        try:
            if await self.dialogue.handshake():
                work_task = asyncio.create_task(self.work.run())
                await reader_task
        except (ConnectionError, TimeoutError):
            pass  # the connection ended or the pool did not answer: reconnect
        finally:
            for task in (work_task, reader_task):
                if task is not None:
                    task.cancel()
                    # Awaiting also collects a connection error the task may have ended with.
                    with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                        await task


def _same_header(old: Job | None, new: Job) -> bool:
    """True when ``new`` would give the same 76 header bytes (and coinbase) as ``old``."""
    return old is not None and (
        old.prevhash == new.prevhash
        and old.coinb1 == new.coinb1
        and old.coinb2 == new.coinb2
        and old.branch == new.branch
        and old.version == new.version
        and old.nbits == new.nbits
        and old.ntime == new.ntime
    )


def _decode_raw(raw: msgspec.Raw) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


def _granted_mask(reply: Response) -> int:
    """The version-rolling mask a ``mining.configure`` reply grants (0 when refused)."""
    result = _decode_raw(reply.result)
    if not isinstance(result, dict) or result.get("version-rolling") is not True:
        return 0
    try:
        return int(str(result.get("version-rolling.mask", "0")), 16) & REQUESTED_MASK
    except ValueError:
        return 0


def _subscribe_result(reply: Response) -> tuple[bytes, int] | None:
    """(extranonce1, extranonce2_size) from a subscribe reply, None when it is unusable."""
    result = _decode_raw(reply.result)
    if not isinstance(result, list) or len(result) < 3:
        return None
    _, extranonce1, size = result[:3]
    if not isinstance(extranonce1, str) or type(size) is not int or not 0 < size <= 32:
        return None
    try:
        return bytes.fromhex(extranonce1), size
    except ValueError:
        return None


# --------------------------------------------------------------------------- the fleet


class Fleet:
    """N :class:`SimMiner` on one event loop, with totals and a summary line."""

    def __init__(self, config: SimConfig, miners: int, *, first_index: int = 1) -> None:
        if miners < 1:
            raise ValueError("a fleet needs at least one miner")
        self.config = config
        self.miners = [SimMiner(config, first_index + i) for i in range(miners)]
        self.started = time.monotonic()

    async def start(self) -> None:
        """Start every miner (they connect concurrently)."""
        self.started = time.monotonic()
        for miner in self.miners:
            await miner.start()

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until every miner is authorized and has a job."""
        await wait_until(lambda: all(m.ready.is_set() for m in self.miners), timeout)

    def pause(self) -> None:
        """Stop every miner's work (replies still arrive)."""
        for miner in self.miners:
            miner.pause()

    def resume(self) -> None:
        """Resume every miner's work."""
        for miner in self.miners:
            miner.resume()

    @property
    def in_flight(self) -> int:
        """Requests sent and not answered yet, over the fleet."""
        return sum(m.in_flight for m in self.miners)

    async def stop(self, drain_timeout: float = 5.0) -> MinerStats:
        """Stop all miners after draining in-flight replies; returns the totals."""
        self.pause()
        with contextlib.suppress(TimeoutError):
            await wait_until(
                lambda: all(not m.in_flight or not m.connected for m in self.miners), drain_timeout
            )
        await asyncio.gather(*(m.stop(drain_timeout=0) for m in self.miners))
        return self.totals()

    def totals(self) -> MinerStats:
        """Every miner's counters added up."""
        total = MinerStats()
        for miner in self.miners:
            total.merge(miner.stats)
        return total

    def summary(self) -> str:
        """One line for the terminal."""
        t = self.totals()
        elapsed = max(time.monotonic() - self.started, 1e-9)
        ready = sum(m.ready.is_set() for m in self.miners)
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(t.rejected.items()))
        rtt = t.rtt
        return (
            f"miners {ready}/{len(self.miners)} ready, {t.handshakes} handshakes | "
            f"hashes {t.hashes} ({t.hashes / elapsed / 1e3:.1f} kH/s) | "
            f"submitted {t.shares_submitted} accepted {t.accepted} rejected {t.rejected_total}"
            f"{f' ({codes})' if codes else ''} | blocks {t.block_candidates} | "
            f"requests {t.requests_sent} replies {t.replies_received} "
            f"in-flight {self.in_flight} unanswered {t.unanswered} | "
            f"rtt avg {rtt.mean * 1e3:.2f} ms p99 {rtt.percentile(0.99) * 1e3:.2f} ms "
            f"max {rtt.max * 1e3:.2f} ms | reconnects {t.reconnects} connect failures {t.connect_failures}"
        )


# --------------------------------------------------------------------------- command line


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """A :class:`SimConfig` from the ``simulate`` subcommand's arguments."""
    host, port = parse_url(args.url)
    return SimConfig(
        host=host,
        port=port,
        user=args.user,
        password=args.password,
        hashrate=args.hashrate,
        share_rate=args.share_rate,
        no_hash=args.no_hash,
    )


async def simulate(
    config: SimConfig, miners: int, *, duration: float | None = None, report_interval: float = 5.0
) -> MinerStats:
    """Run a fleet for ``duration`` seconds (or until SIGINT/SIGTERM), printing summaries."""
    fleet = Fleet(config, miners)
    await fleet.start()
    print(f"simulating {miners} miners against stratum+tcp://{config.host}:{config.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    deadline = None if duration is None else loop.time() + duration
    while not stop.is_set():
        wait = report_interval if deadline is None else min(report_interval, deadline - loop.time())
        if wait <= 0:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
        print(f"sim: {fleet.summary()}", flush=True)
    totals = await fleet.stop()
    print(f"sim summary: {fleet.summary()}", flush=True)
    return totals


def main(args: argparse.Namespace) -> int:
    """The ``simulate`` subcommand; exit code 1 when any request went unanswered."""
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"stratum-proxy simulate: {exc}", file=sys.stderr)
        return 2
    if args.miners < 1 or args.report_interval <= 0 or (args.duration is not None and args.duration <= 0):
        print(
            "stratum-proxy simulate: --miners, --duration and --report-interval must be positive",
            file=sys.stderr,
        )
        return 2
    totals = run(simulate(config, args.miners, duration=args.duration, report_interval=args.report_interval))
    return 1 if totals.unanswered else 0
