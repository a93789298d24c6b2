"""The bundled test pool: a small but real Stratum V1 pool server (``stratum-proxy pool``).

It issues synthetic jobs with real structure: a coinbase transaction split into coinb1 and
coinb2 around the extranonce (BIP34 height push, a tag, one payout output), a merkle branch
computed from random txids (0 to 12 levels), a prevhash that changes on each "new block",
version ``20000000`` and configurable nbits, so tests can make block candidates common.

Every share is validated with :mod:`proxy.mining` exactly like the proxy validates them
(one :class:`~proxy.mining.job.JobBook` for the pool, one
:class:`~proxy.mining.share.ShareValidator` per connection whose extranonce1 is the one
this pool handed out) and answered ``true`` or with the proper error code. Counters record
acceptances, rejections by reason, block candidates and, per worker, the credited work
(sum of the difficulty of accepted shares), which tests compare with the hashes the
simulator actually did.

Tests drive it in-process through :class:`TestPool`: push jobs, resend the current one,
change difficulty, version mask or extranonce, send ``client.reconnect``, drop every
connection, stop and resume listening, go silent. Bad input never takes it down: decoding
uses the codec's peer errors, and a byte stream that is not Stratum closes only that
connection.

Some real pools' quirks can be switched on, each by one :class:`PoolConfig` field and all
off by default (ckpool 0.9.9's: integer-only ``mining.suggest_difficulty``, dropped
pre-authorize ``mining.extranonce.subscribe``, ``client.reconnect`` after a reject, blocks
that must meet the share difficulty), so the proxy can be tested against them.

Inside, each connection is a :class:`PoolSession` (its state and what the pool pushes to
it); its :class:`SessionRequests` answers what its miner sends, the pool's
:class:`ShareJudge` judges and credits every submit, and :class:`Extranonce1s` hands out
extranonce1s and finds the one a returning client asks back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import random
import signal
import ssl
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Final, TypeVar, cast

import msgspec

from proxy.mining.hashing import prevhash_to_stratum, sha256d
from proxy.mining.job import Job, JobBook, JobIds
from proxy.mining.share import ShareValidator, Verdict
from proxy.mining.target import DIFF1_TARGET, target_from_difficulty
from proxy.runner import run
from proxy.stratum.codec import (
    TRUE_REPLY,
    ReplyTail,
    decode_miner_line,
    encode_notify,
    error_reply,
    error_tail,
    result_tail,
)
from proxy.stratum.errors import ErrorCode, FramingError, LineTooLong, PeerError, RequestId
from proxy.stratum.framing import DEFAULT_MAX_LINE, LineFramer
from proxy.stratum.messages import (
    Authorize,
    Configure,
    ExtranonceSubscribe,
    GetTransactions,
    Notify,
    NotifyParams,
    Response,
    ResultReply,
    SetDifficulty,
    SetDifficultyParams,
    SetExtranonce,
    SetExtranonceParams,
    SetVersionMask,
    SetVersionMaskParams,
    Submit,
    Subscribe,
    SuggestDifficulty,
    SuggestTarget,
)

DEFAULT_VERSION_MASK: Final = 0x1FFFE000
"""BIP320's general-purpose bits: the mask every real pool grants."""

JOB_VERSION: Final = 0x20000000
"""BIP9 top bits set, no deployment signalled: what current blocks carry."""

DEFAULT_NBITS: Final = 0x1D00FFFF
"""Difficulty 1 as the network target: no test hash ever meets it by accident."""

EXTRANONCE1_SIZE: Final = 4
"""Bytes of extranonce1 per connection, as ckpool and most pools hand out."""

POOL_TAG: Final = b"/stratum-proxy test pool/"
"""Pushed in the coinbase scriptSig after the extranonce, like a pool's signature."""

BLOCK_SUBSIDY: Final = 312_500_000
"""3.125 BTC in satoshi, the subsidy since the 2024 halving."""

MAX_WRITE_BUFFER: Final = 4 * 1024 * 1024
"""A connection whose unread output exceeds this is dropped: a test pool must not grow
without bound behind one client that stopped reading."""

REJECTED_BY_POOL: Final = "rejected_by_pool"
"""The rejection reason counted for shares refused by ``reject_every``."""

NOT_SUBSCRIBED: Final = "not_subscribed"
"""The rejection reason counted for a submit before ``mining.subscribe``."""

ABOVE_TARGET: Final = "above_target"
"""The rejection reason counted for a block candidate below the share difficulty
(``PoolConfig.blocks_need_share_difficulty``)."""

MAX_RECORDED: Final = 10_000
"""Entries kept in a log the peer controls (suggested difficulties, responses): a miner
spamming them must not grow the pool's memory without bound."""

MAX_BLOCKS_PRINTED: Final = 20
"""Block candidates listed one per line in the exit summary; an easy nbits makes thousands."""

T = TypeVar("T")

_VERDICT_TAILS: Final = {v: error_tail(v.error_code, v.error_message) for v in Verdict if not v.accepted}
_POOL_REJECT_TAIL: Final = error_tail(ErrorCode.OTHER, "Rejected by test pool")
_NOT_SUBSCRIBED_TAIL: Final = error_tail(ErrorCode.NOT_SUBSCRIBED, "Not subscribed")
_EMPTY_LIST_TAIL: Final = result_tail([])
# Older ckpool's reject shape: result false, no error, the reason in its own member.
_ABOVE_TARGET_TAIL: Final = ReplyTail(b',"result":false,"error":null,"reject-reason":"Above target"}\n')
# client.reconnect with nothing: ckpool's "reconnect" command, back to this same pool.
_RECONNECT_HERE: Final = b'{"id":null,"method":"client.reconnect","params":[]}\n'


class _RawParams(msgspec.Struct):
    """Only the params of a request, as generic JSON: ``3`` decodes to an int, ``3.0`` to a
    float, which is the distinction jansson's ``json_is_integer`` makes in ckpool."""

    params: list[object] = msgspec.field(default_factory=list)


_RAW_PARAMS_DECODER: Final = msgspec.json.Decoder(_RawParams)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class PoolConfig:
    """Everything the test pool can be told; the defaults behave like a mainnet pool."""

    host: str = "127.0.0.1"
    port: int = 0
    difficulty: float = 1.0
    extranonce2_size: int = 8
    job_interval: float = 30.0
    block_interval: float = 600.0
    version_mask: int = DEFAULT_VERSION_MASK
    reject_every: int = 0
    nbits: int = DEFAULT_NBITS
    max_branch: int = 12
    new_block_on_find: bool = False
    seed: int | None = None
    max_line: int = DEFAULT_MAX_LINE
    tls: ssl.SSLContext | None = None  # serve stratum+ssl with this server context

    # Quirks of real pools, each off by default (the defaults behave like a clean pool).
    integer_suggest_only: bool = False
    """ckpool 0.9.9: ``mining.suggest_difficulty`` is parsed as a JSON integer only. Any
    other number (``0.5``, ``3.3``, even ``3.0``) is not applied nor recorded: it counts in
    ``PoolStats.suggest_parse_failures`` and gets no reply at all (ckpool logs "Failed to
    parse suggest_difficulty" and answers nothing). Integers are recorded as usual."""
    strict_extranonce_subscribe: bool = False
    """ckpool 0.9.9: ``mining.extranonce.subscribe`` before ``mining.authorize`` is dropped:
    no reply, the connection is not extranonce-subscribed, and
    ``PoolStats.dropped_extranonce_subscribe`` counts it. After authorize it works."""
    reconnect_after_reject: bool = False
    """ckpool 0.9.9: a rejected share's reply is followed by ``client.reconnect`` with
    ``[]`` in the same write (the client reads both at once), then the pool closes the
    connection (buffered output still flushed). ``PoolStats.reconnects_after_reject``
    counts it. Every reject does it, whatever the reason."""
    reconnect_first: bool = False
    """With ``reconnect_after_reject``: the ``client.reconnect`` comes first in that write,
    the reject after it (a client that acts on the reconnect at once loses the verdict)."""
    blocks_need_share_difficulty: bool = False
    """ckpool 0.9.9 on regtest: a share that meets the network target but not the
    connection's share difficulty is rejected with the older ckpool reply
    ``{"result": false, "error": null, "reject-reason": "Above target"}`` (counted as
    :data:`ABOVE_TARGET`) and is not a block. Without it such a share is credited as a
    block, the way the validator judges it."""

    def __post_init__(self) -> None:
        target_from_difficulty(self.difficulty)  # raises on a non-positive or non-finite value
        if not 1 <= self.extranonce2_size <= 16:
            raise ValueError("extranonce2_size must be 1..16")
        if self.job_interval <= 0 or self.block_interval <= 0:
            raise ValueError("job_interval and block_interval must be positive")
        if not 0 <= self.version_mask <= 0xFFFFFFFF or not 0 <= self.nbits <= 0xFFFFFFFF:
            raise ValueError("version_mask and nbits must be 32-bit values")
        if self.reject_every < 0:
            raise ValueError("reject_every must be >= 0")
        if not 0 <= self.max_branch <= 12:
            raise ValueError("max_branch must be 0..12")


def nbits_for_difficulty(difficulty: float) -> int:
    """Compact nbits whose network target is about ``DIFF1 / difficulty`` (rounded down).

    Lets a test make block candidates as common as it needs: with shares at difficulty
    ``d`` and nbits for ``100 * d``, about one share in a hundred is a block.
    """
    target = target_from_difficulty(difficulty)
    size = (target.bit_length() + 7) // 8
    mantissa = target >> (8 * (size - 3)) if size >= 3 else target << (8 * (3 - size))
    if mantissa & 0x00800000:  # the sign bit: shift one byte to keep the value positive
        mantissa >>= 8
        size += 1
    return (size << 24) | mantissa


# --------------------------------------------------------------------------- statistics


@dataclass
class WorkerStats:
    """Per-worker counters; ``credited_work`` is the sum of accepted share difficulties."""

    accepted: int = 0
    rejected: int = 0
    credited_work: float = 0.0
    blocks: int = 0


@dataclass(frozen=True)
class BlockFound:
    """A share that met the network target."""

    worker: str
    job_id: str
    height: int
    hash: str


@dataclass
class PoolStats:
    """Everything the pool counted since it was created."""

    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    credited_work: float = 0.0
    blocks: list[BlockFound] = field(default_factory=list)
    workers: dict[str, WorkerStats] = field(default_factory=dict)
    connections: int = 0
    jobs: int = 0
    suggested_difficulties: list[float] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    # Counted only with the PoolConfig quirk of the same subject switched on.
    suggest_parse_failures: int = 0  # non-integer suggest_difficulty (integer_suggest_only)
    dropped_extranonce_subscribe: int = 0  # before authorize (strict_extranonce_subscribe)
    reconnects_after_reject: int = 0  # connections closed after a reject (reconnect_after_reject)

    @property
    def rejected_total(self) -> int:
        """Every rejected share, whatever the reason."""
        return sum(self.rejected.values())

    @staticmethod
    def record(log: list[T], item: T) -> None:
        """Append to a log a peer can fill, keeping at most :data:`MAX_RECORDED` entries."""
        if len(log) < MAX_RECORDED:
            log.append(item)

    def worker(self, name: str) -> WorkerStats:
        """The counters of one worker (created on first use)."""
        stats = self.workers.get(name)
        if stats is None:
            stats = self.workers[name] = WorkerStats()
        return stats

    def hashrate(self, now: float | None = None) -> float:
        """Hashes per second implied by the credited work (one difficulty-1 share ~ 2**32 hashes)."""
        elapsed = (time.monotonic() if now is None else now) - self.started
        return self.credited_work * 2**256 / DIFF1_TARGET / elapsed if elapsed > 0 else 0.0

    def summary(self) -> str:
        """One line for the terminal."""
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())) or "none"
        return (
            f"accepted {self.accepted} | rejected {self.rejected_total} ({reasons}) | "
            f"blocks {len(self.blocks)} | workers {len(self.workers)} | connections {self.connections} | "
            f"jobs {self.jobs} | credited work {self.credited_work:.6g} (~{_si(self.hashrate())}H/s)"
        )


def _si(value: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.1f} "


# --------------------------------------------------------------------------- jobs


def _script_num(value: int) -> bytes:
    """A non-negative CScriptNum (BIP34 height): minimal little-endian, sign bit kept clear."""
    out = bytearray()
    while value:
        out.append(value & 0xFF)
        value >>= 8
    if out and out[-1] & 0x80:
        out.append(0)
    return bytes(out)


def _push(data: bytes) -> bytes:
    """A direct script push (data shorter than 76 bytes)."""
    return bytes((len(data),)) + data


def _varint(value: int) -> bytes:
    if value < 0xFD:
        return bytes((value,))
    return b"\xfd" + struct.pack("<H", value)


def merkle_branch(txids: list[bytes]) -> list[bytes]:
    """The stratum merkle branch of the coinbase in a block whose other txids are ``txids``.

    The coinbase is leaf 0, so the branch is the sibling at index 1 of each level, and an
    odd level repeats its last hash (Bitcoin's rule).
    """
    branch: list[bytes] = []
    level = [b"", *txids]  # b"" stands for the coinbase, whose hash the miner computes
    while len(level) > 1:
        branch.append(level[1])
        if len(level) % 2:
            level.append(level[-1])
        level = [b"", *(sha256d(level[i] + level[i + 1]) for i in range(2, len(level), 2))]
    return branch


class JobFactory:
    """Makes well-formed jobs: a real coinbase split around the extranonce, a real branch."""

    def __init__(self, rng: random.Random, *, nbits: int, extranonce_size: int, max_branch: int) -> None:
        self._rng = rng
        self.nbits = nbits
        self.extranonce_size = extranonce_size
        self.max_branch = max_branch
        self.height = rng.randrange(850_000, 950_000)
        self.prevhash = self._block_hash()
        self._payout = b"\x00\x14" + rng.randbytes(20)  # P2WPKH to a random key hash
        self._counter = 0

    def _block_hash(self) -> bytes:
        """A random hash that looks like a block's: its top 32 bits (the last bytes) are zero."""
        return self._rng.randbytes(28) + b"\0\0\0\0"

    def new_block(self) -> None:
        """Move to the next height with a new previous block."""
        self.height += 1
        self.prevhash = self._block_hash()

    def coinbase_parts(self) -> tuple[bytes, bytes]:
        """coinb1 and coinb2 for the current height; a counter makes every job's coinbase unique."""
        self._counter += 1
        height_push = _push(_script_num(self.height))
        extra_push = _push(struct.pack("<I", self._counter & 0xFFFFFFFF))
        tag_push = _push(POOL_TAG)
        script_len = len(height_push) + len(extra_push) + 1 + self.extranonce_size + len(tag_push)
        coinb1 = b"".join(
            (
                struct.pack("<I", 1),  # tx version
                b"\x01",  # one input: the coinbase input
                b"\0" * 32 + b"\xff\xff\xff\xff",  # null prevout
                _varint(script_len),
                height_push,
                extra_push,
                bytes((self.extranonce_size,)),  # push opcode for extranonce1 || extranonce2
            )
        )
        coinb2 = b"".join(
            (
                tag_push,
                b"\xff\xff\xff\xff",  # sequence
                b"\x01",  # one output
                struct.pack("<q", BLOCK_SUBSIDY + self._rng.randrange(1_000_000)),
                _varint(len(self._payout)),
                self._payout,
                b"\0\0\0\0",  # lock time
            )
        )
        return coinb1, coinb2

    def branch(self) -> list[bytes]:
        """A branch for a random block: depth uniform in 0..max_branch, txids random."""
        depth = self._rng.randint(0, self.max_branch)
        count = 0 if depth == 0 else self._rng.randint(1 << (depth - 1), (1 << depth) - 1)
        return merkle_branch([self._rng.randbytes(32) for _ in range(count)])

    def make(self, job_id: str, seq: int, *, clean: bool, ntime: int) -> tuple[Job, bytes]:
        """A new job and its ``mining.notify`` line."""
        coinb1, coinb2 = self.coinbase_parts()
        params = NotifyParams(
            job_id=job_id,
            prevhash=prevhash_to_stratum(self.prevhash),
            coinb1=coinb1.hex(),
            coinb2=coinb2.hex(),
            merkle_branch=[h.hex() for h in self.branch()],
            version=f"{JOB_VERSION:08x}",
            nbits=f"{self.nbits:08x}",
            ntime=f"{ntime:08x}",
            clean_jobs=clean,
        )
        job = Job.from_fields(params, seq=seq, created=time.monotonic())
        return job, encode_notify(params)


# --------------------------------------------------------------------------- one connection


def _integer_param(line: bytes) -> bool:
    """True when the first param of a request line is a JSON integer (``3``, not ``3.0``)."""
    try:
        params = _RAW_PARAMS_DECODER.decode(line).params
    except msgspec.DecodeError:
        return False
    return bool(params) and type(params[0]) is int


def _notification(method: str, params: list[object]) -> bytes:
    return msgspec.json.encode({"id": None, "method": method, "params": params}) + b"\n"


def _set_difficulty_line(difficulty: float) -> bytes:
    return msgspec.json.encode(SetDifficulty(params=SetDifficultyParams(difficulty))) + b"\n"


class PoolSession(asyncio.Protocol):
    """One miner (or proxy) connection to the test pool.

    A plain :class:`asyncio.Protocol`: every line is handled synchronously in
    ``data_received``, so the pool needs no task per connection.
    """

    def __init__(self, pool: TestPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.framer = LineFramer(pool.config.max_line)
        self.extranonce1 = b""
        self.extranonce2_size = pool.config.extranonce2_size
        self.validator: ShareValidator | None = None
        self.workers: set[str] = set()
        self.user_agent = ""
        self.miner_mask: int | None = None  # None until version rolling was negotiated
        self.version_mask = 0
        self.extranonce_subscribed = False
        self.suggested_difficulty: float | None = None
        self.difficulty = pool.difficulty
        self.started = False  # set_difficulty and the first notify were sent
        self.closed = False
        # Per job id sent here: the lowest difficulty in force since, which is what the
        # validator judges that job's shares at (docs/protocol.md, "How a share is checked", step 7).
        self.job_difficulty: dict[str, float] = {}
        self.requests = SessionRequests(self)

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        # A cast, not an isinstance check: uvloop's transports do not subclass asyncio's.
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.pool._attach(self)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self.closed = True
        self.pool._detach(self)

    def data_received(self, data: bytes) -> None:  # noqa: D102
        for item in self.framer.feed(data):
            if self.closed:
                return
            if isinstance(item, LineTooLong):
                self.reply(error_reply(item))
            else:
                self.requests.on_line(item)

    # ------------------------------------------------------------------ output

    def write(self, data: bytes) -> None:
        """Write to the miner; drop a connection that stopped reading."""
        transport = self.transport
        if transport is None or self.closed:
            return
        transport.write(data)
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.abort()

    def reply(self, line: bytes) -> None:
        """Write a reply, unless the pool was told to mute them."""
        if not self.pool.mute_replies:
            self.write(line)

    def close(self) -> None:
        """Close after writing what is buffered."""
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        """Close at once, discarding buffered output (a crashed pool)."""
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    def send_job(self, job: Job, line: bytes) -> None:
        """Send a notify and remember the difficulty its shares are judged at."""
        self.job_difficulty[job.job_id] = self.difficulty
        book_jobs = self.pool.book.jobs
        if len(self.job_difficulty) > 2 * len(book_jobs) + 8:
            # Forget jobs the book has voided; their shares are rejected before credit anyway.
            self.job_difficulty = {k: v for k, v in self.job_difficulty.items() if k in book_jobs}
        self.write(line)

    def resend_job(self, job: Job, line: bytes) -> None:
        """Send a job again: its shares stay judged at the difficulty recorded when it was
        first sent here (a later, higher difficulty does not apply to it)."""
        if job.job_id in self.job_difficulty:
            self.write(line)
        else:
            self.send_job(job, line)

    def set_difficulty(self, difficulty: float, from_seq: int) -> None:
        """A new difficulty for jobs with ``seq >= from_seq``; the caller sends a job next."""
        self.difficulty = difficulty
        for job_id, old in self.job_difficulty.items():
            self.job_difficulty[job_id] = min(old, difficulty)
        if self.validator is not None:
            self.validator.set_difficulty(difficulty, from_seq)
        if self.started:
            self.write(_set_difficulty_line(difficulty))

    def difficulty_of(self, job: Job) -> float:
        """The difficulty shares on ``job`` are credited at on this connection."""
        return self.job_difficulty.get(job.job_id, self.difficulty)

    def change_version_mask(self, pool_mask: int) -> bool:
        """Grant ``pool_mask & miner mask`` at once (BIP310) and tell the miner; False when
        this connection did not negotiate version rolling."""
        if self.miner_mask is None or self.closed:
            return False
        self.version_mask = pool_mask & self.miner_mask
        if self.validator is not None:
            self.validator.version_mask = self.version_mask
        params = SetVersionMaskParams(f"{self.version_mask:08x}")
        self.write(msgspec.json.encode(SetVersionMask(params=params)) + b"\n")
        return True

    def change_extranonce(self, extranonce1: bytes, extranonce2_size: int | None) -> None:
        """Move to another extranonce1 (and extranonce2 size) and tell the miner."""
        assert self.validator is not None  # only subscribed connections are told
        size = self.extranonce2_size if extranonce2_size is None else extranonce2_size
        self.extranonce1 = extranonce1
        self.extranonce2_size = size
        self.validator.set_extranonce(self.pool.book, extranonce1, size)
        params = SetExtranonceParams(extranonce1.hex(), size)
        self.write(msgspec.json.encode(SetExtranonce(params=params)) + b"\n")

    def maybe_start(self) -> None:
        """After subscribe and authorize: set_difficulty, then the current job."""
        if self.started or self.validator is None or not self.workers:
            return
        self.started = True
        self.write(_set_difficulty_line(self.difficulty))
        current = self.pool.current
        if current is not None:
            self.send_job(*current)


# --------------------------------------------------------------------------- requests


class SessionRequests:
    """How the pool answers what the miner of one connection sends, quirks included.

    Every request is answered here but ``mining.submit``, which goes to the pool's
    :class:`ShareJudge`; the answers set the connection's state (extranonce1, version
    mask, workers, subscriptions) on its :class:`PoolSession`.
    """

    def __init__(self, session: PoolSession) -> None:
        self.session = session
        self.pool = session.pool

    def on_line(self, line: bytes) -> None:
        """Answer one line the miner sent."""
        try:
            message = decode_miner_line(line)
        except FramingError:
            # Not Stratum (a TLS ClientHello, HTTP, garbage): close, as pools do. bfgminer
            # relies on exactly this to fall back to plain Stratum.
            self.session.close()
            return
        except PeerError as exc:
            self.session.reply(error_reply(exc))
            return
        match message:
            case Submit():
                self.pool.judge.submit(self.session, message)
            case Response():
                self.pool.stats.record(self.pool.stats.responses, message)  # e.g. to client.get_version
            case Subscribe():
                self._on_subscribe(message)
            case Authorize():
                self._on_authorize(message)
            case Configure():
                self._on_configure(message)
            case SuggestDifficulty():
                self._on_suggest_difficulty(message, line)
            case GetTransactions():
                self.session.reply(_EMPTY_LIST_TAIL.reply(message.id))
            case ExtranonceSubscribe():
                self._on_extranonce_subscribe(message)
            case SuggestTarget():
                self.session.reply(TRUE_REPLY.reply(message.id))

    def _result(self, request_id: RequestId, result: object) -> None:
        self.session.reply(msgspec.json.encode(ResultReply(id=request_id, result=result)) + b"\n")

    def _on_configure(self, message: Configure) -> None:
        result: dict[str, object] = {}
        params = message.params.parameters
        for extension in message.params.extensions:
            if extension == "version-rolling":
                result.update(self._grant_version_rolling(params.get("version-rolling.mask")))
            elif extension == "subscribe-extranonce":
                self.session.extranonce_subscribed = True
                result[extension] = True
            else:
                result[extension] = False  # minimum-difficulty, info, anything else
        self._result(message.id, result)

    def _grant_version_rolling(self, requested: object) -> dict[str, object]:
        """BIP310: grant ``pool_mask & miner_mask``; a missing miner mask means ffffffff."""
        pool_mask = self.pool.version_mask
        if pool_mask == 0:
            return {"version-rolling": False}
        try:
            miner_mask = 0xFFFFFFFF if requested is None else int(str(requested), 16) & 0xFFFFFFFF
        except ValueError:
            return {"version-rolling": "invalid version-rolling.mask"}
        session = self.session
        session.miner_mask = miner_mask
        session.version_mask = pool_mask & miner_mask
        if session.validator is not None:
            session.validator.version_mask = session.version_mask
        return {"version-rolling": True, "version-rolling.mask": f"{session.version_mask:08x}"}

    def _on_subscribe(self, message: Subscribe) -> None:
        session = self.session
        session.user_agent = message.params.user_agent
        if session.validator is None:
            extranonce1s = self.pool.extranonce1s
            resumed = extranonce1s.resumable(message.params.session_id, self.pool.sessions)
            session.extranonce1 = resumed if resumed is not None else extranonce1s.new()
            session.validator = ShareValidator(
                self.pool.book,
                extranonce1=session.extranonce1,
                extranonce2_size=session.extranonce2_size,
                difficulty=session.difficulty,
                version_mask=session.version_mask,
            )
            session.validator.workers = session.workers  # share the set: authorize may come first
        sid = session.extranonce1.hex()
        result = [
            [["mining.set_difficulty", sid], ["mining.notify", sid]],
            sid,
            session.extranonce2_size,
        ]
        self._result(message.id, result)
        session.maybe_start()

    def _on_authorize(self, message: Authorize) -> None:
        if self.pool.config.strict_extranonce_subscribe:
            # ckpool authorises in another thread: lines already read behind the authorize
            # (an extranonce.subscribe sent with it) still see an unauthorised client.
            asyncio.get_running_loop().call_soon(self._authorized, message)
            return
        self._authorized(message)

    def _authorized(self, message: Authorize) -> None:
        session = self.session
        if session.closed:
            return
        session.workers.add(message.params.username)
        session.reply(TRUE_REPLY.reply(message.id))
        session.maybe_start()

    def _on_extranonce_subscribe(self, message: ExtranonceSubscribe) -> None:
        if self.pool.config.strict_extranonce_subscribe and not self.session.workers:
            self.pool.stats.dropped_extranonce_subscribe += 1  # ckpool: not authorized, no answer
            return
        self.session.extranonce_subscribed = True
        self.session.reply(TRUE_REPLY.reply(message.id))

    def _on_suggest_difficulty(self, message: SuggestDifficulty, line: bytes) -> None:
        if self.pool.config.integer_suggest_only and not _integer_param(line):
            self.pool.stats.suggest_parse_failures += 1  # ckpool: not parsed, nothing sent
            return
        # Recorded only: the test pool's difficulty is what the test sets.
        self.session.suggested_difficulty = message.params.difficulty
        self.pool.stats.record(self.pool.stats.suggested_difficulties, message.params.difficulty)
        self.session.reply(TRUE_REPLY.reply(message.id))


# --------------------------------------------------------------------------- shares


class ShareJudge:
    """Judges every submit a pool receives and credits the accepted ones.

    One per pool: the validator of the share's connection gives the verdict, then the
    pool's own rules may still refuse it (``reject_every``, and with
    ``blocks_need_share_difficulty`` a block below the share difficulty). Accepted work is
    credited at the difficulty the connection recorded for the share's job.
    """

    def __init__(self, pool: TestPool) -> None:
        self.pool = pool
        self._valid_shares = 0

    def submit(self, session: PoolSession, message: Submit) -> None:
        """Answer one ``mining.submit`` on ``session`` and count it."""
        p = message.params
        validator = session.validator
        stats = self.pool.stats
        if validator is None:
            stats.rejected[NOT_SUBSCRIBED] += 1
            self._send_reject(session, _NOT_SUBSCRIBED_TAIL.reply(message.id))
            return
        verdict = validator.check(p.worker, p.job_id, p.extranonce2, p.ntime, p.nonce, p.version_bits)
        if not verdict.accepted:
            self._reject(session, message.id, p.worker, verdict.reason, _VERDICT_TAILS[verdict])
            return
        job = validator.job
        assert job is not None  # check() sets it before any acceptance
        block = verdict is Verdict.BLOCK_CANDIDATE
        if block and self._below_share_difficulty(session, job, validator.hash_int):
            self._reject(session, message.id, p.worker, ABOVE_TARGET, _ABOVE_TARGET_TAIL)
            return
        if self._pool_rejects():
            self._reject(session, message.id, p.worker, REJECTED_BY_POOL, _POOL_REJECT_TAIL)
            return
        self._credit(session, p.worker, job, block, validator.hash_int)
        session.reply(TRUE_REPLY.reply(message.id))
        if block and self.pool.config.new_block_on_find:
            self.pool.new_job(clean=True)

    def _pool_rejects(self) -> bool:
        """True for every ``reject_every``-th valid share, or all of them in a storm."""
        if self.pool.reject_storm:
            return True
        every = self.pool.config.reject_every
        if not every:
            return False
        self._valid_shares += 1
        return self._valid_shares % every == 0

    def _below_share_difficulty(self, session: PoolSession, job: Job, hash_int: int) -> bool:
        """With ``blocks_need_share_difficulty``: a block candidate that misses the share
        target it would be credited at (ckpool checks the share target before the network's)."""
        if not self.pool.config.blocks_need_share_difficulty:
            return False
        return hash_int > target_from_difficulty(session.difficulty_of(job))

    def _reject(
        self, session: PoolSession, request_id: RequestId, worker: str, reason: str, tail: ReplyTail
    ) -> None:
        stats = self.pool.stats
        stats.rejected[reason] += 1
        if worker in session.workers:  # never create stats for names nobody authorized
            stats.worker(worker).rejected += 1
        self._send_reject(session, tail.reply(request_id))

    def _send_reject(self, session: PoolSession, reply: bytes) -> None:
        """Write a reject reply; with ``reconnect_after_reject``, send the connection away."""
        pool = self.pool
        if not pool.config.reconnect_after_reject:
            session.reply(reply)
            return
        # One write, so the client reads the verdict and the reconnect together, as it does
        # from ckpool; close() flushes what is buffered before the socket goes.
        pool.stats.reconnects_after_reject += 1
        if pool.mute_replies:
            session.write(_RECONNECT_HERE)
        else:
            session.write(_RECONNECT_HERE + reply if pool.config.reconnect_first else reply + _RECONNECT_HERE)
        session.close()

    def _credit(self, session: PoolSession, worker: str, job: Job, block: bool, hash_int: int) -> None:
        stats = self.pool.stats
        difficulty = session.difficulty_of(job)
        worker_stats = stats.worker(worker)
        stats.accepted += 1
        stats.credited_work += difficulty
        worker_stats.accepted += 1
        worker_stats.credited_work += difficulty
        if block:
            worker_stats.blocks += 1
            stats.blocks.append(BlockFound(worker, job.job_id, self.pool.factory.height, f"{hash_int:064x}"))


# --------------------------------------------------------------------------- extranonce1s


class Extranonce1s:
    """The extranonce1s a pool hands out, one per connection, and which may be asked back."""

    def __init__(self, first: int) -> None:
        self._next = itertools.count(first)
        self._issued: set[bytes] = set()  # handed out: what a resume may ask back

    def new(self) -> bytes:
        """A 4-byte extranonce1 no other connection of this pool ever had (until 2**32)."""
        extranonce1 = (next(self._next) & 0xFFFFFFFF).to_bytes(EXTRANONCE1_SIZE, "big")
        if len(self._issued) < MAX_RECORDED:
            self._issued.add(extranonce1)
        return extranonce1

    def resumable(self, session_id: str | None, sessions: list[PoolSession]) -> bytes | None:
        """The extranonce1 a returning client asks back with its session id (ckpool's
        resume: the id is the extranonce1 it was given), if no open connection holds it."""
        if not session_id or len(session_id) != 2 * EXTRANONCE1_SIZE:
            return None
        try:
            wanted = bytes.fromhex(session_id)
        except ValueError:
            return None
        if wanted not in self._issued or any(s.extranonce1 == wanted and not s.closed for s in sessions):
            return None
        return wanted


# --------------------------------------------------------------------------- the pool


class TestPool:
    """A real Stratum V1 pool on a TCP port, for users and for end-to-end tests.

    ``await start()`` listens (port 0 picks a free port, see :attr:`port`) and starts the
    job timer; ``await stop()`` closes everything. The methods below act at once on every
    connection, so a test can script an upstream pool's behaviour.
    """

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, config: PoolConfig | None = None) -> None:
        self.config = config or PoolConfig()
        seed = self.config.seed
        self.rng = random.Random(seed)
        self.stats = PoolStats()
        # While True every valid share is refused ("Rejected by pool"): a pool that is up
        # but not crediting work, for health tests. Set and cleared by the test.
        self.reject_storm = False
        self.book = JobBook(JobIds())
        self.factory = JobFactory(
            self.rng,
            nbits=self.config.nbits,
            extranonce_size=EXTRANONCE1_SIZE + self.config.extranonce2_size,
            max_branch=self.config.max_branch,
        )
        self.difficulty = self.config.difficulty
        self.version_mask = self.config.version_mask
        self.sessions: list[PoolSession] = []
        self.current: tuple[Job, bytes] | None = None
        self.silent_jobs = False
        self.mute_replies = False
        self.host = self.config.host
        self.port = self.config.port
        # Job ids look like ckpool's (8 hex of instance, 8 of counter): two pools in one
        # test never issue the same id, so a share sent to the wrong pool is "not found".
        self._id_prefix = f"{self.rng.getrandbits(32):08x}"
        self.extranonce1s = Extranonce1s(self.rng.getrandbits(32))
        self.judge = ShareJudge(self)
        self._server: asyncio.Server | None = None
        self._timer: asyncio.Task[None] | None = None
        self._last_block = time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """``stratum+tcp://host:port`` (``stratum+ssl://`` with TLS) of the listening socket."""
        scheme = "stratum+ssl" if self.config.tls is not None else "stratum+tcp"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def listening(self) -> bool:
        """True while new connections are accepted."""
        return self._server is not None

    async def start(self) -> None:
        """Make the first job, listen, and start the job timer."""
        if self.current is None:
            self.new_job(clean=True)
        await self.listen()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._job_timer(), name="test-pool-jobs")

    async def stop(self) -> None:
        """Stop listening, close every connection, stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        await self.stop_listening()
        for session in list(self.sessions):
            session.close()
        # Let the transports call connection_lost before the loop goes away.
        for _ in range(3):
            await asyncio.sleep(0)

    async def listen(self) -> None:
        """Accept connections again, on the same port once one was chosen."""
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: PoolSession(self), self.host, self.port, reuse_address=True, ssl=self.config.tls
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def stop_listening(self) -> None:
        """Refuse new connections; established ones stay up (see :meth:`drop_all`)."""
        server, self._server = self._server, None
        if server is not None:
            # Not wait_closed(): on uvloop and Python 3.12+ it waits for every connection.
            server.close()
            await asyncio.sleep(0)

    def drop_all(self, *, abort: bool = True) -> int:
        """Close every connection (a pool outage); returns how many were dropped."""
        sessions = list(self.sessions)
        for session in sessions:
            if abort:
                session.abort()
            else:
                session.close()
        return len(sessions)

    def silence(self, *, jobs: bool = True, replies: bool = False) -> None:
        """Go quiet: stop sending new jobs and, with ``replies``, stop answering requests."""
        self.silent_jobs = jobs
        self.mute_replies = replies

    def unsilence(self) -> None:
        """Send jobs and answer requests again."""
        self.silent_jobs = False
        self.mute_replies = False

    # ------------------------------------------------------------------ actions on every connection

    @property
    def started_sessions(self) -> list[PoolSession]:
        """Connections that subscribed and authorized (they receive jobs)."""
        return [s for s in self.sessions if s.started and not s.closed]

    def new_job(self, clean: bool = False) -> Job:
        """Make a job now and send it to every started connection; clean means a new block."""
        job, line = self._make_job(clean)
        self._send_job(job, line)
        return job

    def resend_current(self, clean: bool = True) -> Job:
        """Send the current job again, unchanged but for ``clean_jobs``, to every started
        connection, as ckpool does after a block update that changed nothing.

        The job keeps its id and fields, and this pool's book is untouched: shares on it
        (and on earlier jobs still in the book) are accepted as before. Returns the job.
        """
        if self.current is None:
            raise RuntimeError("no current job to resend (start() makes the first)")
        job, line = self.current
        params = msgspec.json.decode(line, type=Notify).params
        again = encode_notify(msgspec.structs.replace(params, clean_jobs=clean))
        for session in self.started_sessions:
            session.resend_job(job, again)
        return job

    def set_difficulty(self, difficulty: float) -> Job:
        """New difficulty for every connection, followed by a new job it applies to.

        Miners apply a difficulty to the next job (docs/protocol.md), so the validators judge
        shares at the new difficulty from that job on, and earlier jobs at the lower of the
        two.
        """
        target_from_difficulty(difficulty)  # validate before anything changes
        self.difficulty = difficulty
        job, line = self._make_job(clean=False)
        for session in list(self.sessions):
            session.set_difficulty(difficulty, job.seq)
        self._send_job(job, line)
        return job

    def _make_job(self, clean: bool) -> tuple[Job, bytes]:
        """A new job, already in the book; not sent yet."""
        if clean:
            self.factory.new_block()
            self._last_block = time.monotonic()
        _, seq = self.book.ids.take()  # the sequence only: ids carry this pool's prefix
        job, line = self.factory.make(f"{self._id_prefix}{seq:08x}", seq, clean=clean, ntime=int(time.time()))
        self.book.add(job)
        self.current = (job, line)
        self.stats.jobs += 1
        return job, line

    def _send_job(self, job: Job, line: bytes) -> None:
        for session in self.started_sessions:
            session.send_job(job, line)

    def set_version_mask(self, mask: int) -> int:
        """Send ``mining.set_version_mask`` to every connection that negotiated rolling.

        Each gets ``mask & its miner mask``, in force at once (BIP310). Returns how many
        connections were told.
        """
        self.version_mask = mask & 0xFFFFFFFF
        return sum(session.change_version_mask(self.version_mask) for session in list(self.sessions))

    def set_extranonce(self, extranonce2_size: int | None = None) -> int:
        """Give every extranonce-subscribed connection a new extranonce1, then a new job.

        The new job has a new id (cpuminer keeps the old extranonce1 while the id repeats,
        docs/protocol.md). With another
        ``extranonce2_size`` the coinbase push byte no longer matches the extranonce length
        (the jobs stay synthetic), but validation is unaffected. Returns how many
        connections were told.
        """
        told = 0
        for session in list(self.sessions):
            if not session.extranonce_subscribed or session.validator is None or session.closed:
                continue
            session.change_extranonce(self.extranonce1s.new(), extranonce2_size)
            told += 1
        self.new_job(clean=False)
        return told

    def reconnect(self, host: str | None = None, port: int | None = None, wait: float = 0) -> int:
        """Send ``client.reconnect`` (``[]`` without a host) to every connection."""
        params: list[object] = [] if host is None else [host, port if port is not None else self.port, wait]
        line = _notification("client.reconnect", params)
        return self.broadcast(line)

    def broadcast(self, line: bytes) -> int:
        """Write a raw line (it must end with a newline) to every open connection."""
        sessions = [s for s in self.sessions if not s.closed]
        for session in sessions:
            session.write(line)
        return len(sessions)

    # ------------------------------------------------------------------ internals

    def _attach(self, session: PoolSession) -> None:
        self.sessions.append(session)
        self.stats.connections += 1

    def _detach(self, session: PoolSession) -> None:
        with contextlib.suppress(ValueError):
            self.sessions.remove(session)

    async def _job_timer(self) -> None:
        """A new job every job_interval; a new block (clean job) every block_interval."""
        while True:
            await asyncio.sleep(self.config.job_interval)
            if self.silent_jobs:
                continue
            new_block = time.monotonic() - self._last_block >= self.config.block_interval
            self.new_job(clean=new_block)


# --------------------------------------------------------------------------- command line


def parse_hostport(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def config_from_args(args: argparse.Namespace) -> PoolConfig:
    """A :class:`PoolConfig` from the ``pool`` subcommand's arguments."""
    host, port = parse_hostport(args.listen)
    return PoolConfig(
        host=host,
        port=port,
        difficulty=args.difficulty,
        extranonce2_size=args.extranonce2_size,
        job_interval=args.job_interval,
        block_interval=args.block_interval,
        version_mask=int(args.version_mask, 16),
        reject_every=args.reject_every,
        nbits=int(args.nbits, 16),
        seed=args.seed,
    )


async def serve(config: PoolConfig, *, report_interval: float = 5.0) -> PoolStats:
    """Run the pool until SIGINT or SIGTERM, printing counts every ``report_interval`` seconds."""
    pool = TestPool(config)
    await pool.start()
    print(
        f"test pool listening on {pool.url} (difficulty {config.difficulty:g}, "
        f"extranonce2_size {config.extranonce2_size}, nbits {config.nbits:08x})",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), report_interval)
            if not stop.is_set():
                print(f"pool: {pool.stats.summary()} | connected {len(pool.sessions)}", flush=True)
    finally:
        await pool.stop()
    print(f"pool summary: {pool.stats.summary()}", flush=True)
    blocks = pool.stats.blocks
    for block in blocks[:MAX_BLOCKS_PRINTED]:
        print(f"block candidate: height {block.height} hash {block.hash} by {block.worker}", flush=True)
    if len(blocks) > MAX_BLOCKS_PRINTED:
        print(f"... and {len(blocks) - MAX_BLOCKS_PRINTED} more block candidates", flush=True)
    return pool.stats


def main(args: argparse.Namespace) -> int:
    """The ``pool`` subcommand."""
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"stratum-proxy pool: {exc}", file=sys.stderr)
        return 2
    if not math.isfinite(args.report_interval) or args.report_interval <= 0:
        print("stratum-proxy pool: --report-interval must be positive", file=sys.stderr)
        return 2
    run(serve(config, report_interval=args.report_interval))
    return 0
