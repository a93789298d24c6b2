"""The miner-facing server: one :class:`MinerSession` per TCP connection.

A session is an ``asyncio.Protocol``: bytes arrive in :meth:`MinerSession.data_received`,
the sans-IO framer and codec turn them into messages, and each message is answered at
once, except a share that meets the pool's target, whose answer waits for the pool's
verdict (bounded by ``submit_timeout``). Nothing a miner sends can raise out of its
session: peer errors are answered and counted against a leaky error budget, and anything
unexpected closes only that connection.

Requests are handled strictly in order. The only request that can wait is a subscribe
while no pool is ready; reading is paused meanwhile, so later lines wait in the kernel,
not in our memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, cast

import msgspec
import structlog

from proxy.config import Config, parse_listen_address
from proxy.mining.share import ShareValidator, Verdict
from proxy.mining.vardiff import Vardiff
from proxy.routing.ports import Placement
from proxy.session.handshake import (
    VersionRolling,
    minimum_difficulty,
    resume_prefix,
    suggested_difficulty,
    valid_worker_name,
    vardiff_settings,
)
from proxy.session.state import Event, State, advance, allows
from proxy.stats import UPSTREAM_REJECTED, StatsRegistry, Tally, WorkerStats
from proxy.stratum.codec import (
    TRUE_REPLY,
    LineEncoder,
    ShareReply,
    decode_miner_line,
    error_reply,
    error_tail,
    result_tail,
)
from proxy.stratum.errors import FramingError, LineTooLong, PeerError, RequestId
from proxy.stratum.framing import LineFramer
from proxy.stratum.messages import (
    Authorize,
    Configure,
    ExtranonceSubscribe,
    GetTransactions,
    Notify,
    Reconnect,
    ReconnectParams,
    Response,
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
from proxy.stratum.proxyproto import ProxyHeaderError, ProxyHeaderParser, is_trusted
from proxy.upstream.channel import Channel

log = structlog.get_logger("proxy.downstream")


def _session_log(**context: str) -> Any:
    """A logger with the session's context bound once. Lazy (not ``log.bind``), so a reload
    that changes the log level or format applies to connections already open."""
    return structlog.get_logger("proxy.downstream", **context)


ERROR_REFILL_SECONDS: Final = 10.0
"""The error budget refills one error per this many seconds (a leaky bucket)."""

MAX_WORKERS_PER_CONNECTION: Final = 64
"""Worker names one connection may authorize (a chained proxy may carry several)."""

RECONNECT_GRACE: Final = 5.0
"""Seconds a miner told to reconnect may keep its connection (and get its last answers)."""

WRITE_HIGH_WATER: Final = 256 * 1024
"""Unsent bytes to a miner past which it is taken as not reading and dropped (~100 jobs)."""

_CLOSED: Final = State.CLOSED
_MINING: Final = State.MINING
_LEAVING: Final = State.LEAVING
_SUBSCRIBED_STATES: Final = (State.SUBSCRIBED, State.AUTHORIZED, State.MINING)
_ACCEPTED: Final = Verdict.ACCEPTED
_BLOCK: Final = Verdict.BLOCK_CANDIDATE
_LOW_DIFFICULTY: Final = Verdict.LOW_DIFFICULTY
_REJECT_TAILS: Final = tuple(error_tail(v.error_code, v.error_message) for v in Verdict)
_EMPTY_LIST_REPLY: Final = result_tail([])
_NOT_SUBSCRIBED: Final = error_tail(25, "Not subscribed")
_UNAUTHORIZED: Final = error_tail(24, "Unauthorized worker")
_CLOSING: Final = error_tail(20, "Connection closing")
_UNCOUNTED: Final = Tally()  # the work of a miner not placed by a group yet


class MinerServer:
    """Everything sessions share: config, the pool manager, counters, the clock."""

    def __init__(
        self,
        config: Config,
        pools: Placement,
        stats: StatsRegistry,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.pools = pools
        self.stats = stats
        self.clock: Callable[[], float] = clock or asyncio.get_running_loop().time
        self.sessions: set[MinerSession] = set()
        self.encoder = LineEncoder()
        self._servers: dict[str, asyncio.Server] = {}  # by the configured address text

    def protocol_factory(self, listener: str | None = None) -> MinerSession:
        """A new session for a connection accepted on ``listener`` (as configured)."""
        return MinerSession(self, listener)

    async def listen(self, address: str, *, reuse_port: bool | None = None) -> asyncio.Server:
        """Start the miner listener for one configured ``HOST:PORT``."""
        host, port = parse_listen_address(address)
        loop = asyncio.get_running_loop()
        reuse = self.config.server.reuse_port if reuse_port is None else reuse_port
        server = await loop.create_server(
            lambda: self.protocol_factory(address), host, port, reuse_port=reuse or None, backlog=4096
        )
        self._servers[address] = server
        return server

    async def open_listeners(self, addresses: Sequence[str], *, reuse_port: bool) -> list[str]:
        """Open the listeners in ``addresses`` that are not open yet; all or none: if one
        cannot be bound, those just opened are closed again and the OSError raised."""
        added: list[str] = []
        try:
            for address in addresses:
                if address not in self._servers:
                    await self.listen(address, reuse_port=reuse_port)
                    added.append(address)
        except OSError:
            for address in added:
                self._servers.pop(address).close()
            raise
        return added

    def close_listeners(self, keep: Sequence[str]) -> list[str]:
        """Stop accepting on every listener not in ``keep``; its miners stay connected."""
        removed = [a for a in self._servers if a not in keep]
        for address in removed:
            self._servers.pop(address).close()
        return removed

    @property
    def ports(self) -> list[int]:
        """The bound ports of every listener (useful with port 0 in tests)."""
        return [sock.getsockname()[1] for server in self._servers.values() for sock in server.sockets]

    def stop_listening(self) -> None:
        """Stop accepting; existing sessions stay."""
        for server in self._servers.values():
            server.close()
        self._servers.clear()

    def reconfigure(self, config: Config) -> None:
        """Apply reloaded limits and difficulty settings to every connected miner."""
        self.config = config
        now = self.clock()
        for session in list(self.sessions):
            session.reconfigure(now)

    def sweep(self) -> None:
        """Periodic housekeeping: handshake and idle timeouts, vardiff for silent miners."""
        now = self.clock()
        for session in list(self.sessions):
            session.tick(now)

    def close_all(self) -> None:
        """Drop every miner connection (shutdown)."""
        for session in list(self.sessions):
            session.close("shutdown")


class SessionPlacement:
    """A miner session as routing and its channel see it: where it mines, its lifecycle
    state, its difficulty and the jobs it is sent. The submit path and the transport are
    the subclasses' (:class:`SessionShares`, :class:`MinerSession`)."""

    # Slots: a farm keeps tens of thousands of sessions alive, and a __dict__ each would
    # double the memory per miner.
    __slots__ = (
        "_mined",
        "_stats",
        "_stats_name",
        "_worker_stats",
        "closed",
        "extranonce1",
        "extranonce2_size",
        "extranonce_subscribed",
        "last_activity",
        "listener",
        "local_address",
        "log",
        "peer",
        "pending_forwards",
        "prefix",
        "previous_tally",
        "previous_upstream",
        "rolling",
        "server",
        "state",
        "tally",
        "transport",
        "upstream",
        "user_agent",
        "validator",
        "vardiff",
        "work",
        "workers",
    )

    def __init__(self, server: MinerServer, now: float, listener: str | None = None) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.listener = listener  # the configured listen address it came in on
        # Where the miner connected to, when a PROXY header said (the balancer's frontend);
        # else the socket's own address, looked up only when a reconnect needs it.
        self.local_address: tuple[str, int] | None = None
        self.log: Any = log
        # connected -> configured -> subscribed -> authorized -> mining; leaving; closed.
        self.state = State.CONNECTED
        self._mined = False  # it had work (a LEAVING miner may still submit what it has)
        self.closed = False  # the transport is closed
        self.last_activity = now
        # Handshake state.
        self.extranonce_subscribed = False
        self.rolling = VersionRolling()  # BIP310: the mask asked for and the mask told
        self.workers: set[str] = set()
        self.user_agent = ""
        # Placement on an upstream connection.
        self.upstream: Channel | None = None
        self.previous_upstream: Channel | None = None  # until its jobs are void
        self.prefix = b""
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.validator: ShareValidator | None = None
        self.vardiff = Vardiff(**vardiff_settings(server.config.difficulty), now=now)
        self._stats_name = ""
        self._stats: WorkerStats | None = None
        self._worker_stats: dict[str, WorkerStats] = {}
        self.pending_forwards = 0
        # Accepted work: all of it (its measured hashrate, for routing), and the counters
        # of its group's route for the pool it is on and the one it was moved from.
        self.work = 0.0
        self.tally = _UNCOUNTED
        self.previous_tally = _UNCOUNTED

    def close(self, reason: str) -> None:
        """Stop handling input and close (the transport layer does it)."""
        raise NotImplementedError

    def _close_transport(self) -> None:
        """Close after flushing what was written (a bounded wait, then abort)."""
        if self.closed:
            return
        self.closed = True
        transport = self.transport
        if transport is None:
            return
        transport.close()
        if transport.get_write_buffer_size() > 0:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_later(5.0, transport.abort)

    @property
    def closing(self) -> bool:
        """No more input is handled (answers to what is in flight still go out)."""
        return self.state is _CLOSED

    @property
    def mining(self) -> bool:
        """The miner has been sent work and may be sent more."""
        state = self.state
        return state is _MINING or (state is _LEAVING and self._mined)

    @property
    def subscribed(self) -> bool:
        """The miner has its extranonce (its subscribe was answered)."""
        return self.state in _SUBSCRIBED_STATES or (self.state is _LEAVING and self.validator is not None)

    def _socket_address(self) -> tuple[str, int] | None:
        """The address the miner's connection was accepted on."""
        sockname = self.transport.get_extra_info("sockname") if self.transport is not None else None
        return (str(sockname[0]), int(sockname[1])) if isinstance(sockname, tuple) else None

    @property
    def config(self) -> Config:
        """The config in force (a reload swaps it on the server)."""
        return self.server.config

    def sync_version_mask(self) -> None:
        """Make what the validator allows and what the miner was told the pool's mask now.

        A miner that configured before it had a pool connection, or whose pool changed its
        mask or was swapped by failover, is told with ``mining.set_version_mask`` (BIP310:
        in force at once) instead of having its rolled shares rejected.
        """
        pool_mask = self.upstream.version_mask if self.upstream is not None else None
        if self.validator is not None:
            self.validator.version_mask = self.rolling.granted(pool_mask)
        tell = self.rolling.to_tell(pool_mask)
        if tell is not None:
            params = SetVersionMaskParams(f"{tell:08x}")
            self.send(self.server.encoder.encode(SetVersionMask(params=params)))

    @property
    def worker(self) -> str | None:
        """The first worker name authorized on this connection."""
        return self._stats_name or None

    def attached(
        self, upstream: Channel, prefix: bytes, previous: Channel | None = None, tally: Tally | None = None
    ) -> None:
        """Called by routing when this session gets a place on ``upstream`` (``previous``:
        the connection it was moved from, whose jobs may still be worked; ``tally``: where
        its accepted work counts from now on)."""
        old_tally = self.tally
        if tally is not None:
            self.tally = tally
        self.upstream = upstream
        self.prefix = prefix
        self.extranonce1 = prefix if upstream.fold else upstream.extranonce1
        self.extranonce2_size = upstream.miner_extranonce2_size
        now = self.server.clock()
        self.vardiff.set_ceiling(upstream.difficulty, now)  # told below or at mining start
        validator = self.validator
        if validator is None:
            validator = self.validator = ShareValidator(
                upstream.book,
                extranonce1=self.extranonce1,
                extranonce2_size=self.extranonce2_size,
                difficulty=self.vardiff.difficulty,
            )
            validator.workers.update(self.workers)
        else:
            validator.set_extranonce(upstream.book, self.extranonce1, self.extranonce2_size)
            validator.set_difficulty(self.vardiff.difficulty, upstream.book.ids.next_seq)
        self.previous_upstream = previous if validator.previous_book is not None else None
        # Shares on the old jobs (the validator keeps them while the layout is unchanged)
        # count where they were mined for, wherever they are sent.
        self.previous_tally = old_tally if validator.previous_book is not None else _UNCOUNTED
        self.sync_version_mask()

    def _subscribed(self, request_id: RequestId) -> None:
        self.state = advance(self.state, Event.SUBSCRIBE)
        self._reply_subscribe(request_id)
        self._maybe_start()

    def _reply_subscribe(self, request_id: RequestId) -> None:
        session_id = self.prefix.hex() or "00"
        result = [
            [["mining.set_difficulty", session_id], ["mining.notify", session_id]],
            self.extranonce1.hex(),
            self.extranonce2_size,
        ]
        self._reply(request_id, result)

    def _maybe_start(self) -> None:
        """Once subscribed and authorized: difficulty, then the current job."""
        if self.state is not State.AUTHORIZED or self.upstream is None:
            return
        self.state = advance(self.state, Event.START)
        self._mined = True
        self._send_difficulty(self.vardiff.difficulty)
        line = self.upstream.current_line
        if line is not None:
            self.send(line)

    def _apply(self, difficulty: float | None) -> None:
        """Put a new difficulty in force: set_difficulty, then a fresh job id to carry it."""
        if difficulty is None or self.validator is None or self.upstream is None:
            return
        book = self.upstream.book
        self.validator.set_difficulty(difficulty, book.ids.next_seq)
        if not self.mining:
            return
        self._send_difficulty(difficulty)
        current = book.current
        notify = self.upstream.current_notify
        if current is None or notify is None:
            return
        alias = current.alias(*book.ids.take())
        self.validator.remember_alias(alias)
        params = msgspec.structs.replace(notify, job_id=alias.job_id, clean_jobs=False)
        self.send(self.server.encoder.encode(Notify(params=params)))

    def _send_difficulty(self, difficulty: float) -> None:
        self.send(self.server.encoder.encode(SetDifficulty(params=SetDifficultyParams(difficulty))))

    def clamp_to_pool(self, pool_difficulty: float, seq: int, now: float) -> float | None:
        """The pool's difficulty changed, taking effect with the job numbered ``seq``: keep
        this miner at or below it (hashrate conservation). Returns the difficulty to send
        the miner before that job, or None when nothing changes for it."""
        new = self.vardiff.set_ceiling(pool_difficulty, now)
        if new is None or self.validator is None:
            return None
        self.validator.set_difficulty(new, seq)
        return new if self.mining else None

    @property
    def wanted_difficulty(self) -> float:
        """What vardiff would give this miner without the pool's ceiling."""
        return self.vardiff.wanted

    def detached(self) -> None:
        """Routing took this miner off its channel; a new place follows. Shares on that
        channel's jobs still go to it (it may be waiting for its pool to resume it)."""
        if self.upstream is not None:
            self.previous_upstream = self.upstream
        self.upstream = None

    def on_version_mask(self) -> None:
        """The pool changed its version mask: tell a rolling miner at once (BIP310)."""
        self.sync_version_mask()

    def send_job(self, line: bytes) -> None:
        """A new job line from this session's upstream connection."""
        state = self.state
        if (state is _MINING or (state is _LEAVING and self._mined)) and not self.closed:
            self.transport.write(line)  # type: ignore[union-attr]  # set before it can mine

    def moved(self, old_extranonce1: bytes, old_size: int) -> None:
        """After :meth:`attached` put us on another upstream connection (failover).

        Same extranonce layout: nothing to tell the miner, the next job carries on. A new
        layout: ``mining.set_extranonce`` where the miner asked for it, else reconnect.
        Either way a fresh job id follows (cpuminer-multi keeps the old extranonce1 while
        the job id repeats).
        """
        if not self.subscribed:
            return
        if (self.extranonce1, self.extranonce2_size) != (old_extranonce1, old_size):
            if not self.extranonce_subscribed:
                self.reconnect()
                return
            params = SetExtranonceParams(self.extranonce1.hex(), self.extranonce2_size)
            self.send(self.server.encoder.encode(SetExtranonce(params=params)))
        if self.mining and self.upstream is not None:
            self._send_difficulty(self.vardiff.difficulty)
            line = self.upstream.clean_line()  # clean: work for the old connection is over
            if line is not None:
                self.send(line)

    def reconnect(self, host: str | None = None, port: int | None = None, wait: float = 0) -> None:
        """Ask the miner to reconnect: to ``host:port``, else to the address it connected
        to (behind a balancer: the balancer, which may pick another instance).

        The host is always explicit when known: cpuminer ignores a reconnect with a null
        host. The connection is not cut at once: a request the miner sent before it read
        the message is still answered. It closes when the miner leaves, or after
        :data:`RECONNECT_GRACE` seconds.
        """
        address = self.local_address or self._socket_address()
        if not host and address is not None:
            host, port = address
        # An integral wait goes out as an integer: firmware reads it with an integer parser.
        wire_wait = int(wait) if float(wait).is_integer() else wait
        params = ReconnectParams(host, port, wire_wait) if host else ReconnectParams()
        self.send(self.server.encoder.encode(Reconnect(params=params)))
        if not allows(self.state, Event.LEAVE):
            return  # already leaving, or closed
        self.state = advance(self.state, Event.LEAVE)
        asyncio.get_running_loop().call_later(RECONNECT_GRACE, self.close, "reconnect requested")

    def _reply(self, request_id: RequestId, result: object) -> None:
        self.send(result_tail(result).reply(request_id))

    def send(self, line: bytes) -> None:
        """Write a line to the miner (dropped once the transport is closed)."""
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(line)


class SessionShares(SessionPlacement):
    """The submit path of a miner session (the hot path): judge, answer, forward."""

    __slots__ = ()

    def _on_submit(self, msg: Submit) -> None:
        validator = self.validator
        request_id = msg.id
        if validator is None:
            self.send(_NOT_SUBSCRIBED.reply(request_id))
            return
        p = msg.params
        verdict = validator.check(p.worker, p.job_id, p.extranonce2, p.ntime, p.nonce, p.version_bits)
        stats = self._stats
        if p.worker != self._stats_name:
            # Rare: several workers on one connection. A name never authorized here counts
            # against the connection's own worker, so no series is made up for it.
            stats = self._worker_stats.get(p.worker, stats)
        if verdict is _ACCEPTED:
            self.send(TRUE_REPLY.reply(request_id))
            self._credit(stats, validator.difficulty)
        elif verdict <= _BLOCK:
            if verdict is _BLOCK and not validator.met_pool:
                if not self._easy_candidate(request_id, stats, validator):
                    return
            else:
                self._forward(request_id, stats, validator, verdict)
        else:
            self._reject(request_id, stats, verdict)
            return
        difficulty = validator.difficulty
        self.work += difficulty
        (self.previous_tally if validator.from_previous else self.tally).work += difficulty
        new_difficulty = self.vardiff.on_share(self.last_activity, difficulty)
        if new_difficulty is not None:
            self._apply(new_difficulty)

    def _forward(
        self, request_id: RequestId, stats: WorkerStats | None, validator: ShareValidator, verdict: Verdict
    ) -> None:
        """Send a share upstream: to the connection whose job it is."""
        upstream = self._upstream_for(validator)
        if upstream is None:
            # Nowhere to send it (that pool connection just went away): the local verdict
            # stands, counted like a pool that did not answer.
            self.answer_forwarded(request_id, stats, validator.difficulty, None)
            return
        self.pending_forwards += 1
        upstream.forward(self, request_id, stats, validator, verdict)

    def _easy_candidate(
        self, request_id: RequestId, stats: WorkerStats | None, validator: ShareValidator
    ) -> bool:
        """A block candidate below the pool's difficulty: only on a test network, whose
        target is easier than the pool's. It goes to the pool as a possible block, but
        the miner's answer is ours, from its own target, whatever the pool says (the pool
        judges it against a difficulty the miner was never given). False: rejected."""
        upstream = self._upstream_for(validator)
        if upstream is None or not upstream.takes_easy_candidates:
            upstream = None
        if validator.met_target:
            if upstream is not None:
                upstream.forward(self, request_id, stats, validator, _BLOCK, attended=False)
            self.send(TRUE_REPLY.reply(request_id))
            self._credit(stats, validator.difficulty)
            return True
        if upstream is not None:
            # Below the miner's own target: it is accepted only if the pool takes it as a
            # block; anything else from the pool is answered with our low-difficulty reject.
            self.pending_forwards += 1
            upstream.forward(self, request_id, stats, validator, _LOW_DIFFICULTY)
            return False
        self._reject(request_id, stats, _LOW_DIFFICULTY)
        return False

    def _upstream_for(self, validator: ShareValidator) -> Channel | None:
        """The open connection whose job the last checked share solves, if any."""
        upstream = self.upstream
        job = validator.job
        assert job is not None  # check() found it
        base = job.base
        if upstream is None or upstream.book.jobs.get(base.job_id) is not base:
            upstream = self.previous_upstream  # a job of the connection we were moved from
        if upstream is None or not upstream.accepts_shares:
            return None
        return upstream

    def _reject(self, request_id: RequestId, stats: WorkerStats | None, verdict: Verdict) -> None:
        """Answer a share with our own reject for ``verdict``, and count it."""
        self.send(_REJECT_TAILS[verdict].reply(request_id))
        if stats is not None:
            stats.counts[verdict] += 1

    def _credit(self, stats: WorkerStats | None, difficulty: float) -> None:
        if stats is not None:
            stats.accepted += 1
            stats.difficulty_sum += difficulty
            stats.last_share = self.last_activity

    def answer_forwarded(
        self,
        request_id: RequestId,
        stats: WorkerStats | None,
        difficulty: float,
        reply: ShareReply | None,
        verdict: Verdict = _ACCEPTED,
    ) -> None:
        """The pool answered a forwarded share (``reply``), or it timed out / was lost (None).

        The miner hears the pool's verdict when there is one: its code where it gave one,
        else 20. Without one, the local verdict stands and the case is counted. A block
        candidate that missed the miner's own target (``verdict`` low difficulty: test
        networks only) is accepted only when the pool accepts it, else it is our reject.
        """
        if verdict is _LOW_DIFFICULTY and (reply is None or not reply.accepted):
            self._reject(request_id, stats, _LOW_DIFFICULTY)
        elif reply is None or reply.accepted:
            self.send(TRUE_REPLY.reply(request_id))
            self._credit(stats, difficulty)
            if reply is None and stats is not None:
                stats.upstream_timeouts += 1
        else:
            code = reply.code if reply.code is not None else 20
            self.send(error_tail(code, reply.message or "Rejected by pool").reply(request_id))
            if stats is not None:
                stats.counts[UPSTREAM_REJECTED] += 1
        if self.closing and not self.pending_forwards:
            self._close_transport()  # the last answer a closing session was waiting for


class MinerSession(SessionShares, asyncio.Protocol):
    """One miner connection: the transport, limits and dispatch around the session."""

    __slots__ = (
        "_errors",
        "_errors_at",
        "_proxy_header",
        "_wait",
        "connected_at",
        "framer",
        "handshake_deadline",
    )

    def __init__(self, server: MinerServer, listener: str | None = None) -> None:
        now = server.clock()
        super().__init__(server, now, listener)
        cfg = server.config
        self.framer = LineFramer(cfg.server.max_line_bytes)
        self.connected_at = now
        self.handshake_deadline = now + cfg.server.handshake_timeout
        self._errors = 0.0
        self._errors_at = now
        self._proxy_header: ProxyHeaderParser | None = None  # until the PROXY header is read
        self._wait: SubscribeWait | None = None  # made only when a subscribe has to wait

    def _closed_now(self) -> None:
        """The transport is gone or refused: nothing more in or out."""
        self.state = _CLOSED
        self.closed = True

    def reconfigure(self, now: float) -> None:
        """A reload changed the config: new line cap, and difficulty re-targeted."""
        cfg = self.config
        self.framer.max_line = cfg.server.max_line_bytes
        self._apply(self.vardiff.reconfigure(**vardiff_settings(cfg.difficulty), now=now))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Register the session, or refuse it when the miner limit is reached."""
        # uvloop's transports do not subclass asyncio.Transport, but implement it.
        self.transport = cast("asyncio.Transport", transport)
        peername = transport.get_extra_info("peername")
        if peername:
            self.peer = f"{peername[0]}:{peername[1]}"
        self.log = _session_log(peer=self.peer)
        server = self.server
        if len(server.sessions) >= self.config.server.max_miners:
            server.stats.connection("rejected_limit")
            self._closed_now()
            self.transport.abort()
            return
        if self.config.server.proxy_protocol:
            # Only the balancer may say where a miner really is: anyone else could forge it.
            if not peername or not is_trusted(str(peername[0]), self.config.server.trusted_networks):
                server.stats.connection("rejected_untrusted_proxy")
                self.log.debug("closing: PROXY header expected from a trusted balancer only")
                self._closed_now()
                self.transport.abort()
                return
            self._proxy_header = ProxyHeaderParser()
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        server.sessions.add(self)
        server.stats.connection("accepted")
        if self._proxy_header is None:  # else logged once the header says who it is
            self.log.info("miner connected", miners=len(server.sessions))

    def connection_lost(self, exc: Exception | None) -> None:
        """Free the extranonce prefix and forget the session."""
        self._closed_now()
        registered = self in self.server.sessions
        self.server.sessions.discard(self)
        self.server.pools.detach(self)
        self.upstream = self.previous_upstream = None
        now = self.server.clock()
        for stats in self._worker_stats.values():
            stats.connections -= 1
            stats.last_seen = now
        # Connections refused at accept (limit, untrusted balancer) are counted, not logged
        # at info: anyone can open them, so they must not be able to flood the log.
        (self.log.info if registered else self.log.debug)(
            "miner disconnected", reason=str(exc) if exc else "closed"
        )

    def data_received(self, data: bytes) -> None:
        """Frame and handle every complete line, in order."""
        if self.state is _CLOSED:
            return
        self.last_activity = self.server.clock()
        if self._proxy_header is not None:
            data = self._read_proxy_header(data)
            if not data:
                return
        items = self.framer.feed(data)
        self.handle_items(items)

    def handle_items(self, items: list[bytes | LineTooLong]) -> None:
        """Handle lines in order; from a subscribe that has to wait on, keep them queued."""
        for i, item in enumerate(items):
            wait = self._wait
            if wait is not None and wait.busy:  # a subscribe waits for a pool: keep order
                wait.hold(items[i:])
                return
            if self.state is _CLOSED:
                return
            self._handle_item(item)

    def _read_proxy_header(self, data: bytes) -> bytes:
        """Consume the PROXY protocol header; return the Stratum bytes after it."""
        assert self._proxy_header is not None
        try:
            parsed = self._proxy_header.feed(data)
        except ProxyHeaderError as exc:
            self.server.stats.connection("closed_bad_input")
            self.log.info("closing: bad PROXY header", error=exc.message)
            self.close(exc.message)
            return b""
        if parsed is None:
            return b""  # more of the header to come
        info, rest = parsed
        self._proxy_header = None
        if info.source is not None:  # None: the balancer's own connection (a health check)
            balancer, self.peer = self.peer, f"{info.source[0]}:{info.source[1]}"
            self.log = _session_log(peer=self.peer, via=balancer)
        if info.destination is not None:
            self.local_address = info.destination  # the balancer's frontend
        self.log.info("miner connected", miners=len(self.server.sessions))
        return rest

    def eof_received(self) -> bool:
        """The miner half-closed: answer what is in flight, then close (see :meth:`close`)."""
        self.close("end of input")
        return True  # keep the transport open for the answers; close() closes it

    def pause_writing(self) -> None:
        """The miner stopped reading and WRITE_HIGH_WATER bytes piled up: drop it."""
        self.server.stats.connection("closed_not_reading")
        self.log.info("closing: miner is not reading")
        self._closed_now()
        if self.transport is not None:
            self.transport.abort()

    def _handle_item(self, item: bytes | LineTooLong) -> None:
        try:
            if isinstance(item, LineTooLong):
                raise item
            self._handle_line(item)
        except FramingError as exc:
            self.server.stats.connection("closed_bad_input")
            self.log.info("closing: not stratum", error=exc.message)
            self.close(exc.message)
        except PeerError as exc:
            self.send(error_reply(exc))
            self._count_error()
        except Exception:
            # A bug of ours must cost this miner its connection, never the process.
            self.log.exception("session error")
            self.close("internal error")

    def _handle_line(self, line: bytes) -> None:
        msg = decode_miner_line(line)
        if type(msg) is Submit:  # the hot path skips the handler table
            self._on_submit(msg)
            return
        handler = _HANDLERS.get(msg.__class__)
        if handler is not None:
            handler(Handshake(self), msg)

    def _count_error(self) -> None:
        now = self.server.clock()
        refill = (now - self._errors_at) / ERROR_REFILL_SECONDS
        self._errors = max(0.0, self._errors - refill) + 1
        self._errors_at = now
        if self._errors > self.config.server.error_budget:
            self.server.stats.connection("closed_error_budget")
            self.log.info("closing: error budget exhausted")
            self.close("error budget exhausted")

    def subscribe_done(self, request_id: RequestId) -> None:
        """A subscribe that waited got its place: answer it (the wait resumes reading)."""
        self._subscribed(request_id)

    def tick(self, now: float) -> None:
        """Timeouts and vardiff for a miner that stopped submitting."""
        if self.closing:
            return
        if not self.mining and now > self.handshake_deadline:
            self.server.stats.connection("closed_handshake_timeout")
            self.close("handshake timeout")
        elif now - self.last_activity > self.config.server.idle_timeout:
            self.server.stats.connection("closed_idle")
            self.close("idle timeout")
        elif self.mining:
            self._apply(self.vardiff.poll(now))

    def close(self, reason: str) -> None:
        """Stop handling input and close; shares still waiting for the pool's verdict are
        answered first (the upstream side answers them within ``submit_timeout``)."""
        if self.closing:
            return
        self.state = _CLOSED
        if self._wait is not None:
            self._wait.abandon()
        self.log.debug("closing", reason=reason, pending=self.pending_forwards)
        if not self.pending_forwards:
            self._close_transport()


class Handshake:
    """The handshake requests of one miner session, handled (a view made per request:
    handshakes are rare, and sessions keep no extra object for them)."""

    __slots__ = ("session",)

    def __init__(self, session: MinerSession) -> None:
        self.session = session

    def on_configure(self, msg: Configure) -> None:
        """BIP310 ``mining.configure``: version rolling, minimum difficulty, extranonce."""
        session = self.session
        if allows(session.state, Event.CONFIGURE):
            session.state = advance(session.state, Event.CONFIGURE)
        result: dict[str, object] = {}
        params = msg.params.parameters
        for extension in msg.params.extensions:
            if extension == "version-rolling":
                result.update(self._configure_version_rolling(params))
            elif extension == "minimum-difficulty":
                result["minimum-difficulty"] = self._configure_min_difficulty(params)
            elif extension == "subscribe-extranonce":
                self.session.extranonce_subscribed = True
                result["subscribe-extranonce"] = True
            else:
                result[extension] = False
        self.session._reply(msg.id, result)

    def _configure_version_rolling(self, params: Mapping[str, object]) -> dict[str, object]:
        session = self.session
        upstream = session.upstream
        pool_mask = upstream.version_mask if upstream is not None else session.server.pools.version_mask
        result = session.rolling.configure(params, pool_mask)
        if session.validator is not None:
            session.validator.version_mask = session.rolling.told_mask or 0
        return result

    def _configure_min_difficulty(self, params: Mapping[str, object]) -> bool | str:
        value = minimum_difficulty(params)
        if value is None:
            return "invalid minimum-difficulty.value"
        self.session._apply(self.session.vardiff.set_floor(value, self.session.server.clock()))
        return True

    def on_subscribe(self, msg: Subscribe) -> None:
        """``mining.subscribe``: a place on a channel now, or a wait for one."""
        if self.session.subscribed:
            self.session._reply_subscribe(msg.id)
            return
        self.session.user_agent = msg.params.user_agent[:128]
        preferred = resume_prefix(msg.params.session_id)
        upstream = self.session.server.pools.attach(self.session, preferred)
        if upstream is not None:
            self.session._subscribed(msg.id)
            return
        if self.session._wait is None:
            self.session._wait = SubscribeWait(self.session)
        self.session._wait.start(msg.id, preferred)

    def on_authorize(self, msg: Authorize) -> None:
        """``mining.authorize``: a worker on this connection (after subscribe only)."""
        session = self.session
        if not allows(session.state, Event.AUTHORIZE) or not session.subscribed:
            # The protocol: subscribe first. A name must not become a series (or take a
            # worker slot) on a connection that never asked for work.
            self.session.send(_NOT_SUBSCRIBED.reply(msg.id))
            return
        name = msg.params.username
        if not valid_worker_name(name):
            self.session.send(_UNAUTHORIZED.reply(msg.id))
            return
        if name not in self.session.workers:
            if len(self.session.workers) >= MAX_WORKERS_PER_CONNECTION:
                self.session.send(error_tail(24, "Too many workers on one connection").reply(msg.id))
                return
            first = not self.session.workers
            self._add_worker(name)
            if first:
                session.server.pools.place(session, name)  # its group and route are known now
        self.session.state = advance(self.session.state, Event.AUTHORIZE)
        self.session.send(TRUE_REPLY.reply(msg.id))
        self.session._maybe_start()

    def _add_worker(self, name: str) -> None:
        self.session.workers.add(name)
        if self.session.validator is not None:
            self.session.validator.workers.add(name)
        stats = self.session.server.stats.worker(name, self.session.server.clock())
        stats.connections += 1
        self.session._worker_stats[name] = stats
        if self.session._stats is None:
            self.session._stats_name, self.session._stats = name, stats
            self.session.log = _session_log(peer=self.session.peer, worker=name)
            self.session.log.info("miner authorized", agent=self.session.user_agent)
        else:
            self.session.log.debug("another worker authorized", name=name)

    def on_extranonce_subscribe(self, msg: ExtranonceSubscribe) -> None:
        """``mining.extranonce.subscribe``: it may be sent ``mining.set_extranonce``."""
        self.session.extranonce_subscribed = True
        self.session.send(TRUE_REPLY.reply(msg.id))

    def on_suggest_difficulty(self, msg: SuggestDifficulty) -> None:
        """``mining.suggest_difficulty``: taken within the vardiff bounds."""
        self.session.send(TRUE_REPLY.reply(msg.id))
        self.session._apply(self.session.vardiff.suggest(msg.params.difficulty, self.session.server.clock()))

    def on_suggest_target(self, msg: SuggestTarget) -> None:
        """``mining.suggest_target``: as a suggested difficulty."""
        difficulty = suggested_difficulty(msg.params.target)
        if difficulty is None:
            raise PeerError("invalid params for mining.suggest_target: target", request_id=msg.id)
        self.session.send(TRUE_REPLY.reply(msg.id))
        self.session._apply(self.session.vardiff.suggest(difficulty, self.session.server.clock()))

    def on_get_transactions(self, msg: GetTransactions) -> None:
        """``mining.get_transactions``: we never have them; an empty list says so."""
        # bfgminer asks for every job; we never have the transactions, and saying so
        # with an empty list keeps it mining (an error would not, in some versions).
        self.session.send(_EMPTY_LIST_REPLY.reply(msg.id))

    def on_response(self, msg: Response) -> None:
        """A reply to a request of ours (``client.get_version``): nothing to do."""


class SubscribeWait:
    """A subscribe that waits for a pool to be ready, and the lines queued behind it.

    Reading is paused meanwhile, so later lines wait in the kernel, not in our memory; the
    lines already read wait here and are handled in order once the subscribe is answered.
    Closing first answers the subscribe and every queued request with an error: every
    request gets exactly one reply.
    """

    __slots__ = ("_queue", "_request_id", "_session", "_task", "busy")

    def __init__(self, session: MinerSession) -> None:
        self._session = session
        self._queue: deque[bytes | LineTooLong] = deque()
        self._request_id: tuple[RequestId] | None = None  # the waiting subscribe's id
        self._task: asyncio.Task[None] | None = None  # referenced so it is not collected
        self.busy = False

    def start(self, request_id: RequestId, preferred: bytes | None) -> None:
        """Wait for a place for the subscribe ``request_id`` (``preferred``: its old prefix)."""
        session = self._session
        self.busy = True
        self._request_id = (request_id,)
        if session.transport is not None:
            session.transport.pause_reading()
        self._task = asyncio.get_running_loop().create_task(self._run(request_id, preferred))

    def hold(self, items: list[bytes | LineTooLong]) -> None:
        """Queue lines read while the subscribe waits."""
        self._queue.extend(items)

    async def _run(self, request_id: RequestId, preferred: bytes | None) -> None:
        session = self._session
        timeout = max(0.0, session.handshake_deadline - session.server.clock())
        upstream = await session.server.pools.attach_wait(session, preferred, timeout)
        self._task = None
        if self._request_id is None:  # abandon() already answered it, and what queued behind it
            if upstream is not None:
                session.server.pools.detach(session)
            return
        self._request_id = None
        if upstream is None:
            session.send(error_tail(20, "No pool available").reply(request_id))
            session.close("no pool available")
            return
        session.subscribe_done(request_id)
        self.busy = False
        if session.transport is not None:
            session.transport.resume_reading()
        queued = list(self._queue)
        self._queue.clear()
        session.handle_items(queued)  # a new wait, if one begins, queues the rest again

    def abandon(self) -> None:
        """The session closes while the subscribe waits: answer it and every request queued
        behind it with an error."""
        waiting, self._request_id = self._request_id, None
        session = self._session
        if waiting is not None:
            session.send(_CLOSING.reply(waiting[0]))
        queued = list(self._queue)
        self._queue.clear()
        for item in queued:
            if isinstance(item, bytes):
                with contextlib.suppress(PeerError):
                    message = decode_miner_line(item)
                    if not isinstance(message, Response):
                        session.send(_CLOSING.reply(message.id))


_HANDLERS: Final[dict[type, Callable[[Handshake, Any], None]]] = {
    Configure: Handshake.on_configure,
    Subscribe: Handshake.on_subscribe,
    Authorize: Handshake.on_authorize,
    ExtranonceSubscribe: Handshake.on_extranonce_subscribe,
    SuggestDifficulty: Handshake.on_suggest_difficulty,
    SuggestTarget: Handshake.on_suggest_target,
    GetTransactions: Handshake.on_get_transactions,
    Response: Handshake.on_response,
}
