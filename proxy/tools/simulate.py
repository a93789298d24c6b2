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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import math
import random
import signal
import struct
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from proxy import __version__
from proxy.mining.hashing import merkle_root, sha256d
from proxy.mining.job import Job, JobError
from proxy.mining.target import target_from_difficulty
from proxy.runner import run
from proxy.stratum.codec import decode_server_line, parse_share_reply
from proxy.stratum.errors import LineTooLong, PeerError
from proxy.stratum.framing import DEFAULT_MAX_LINE, LineFramer
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

AGENT: Final = f"stratum-proxy-sim/{__version__}"
"""The user agent sent in ``mining.subscribe`` and as the ``client.get_version`` answer."""

REQUESTED_MASK: Final = 0xFFFFFFFF
"""The version-rolling mask asked for, as cgminer and ASIC firmware do."""

BATCH_SECONDS: Final = 0.02
"""Work is done in slices of this much time at the configured rate, so the event loop is
never held long by one miner and the rate stays smooth."""

MAX_BATCH: Final = 4096
"""Hashes per slice at most: ~5 ms of Python hashing, a bound on event loop latency."""

NO_CODE: Final = -1
"""The rejection key for a pool reply that carried no error code."""

MAX_RECONNECT_WAIT: Final = 60.0
"""A ``client.reconnect`` wait longer than this is cut down: a simulator must not hang."""

RECONNECT_DRAIN = 5.0
"""Seconds a miner told to reconnect waits for the replies it is still owed before leaving."""

_U32: Final = struct.Struct("<I")
_U32X2: Final = struct.Struct("<II")
_sha256: Final = hashlib.sha256
_RESPONSE_DECODER: Final = msgspec.json.Decoder(Response)
_SUBMIT_HEAD: Final = b'"method":"mining.submit","params":'


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


def spread_bits(value: int, mask: int) -> int:
    """Deposit the low bits of ``value`` into the set bits of ``mask`` (like x86 PDEP).

    Turns a counter into version bits that are always inside the granted mask.
    """
    out = 0
    bit = 1
    while mask:
        low = mask & -mask
        if value & bit:
            out |= low
        bit <<= 1
        mask ^= low
    return out


# --------------------------------------------------------------------------- statistics


class RttStats:
    """Submit round-trip times: count, mean, max and a bounded uniform sample for percentiles."""

    RESERVOIR: Final = 2048

    def __init__(self, seed: int = 0) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.samples: list[float] = []
        self._rng = random.Random(seed)

    def add(self, seconds: float) -> None:
        """Record one round trip (reservoir sampling keeps memory bounded)."""
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        if len(self.samples) < self.RESERVOIR:
            self.samples.append(seconds)
        else:
            slot = self._rng.randrange(self.count)
            if slot < self.RESERVOIR:
                self.samples[slot] = seconds

    def merge(self, other: RttStats) -> None:
        """Fold another miner's times in (the merged sample stays bounded)."""
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)
        self.samples.extend(other.samples)
        if len(self.samples) > 4 * self.RESERVOIR:
            self.samples = self._rng.sample(self.samples, 4 * self.RESERVOIR)

    @property
    def mean(self) -> float:
        """Mean round trip in seconds (0 without samples)."""
        return self.total / self.count if self.count else 0.0

    def percentile(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the sample, in seconds."""
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class MinerStats:
    """Counters of one miner, or of a fleet once merged."""

    requests_sent: int = 0
    replies_received: int = 0
    unanswered: int = 0
    unexpected_replies: int = 0
    shares_submitted: int = 0
    accepted: int = 0
    rejected: Counter[int] = field(default_factory=Counter)
    accepted_work: float = 0.0
    hashes: int = 0
    block_candidates: int = 0
    jobs: int = 0
    connects: int = 0
    handshakes: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    handshake_failures: int = 0
    bad_lines: int = 0
    kept_work: int = 0  # notifies that left the header unchanged (keep_work_if_header_unchanged)
    ignored_reconnects: int = 0  # client.reconnect without a host (ignore_null_reconnect)
    rtt: RttStats = field(default_factory=RttStats)

    @property
    def rejected_total(self) -> int:
        """Every rejected share, whatever the code."""
        return sum(self.rejected.values())

    def merge(self, other: MinerStats) -> None:
        """Add another miner's counters to these."""
        for name in (
            "requests_sent",
            "replies_received",
            "unanswered",
            "unexpected_replies",
            "shares_submitted",
            "accepted",
            "accepted_work",
            "hashes",
            "block_candidates",
            "jobs",
            "connects",
            "handshakes",
            "reconnects",
            "connect_failures",
            "handshake_failures",
            "bad_lines",
            "kept_work",
            "ignored_reconnects",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejected.update(other.rejected)
        self.rtt.merge(other.rtt)


# --------------------------------------------------------------------------- one miner


class _Pending:
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


class _Work:
    """One unit of work: a job with a fixed extranonce2 and version, searched over nonces.

    The first 64 header bytes never change within a unit, so their SHA-256 state is kept
    and each nonce only hashes the last 16 bytes (the midstate trick ASICs use too).
    """

    __slots__ = (
        "difficulty",
        "en2_hex",
        "gen",
        "job",
        "mid",
        "nonce",
        "ntime_hex",
        "tail",
        "target",
        "vbits",
    )

    def __init__(
        self,
        job: Job,
        *,
        difficulty: float,
        gen: int,
        extranonce1: bytes,
        extranonce2: bytes,
        version: int,
        vbits: str | None,
    ) -> None:
        self.job = job
        self.difficulty = difficulty
        self.target = target_from_difficulty(difficulty)
        self.gen = gen
        self.en2_hex = extranonce2.hex()
        self.ntime_hex = f"{job.ntime:08x}"
        self.vbits = vbits
        coinbase_hash = sha256d(job.coinb1 + extranonce1 + extranonce2 + job.coinb2)
        head = _U32.pack(version) + job.prevhash + merkle_root(coinbase_hash, job.branch)
        self.mid = _sha256(head[:64])
        self.tail = head[64:] + _U32X2.pack(job.ntime, job.nbits)
        self.nonce = 0


class SimMiner:
    """One simulated miner: its own connection, handshake, job handling, hashing and stats.

    ``await start()`` launches it (it connects, and reconnects after a drop, until
    :meth:`stop`); :attr:`ready` is set once it is authorized and has a job. For tests:
    :meth:`send_raw` writes any line, :meth:`request` sends a request and returns the
    reply, and with ``SimConfig(record=True)`` every line received is kept in
    :attr:`received`.
    """

    def __init__(self, config: SimConfig, index: int) -> None:
        self.config = config
        self.index = index
        self.worker = f"{config.user}.sim{index:04d}"
        self.stats = MinerStats(rtt=RttStats(seed=index))
        self.ready = asyncio.Event()
        self.received: list[bytes] = []
        self.messages: list[str] = []  # client.show_message texts
        self.accepted_shares: deque[list[Any]] = deque(maxlen=32)  # submit params, newest last
        self.host = config.host
        self.port = config.port
        # Connection state, reset on each connect.
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.version_mask = 0
        self.authorized = False
        self.job: Job | None = None
        self.job_difficulty = 1.0
        self._next_difficulty = 1.0  # Stratum's default until set_difficulty says otherwise
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        # Work state.
        self._gen = 0
        self._work: _Work | None = None
        self._en2_counter = 0
        self._roll_counter = 0
        self._paused = False
        self._wake = asyncio.Event()
        self._reconnect_to: tuple[str, int, float] | None = None
        self._leaving = False  # told to reconnect: submit nothing more on this connection
        self._leave_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ control

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

    async def start(self) -> None:
        """Start connecting; returns at once (see :attr:`ready`)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.worker)

    def pause(self) -> None:
        """Stop hashing and submitting (replies to what was sent still arrive)."""
        self._paused = True

    def resume(self) -> None:
        """Hash and submit again."""
        self._paused = False
        self._wake.set()

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop working, wait up to ``drain_timeout`` for in-flight replies, then disconnect.

        Requests still unanswered then are counted in ``stats.unanswered``.
        """
        self.pause()
        with contextlib.suppress(TimeoutError):
            await wait_until(lambda: not self._pending or not self.connected, drain_timeout)
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def disconnect(self) -> None:
        """Drop the connection now (the miner reconnects after ``reconnect_delay``)."""
        if self._writer is not None:
            self._writer.close()

    def send_raw(self, line: bytes) -> bool:
        """Write ``line`` as is (a newline is added when missing); False when not connected."""
        return self._write(line if line.endswith(b"\n") else line + b"\n")

    async def request(self, method: str, params: list[Any], timeout: float | None = None) -> Response:
        """Send a request with this miner's next id and return the reply.

        Raises :class:`ConnectionError` when not connected or when the connection ends
        first, :class:`TimeoutError` after ``timeout`` (default ``request_timeout``).
        """
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        if not self._send(method, params, _Pending(False, params, 0.0, future)):
            raise ConnectionError("not connected")
        return await asyncio.wait_for(future, timeout or self.config.request_timeout)

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
            self._reset_connection(writer)
            try:
                await self._session(reader)
            finally:
                self._connection_ended()
            await asyncio.sleep(self._next_wait())

    def _next_wait(self) -> float:
        """Where to reconnect and after how long: a client.reconnect target or the same pool."""
        target, self._reconnect_to = self._reconnect_to, None
        if target is None:
            return self.config.reconnect_delay
        self.host, self.port, wait = target
        return wait

    def _reset_connection(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._ids = itertools.count(1)
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.version_mask = 0
        self.authorized = False
        self.job = None
        self._next_difficulty = 1.0
        self._leaving = False
        self._gen += 1

    async def _session(self, reader: asyncio.StreamReader) -> None:
        """Read lines while the handshake and then the work loop run."""
        reader_task = asyncio.create_task(self._read_loop(reader))
        work_task: asyncio.Task[None] | None = None
        try:
            if await self._handshake():
                work_task = asyncio.create_task(self._work_loop())
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

    def _connection_ended(self) -> None:
        """Count what was left unanswered and forget the connection."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        self.stats.unanswered += len(self._pending)
        self._fail_futures()
        self._pending.clear()
        self.authorized = False
        self.job = None
        self._work = None
        self.ready.clear()

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        framer = LineFramer(self.config.max_line)
        try:
            while data := await reader.read(65536):
                for item in framer.feed(data):
                    if isinstance(item, LineTooLong):
                        self.stats.bad_lines += 1
                    else:
                        self._on_line(item)
        except OSError:
            pass
        finally:
            # Fail the handshake's futures at once rather than after its timeout.
            self._fail_futures()

    def _fail_futures(self) -> None:
        for pending in self._pending.values():
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(ConnectionError("connection closed before the reply"))

    # ------------------------------------------------------------------ handshake

    async def _call(self, method: str, params: list[Any]) -> Response:
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        if not self._send(method, params, _Pending(False, params, 0.0, future)):
            raise ConnectionError("not connected")
        return await asyncio.wait_for(future, self.config.request_timeout)

    async def _handshake(self) -> bool:
        """configure, subscribe, authorize, extranonce.subscribe; False when refused."""
        if self.config.version_rolling:
            reply = await self._call(
                "mining.configure",
                [
                    ["version-rolling", "subscribe-extranonce"],
                    {"version-rolling.mask": f"{REQUESTED_MASK:08x}", "version-rolling.min-bit-count": 2},
                ],
            )
            self.version_mask = _granted_mask(reply)
        subscribed = _subscribe_result(await self._call("mining.subscribe", [self.config.agent]))
        if subscribed is None:
            self.stats.handshake_failures += 1
            return False
        self.extranonce1, self.extranonce2_size = subscribed
        reply = await self._call("mining.authorize", [self.worker, self.config.password])
        if _decode_raw(reply.result) is not True:
            self.stats.handshake_failures += 1
            return False
        self.authorized = True
        self.stats.handshakes += 1
        await self._call("mining.extranonce.subscribe", [])  # refused or not, mine on
        self._job_changed()
        return True

    # ------------------------------------------------------------------ input

    def _on_line(self, line: bytes) -> None:
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
                self._on_response(message)
            case Notify():
                self._on_notify(message)
            case SetDifficulty():
                self._next_difficulty = message.params.difficulty  # for the next job
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
                self._write(msgspec.json.encode(reply) + b"\n")

    def _on_response(self, response: Response) -> None:
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

    def _on_notify(self, message: Notify) -> None:
        p = message.params
        try:
            job = Job.from_fields(p, seq=0, created=0.0)
        except JobError:
            self.stats.bad_lines += 1
            return
        self.stats.jobs += 1
        if self.config.keep_work_if_header_unchanged and _same_header(self.job, job):
            # minerd compares the 76 header bytes of the new work with its own and keeps
            # its work (job id and target included) when they are equal.
            self.stats.kept_work += 1
            return
        # Only the newest job is worked, so clean_jobs or not, older work stops here.
        self.job = job
        self.job_difficulty = self._next_difficulty
        self._job_changed()

    def _on_set_version_mask(self, message: SetVersionMask) -> None:
        try:
            mask = int(message.params.mask, 16)
        except ValueError:
            self.stats.bad_lines += 1
            return
        self.version_mask = mask & REQUESTED_MASK  # valid at once (BIP310)
        self._job_changed()

    def _on_set_extranonce(self, message: SetExtranonce) -> None:
        try:
            extranonce1 = bytes.fromhex(message.params.extranonce1)
        except ValueError:
            self.stats.bad_lines += 1
            return
        self.extranonce1 = extranonce1
        self.extranonce2_size = message.params.extranonce2_size
        self.job = None  # old jobs are void with another extranonce: wait for the next notify
        self._job_changed()

    def _on_reconnect(self, message: Reconnect) -> None:
        p = message.params
        if self.config.ignore_null_reconnect and not p.host:
            self.stats.ignored_reconnects += 1  # cpuminer: no host, not a reconnect
            return
        port = self.port
        if p.port is not None:
            with contextlib.suppress(ValueError):
                port = int(p.port)  # ckpool sends the port as a string
        wait = min(max(float(p.wait or 0.0), 0.0), MAX_RECONNECT_WAIT)
        self._reconnect_to = (p.host or self.host, port, wait)
        # Like careful firmware: no new shares, let the replies in flight arrive, then go.
        self._leaving = True
        self._leave_task = asyncio.get_running_loop().create_task(self._leave_when_answered())

    async def _leave_when_answered(self) -> None:
        with contextlib.suppress(TimeoutError):
            await wait_until(lambda: not self._pending or not self.connected, RECONNECT_DRAIN)
        self.disconnect()

    def _job_changed(self) -> None:
        self._gen += 1
        self._work = None
        if self.authorized and self.job is not None:
            self.ready.set()
            self._wake.set()

    # ------------------------------------------------------------------ output

    def _write(self, data: bytes) -> bool:
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        writer.write(data)
        return True

    def _send(self, method: str, params: list[Any], pending: _Pending) -> bool:
        request_id = next(self._ids)
        line = msgspec.json.encode({"id": request_id, "method": method, "params": params}) + b"\n"
        if not self._write(line):
            return False
        self._pending[request_id] = pending
        self.stats.requests_sent += 1
        return True

    def _submit(self, work: _Work, nonce: int) -> None:
        params: list[Any] = [self.worker, work.job.job_id, work.en2_hex, work.ntime_hex, f"{nonce:08x}"]
        if work.vbits is not None:
            params.append(work.vbits)  # the 6th param once version rolling is granted
        if self._send("mining.submit", params, _Pending(True, params, work.difficulty, None)):
            self.stats.shares_submitted += 1

    # ------------------------------------------------------------------ work

    def _current_work(self) -> _Work | None:
        """The unit to search now, building a fresh one on a new job or an exhausted unit."""
        if self._paused or self._leaving or not self.authorized or self.job is None:
            return None
        work = self._work
        if work is None or work.gen != self._gen or work.nonce > 0xFFFFFFFF:
            work = self._work = self._new_work(self.job)
        return work

    def _new_work(self, job: Job) -> _Work:
        """Next extranonce2 from the miner's counter and next rolled version bits."""
        size = self.extranonce2_size
        extranonce2 = (self._en2_counter % (1 << (8 * size))).to_bytes(size, "big")
        self._en2_counter += 1
        mask = self.version_mask
        if mask:
            bits = spread_bits(self._roll_counter, mask)
            self._roll_counter += 1
            version = (job.version & ~mask & 0xFFFFFFFF) | bits
            vbits: str | None = f"{bits:08x}"
        else:
            version, vbits = job.version, None
        return _Work(
            job,
            difficulty=self.job_difficulty,
            gen=self._gen,
            extranonce1=self.extranonce1,
            extranonce2=extranonce2,
            version=version,
            vbits=vbits,
        )

    async def _work_loop(self) -> None:
        """Work in slices at the configured rate; never burst to catch up after a stall."""
        loop = asyncio.get_running_loop()
        rate = self.config.share_rate if self.config.no_hash else self.config.hashrate
        per_slice = max(1, min(MAX_BATCH, int(rate * BATCH_SECONDS)))
        slot = loop.time()
        while True:
            work = self._current_work()
            if work is None:
                self._wake.clear()
                await self._wake.wait()
                slot = loop.time()
                continue
            slot = max(slot, loop.time() - 1.0)
            count = min(per_slice, 0x100000000 - work.nonce)
            if self.config.no_hash:
                self._fake_shares(work, count)
            else:
                self._hash(work, count)
            slot += count / rate
            writer = self._writer
            if writer is not None:
                with contextlib.suppress(ConnectionError):  # the reader sees the end too
                    await writer.drain()  # backpressure: a slow server slows the miner
            await asyncio.sleep(max(0.0, slot - loop.time()))

    def _hash(self, work: _Work, count: int) -> None:
        """Search ``count`` nonces of ``work``; submit every share found."""
        mid, tail, target = work.mid, work.tail, work.target
        pack, sha, from_bytes = _U32.pack, _sha256, int.from_bytes
        start = work.nonce
        found: list[tuple[int, int]] = []
        for nonce in range(start, start + count):
            state = mid.copy()
            state.update(tail + pack(nonce))
            value = from_bytes(sha(state.digest()).digest(), "little")
            if value <= target:
                found.append((nonce, value))
        work.nonce = start + count
        self.stats.hashes += count
        network_target = work.job.network_target
        for nonce, value in found:
            if value <= network_target:
                self.stats.block_candidates += 1
            self._submit(work, nonce)

    def _fake_shares(self, work: _Work, count: int) -> None:
        """Load mode: distinct shares without hashing (valid only at a target of 2**256-1)."""
        start = work.nonce
        for nonce in range(start, start + count):
            self._submit(work, nonce)
        work.nonce = start + count


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
