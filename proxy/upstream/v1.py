"""The Stratum V1 pool client: one connection to a pool, shared by many miners.

The connection subscribes once for many miners. The pool's extranonce1 (E1) is folded into
the coinb1 the miners receive, and each miner gets a distinct prefix of the pool's
extranonce2 as its own extranonce1: the miner's extranonce1 is then independent of the
pool, so moving a miner to another pool connection with the same layout changes nothing
the miner was told at subscribe. When the pool's extranonce2 is too small to split, the
connection serves one miner, which then sees the pool's E1 unchanged.

It is an upstream :class:`~proxy.upstream.channel.Channel`: sessions see only that
surface. Its owner (the routing layer) hears of it through :class:`ChannelOwner`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, Generic, Protocol, TypeVar, cast

import structlog

from proxy import __version__
from proxy.config import Config, PoolConfig
from proxy.mining.extranonce import ExtranonceAllocator, prefix_size_for
from proxy.mining.job import JobBook, JobError, JobIds
from proxy.mining.share import ShareValidator, Verdict
from proxy.stats import WorkerStats
from proxy.stratum.codec import LineEncoder, ShareReply, decode_server_line, parse_share_reply
from proxy.stratum.errors import FramingError, LineTooLong, PeerError
from proxy.stratum.framing import LineFramer
from proxy.stratum.messages import (
    GetVersion,
    Notify,
    NotifyParams,
    Reconnect,
    Response,
    SetDifficulty,
    SetExtranonce,
    SetVersionMask,
    ShowMessage,
)
from proxy.upstream.channel import MinerLink
from proxy.upstream.handshake import (
    HandshakeError,
    granted_mask,
    layout_problem,
    parse_subscribe,
    suggestion_due,
)
from proxy.upstream.jobs import JobFeed, broadcast
from proxy.upstream.submits import PendingShare, RequestTable

log = structlog.get_logger("proxy.upstream")

REQUESTED_VERSION_MASK: Final = "ffffffff"
"""Ask the pool for every bit; it grants what it allows."""

SUGGEST_INTERVAL: Final = 10.0
"""Seconds between looks at whether the pool should be asked for a higher difficulty."""

RETIRE_GRACE: Final = 5.0
"""Seconds a retired connection stays open for shares on its jobs (a miner that was just
moved away sees the new job within milliseconds; this covers shares already in flight)."""


class PoolHandle(Protocol):
    """The configured pool a connection belongs to, as the connection needs it."""

    @property
    def config(self) -> PoolConfig:
        """The pool's configuration."""

    @property
    def name(self) -> str:
        """The pool's configured name."""

    def job_received(self, now: float, new: bool) -> None:
        """A job arrived (``new``: not a repeat)."""

    def failed(self, reason: str) -> None:
        """A connection of the pool failed (handshake, silence), and why."""

    def submit_timed_out(self) -> None:
        """A forwarded share was not answered in time."""

    def block_candidate(self) -> None:
        """A share meeting the network target went to the pool."""

    def block_accepted(self, stats: WorkerStats | None, block_hash: int) -> None:
        """The pool accepted a block candidate."""

    takes_easy_candidates: bool
    """False once the pool refused a block candidate below its difficulty."""


S = TypeVar("S", bound=PoolHandle)


class ChannelOwner(Protocol[S]):
    """Who a connection reports to: the routing layer, which places miners on channels."""

    config: Config

    def clock(self) -> float:
        """The current time (the event loop's clock)."""

    def upstream_ready(self, conn: UpstreamConnection[S]) -> None:
        """The connection finished its handshake and has a job."""

    def upstream_lost(self, conn: UpstreamConnection[S]) -> None:
        """The connection closed."""

    def upstream_leaving(self, conn: UpstreamConnection[S]) -> None:
        """The pool asked the connection to reconnect (after this read was handled)."""

    def relayout(self, conn: UpstreamConnection[S]) -> None:
        """The pool changed the miners' extranonce layout on this connection."""

    def pool_redirect(
        self, conn: UpstreamConnection[S], host: str | None, port: int | str | None, wait: float
    ) -> None:
        """``client.reconnect`` from the pool."""

    def share_settled(self, conn: UpstreamConnection[S], reply: ShareReply | None, latency: float) -> None:
        """A forwarded share was answered (None: it was not)."""

    def upstream_subscribed(self, conn: UpstreamConnection[S]) -> None:
        """The pool gave the connection its extranonce layout (it may have resumed a session)."""

    def carry(self, conn: UpstreamConnection[S], share: PendingShare) -> None:
        """A share for a closed connection whose session the pool may resume: keep it."""


class ChannelSurface(Generic[S]):
    """What a pool connection shows the miners on it and its owner: its jobs, its
    extranonce layout, whether it takes shares (the :class:`~proxy.upstream.channel.Channel`
    protocol). The Stratum client that keeps it up to date is the subclass."""

    def __init__(self, state: S, ids: JobIds, config: Config) -> None:
        self.state = state  # the configured pool this connection belongs to
        self.pool = state.config
        self.closing = False  # close() was called: handle nothing more from the pool
        self.closed = False
        self.redirected = False  # the pool sent us away: its session may be resumed
        # Layout, from the subscribe result.
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.prefix_size = 0
        self.fold = True
        self.miner_extranonce2_size = 0
        self.allocator = ExtranonceAllocator(0)
        self.version_mask = 0
        self.jobs = JobFeed(ids, ntime_window=config.server.ntime_window)
        self.requests = RequestTable()

    @property
    def book(self) -> JobBook:
        """The live jobs miners' shares are judged against."""
        return self.jobs.book

    @property
    def current_line(self) -> bytes | None:
        """The current job, encoded once for every miner."""
        return self.jobs.current_line

    @property
    def current_notify(self) -> NotifyParams | None:
        """The current job as miners see it."""
        return self.jobs.current_notify

    @property
    def difficulty(self) -> float:
        """The pool's share difficulty."""
        return self.jobs.difficulty

    def clean_line(self) -> bytes | None:
        """The current job with clean_jobs set, for miners just moved here."""
        return self.jobs.clean_line()

    @property
    def takes_easy_candidates(self) -> bool:
        """False once the pool refused a block candidate below its difficulty."""
        return self.state.takes_easy_candidates

    @property
    def accepts_shares(self) -> bool:
        """Open, or sent away by the pool (its shares wait for the session's resume)."""
        return not self.closing or self.redirected

    @property
    def pending(self) -> dict[int, PendingShare]:
        """Forwarded shares waiting for the pool's verdict, by our request id."""
        return self.requests.shares

    def new_extranonce(self, extranonce1: bytes, size: int, miners_per_connection: int) -> bool:
        """The pool changed our extranonce1 (and maybe the size): True when the miners'
        layout changes with it (they must be re-placed); else the next job carries on."""
        self.extranonce1 = extranonce1
        prefix_size = prefix_size_for(size, miners_per_connection)
        if (
            self.fold
            and prefix_size == self.prefix_size
            and size - prefix_size == self.miner_extranonce2_size
        ):
            self.extranonce2_size = size
            return False
        self.set_layout(extranonce1, size, miners_per_connection)
        return True

    def set_layout(self, extranonce1: bytes, size: int, miners_per_connection: int) -> None:
        """The pool's extranonce layout: how much of its extranonce2 each miner's prefix
        takes (none when it is too small to split: one miner, the pool's own E1)."""
        self.extranonce1 = extranonce1
        self.extranonce2_size = size
        self.prefix_size = prefix_size_for(size, miners_per_connection)
        self.fold = self.prefix_size > 0
        self.miner_extranonce2_size = size - self.prefix_size
        self.allocator = ExtranonceAllocator(self.prefix_size)


class UpstreamConnection(ChannelSurface[S], asyncio.Protocol):
    """A Stratum client session to one pool, shared by many miners."""

    def __init__(
        self, owner: ChannelOwner[S], state: S, ids: JobIds, *, resume_session: str | None = None
    ) -> None:
        super().__init__(state, ids, owner.config)
        self.manager = owner
        cfg = owner.config
        # The pool's session id of our last connection: offered at subscribe so the pool
        # can give the same extranonce1 back (ckpool does), and shares in flight when the
        # last connection was lost can be sent again here.
        self.resume_session = resume_session
        self.session_id: str | None = None
        self.framer = LineFramer(max(cfg.server.max_line_bytes, 64 * 1024))
        self.encoder = LineEncoder()
        self.transport: asyncio.Transport | None = None
        # Lazy, not log.bind(): a reload's new log level and format reach it too.
        self.log: Any = structlog.get_logger("proxy.upstream", pool=state.name)
        now = owner.clock()
        self.started_at = now
        self.last_message = now
        self.last_job = now
        self.ready = False
        self.retired = False  # no new miners; closed once it has nothing left to do
        self._retired_at = 0.0
        self._subscribed = False
        self._authorized = False
        self._leave_requested = False  # client.reconnect seen in the read being handled
        self.miners: set[MinerLink] = set()
        self.shares: ShareForwarder[S] = ShareForwarder(self)
        # The Channel's submit entry point, bound once: the share path makes one call.
        self.forward = self.shares.forward
        self.suggested = 0.0
        self._suggest_at = now

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send configure, subscribe and authorize at once (pools answer in order)."""
        # uvloop's transports do not subclass asyncio.Transport, but implement it.
        self.transport = cast("asyncio.Transport", transport)
        if self.closing:  # closed (handshake timeout, shutdown) while the connect was under way
            self.transport.close()
            return
        self.started_at = self.manager.clock()  # the handshake timeout starts now
        self.log.info("pool connected", url=f"{self.pool.host}:{self.pool.port}")
        rolling = {"version-rolling.mask": REQUESTED_VERSION_MASK, "version-rolling.min-bit-count": 2}
        self._request(self._on_configure_result, "mining.configure", [["version-rolling"], rolling])
        agent = f"stratum-proxy/{__version__}"
        resume = [self.resume_session] if self.resume_session else []
        self._request(self._on_subscribe_result, "mining.subscribe", [agent, *resume])
        self._request(self._on_authorize_result, "mining.authorize", [self.pool.user, self.pool.password])

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the owner, which carries the shares in flight to the next connection
        (or answers them with their local verdict)."""
        was_ready = self.ready
        self.closed = self.closing = True
        self.ready = False
        if not self.redirected:
            self.jobs.void_all()  # else routing decides: the pool may resume this session
        self.log.info("pool disconnected", reason=str(exc) if exc else "closed", was_ready=was_ready)
        self.manager.upstream_lost(self)

    def data_received(self, data: bytes) -> None:
        """Handle every complete line from the pool.

        A ``client.reconnect`` does not cut the read short: lines after it in the same
        read (ckpool writes a share's reject and the reconnect together) are handled
        first, so every verdict the pool sent reaches its miner.
        """
        self.last_message = self.manager.clock()
        for item in self.framer.feed(data):
            if self.closing:
                return
            try:
                if isinstance(item, LineTooLong):
                    raise item
                self._handle(decode_server_line(item))
            except FramingError as exc:
                self.log.warning("pool sent non-stratum data; closing", error=exc.message)
                self.close()
            except PeerError as exc:
                self.log.warning("pool sent a bad message", error=exc.message)
            except Exception:
                self.log.exception("error handling pool message")
                self.close()
        if self._leave_requested and not self.closing:
            self._leave_requested = False
            self.manager.upstream_leaving(self)

    # ------------------------------------------------------------------ pool -> proxy

    def _handle(self, msg: object) -> None:
        if isinstance(msg, Response):
            self._on_response(msg)
        elif isinstance(msg, Notify):
            self._on_notify(msg.params)
        elif isinstance(msg, SetDifficulty):
            self.jobs.set_difficulty(msg.params.difficulty)
            self.log.info("pool difficulty", difficulty=msg.params.difficulty)
        elif isinstance(msg, SetVersionMask):
            self._on_set_version_mask(msg.params.mask)
        elif isinstance(msg, SetExtranonce):
            self._on_set_extranonce(msg.params.extranonce1, msg.params.extranonce2_size)
        elif isinstance(msg, Reconnect):
            self._on_reconnect(msg)
        elif isinstance(msg, ShowMessage):
            self.log.info("pool message", text=msg.params.message[:500])
        elif isinstance(msg, GetVersion):
            reply = {"id": msg.id, "result": f"stratum-proxy/{__version__}", "error": None}
            self.send_line(self.encoder.encode(reply))

    def _on_response(self, msg: Response) -> None:
        request_id = msg.id
        pending = self.requests.shares.pop(request_id, None) if type(request_id) is int else None
        if pending is not None:
            self.shares.settle(pending, parse_share_reply(msg))
            return
        handler = self.requests.reply_handler(request_id)
        if handler is not None:
            handler(msg)

    def _on_configure_result(self, msg: Response) -> None:
        self.version_mask = granted_mask(msg.result)
        self.log.debug("pool version rolling", mask=f"{self.version_mask:08x}")

    def _on_subscribe_result(self, msg: Response) -> None:
        if self._subscribed:
            return  # a second result must not re-layout prefixes miners already hold
        try:
            result = parse_subscribe(msg.result)
        except HandshakeError as exc:
            self._handshake_failed(str(exc))
            return
        self._set_layout(result.extranonce1, result.extranonce2_size)
        self.session_id = result.session_id
        self.manager.upstream_subscribed(self)
        self._subscribed = True
        self._maybe_ready()

    def _on_authorize_result(self, msg: Response) -> None:
        if bytes(msg.result).strip() != b"true":
            reply = parse_share_reply(msg)
            self._handshake_failed(f"authorize refused: {reply.message}")
            return
        self._authorized = True
        # So the pool may change our extranonce1 without dropping us. Only now: ckpool
        # drops it, unanswered, from a client that is not yet authorized. Pools that do
        # not know the method answer an error, which we ignore.
        self._request(None, "mining.extranonce.subscribe", [])
        self._maybe_ready()

    def _set_layout(self, extranonce1: bytes, size: int) -> None:
        self.set_layout(extranonce1, size, self.manager.config.upstream.miners_per_connection)

    def _maybe_ready(self) -> None:
        if self.ready or not (self._subscribed and self._authorized) or self.current_line is None:
            return
        self.ready = True
        self.log.info(
            "pool ready",
            extranonce1=self.extranonce1.hex(),
            extranonce2_size=self.extranonce2_size,
            prefix_size=self.prefix_size,
            version_mask=f"{self.version_mask:08x}",
            difficulty=self.difficulty,
        )
        self.manager.upstream_ready(self)

    def _handshake_failed(self, reason: str) -> None:
        self.log.warning("pool handshake failed", reason=reason)
        self.state.failed(f"handshake failed: {reason}")
        self.close()

    def _on_notify(self, params: NotifyParams) -> None:
        if not self._subscribed:
            return  # jobs before the subscribe result cannot be folded yet; the pool resends
        now = self.manager.clock()
        try:
            new = self.jobs.take(params, now, self.extranonce1 if self.fold else b"")
        except JobError as exc:
            self.log.warning("pool sent a malformed job", error=str(exc))
            return
        self.last_job = now
        self.state.job_received(now, new is not None)
        if new is None:
            self.log.debug("job repeated", pool_job_id=params.job_id)
            return
        self.log.debug("job", job_id=new.job_id, pool_job_id=params.job_id, clean=new.clean)
        broadcast(self.miners, new, now, self.encoder)
        self._maybe_ready()

    def _on_set_version_mask(self, mask_hex: str) -> None:
        try:
            self.version_mask = int(mask_hex, 16) & 0xFFFFFFFF
        except ValueError:
            self.log.warning("pool sent a bad version mask", mask=mask_hex[:16])
            return
        for session in list(self.miners):
            session.on_version_mask()

    def _on_set_extranonce(self, extranonce1_hex: str, size: int) -> None:
        try:
            e1 = bytes.fromhex(extranonce1_hex)
        except ValueError:
            e1, size = b"", -1
        problem = layout_problem(e1, size)
        if problem or not self._subscribed:
            self.log.warning("pool sent an unusable mining.set_extranonce; closing", problem=problem)
            self.close()
            return
        self.jobs.void_all(force_clean=True)  # coinb1 of every job had the old E1 folded in
        if self.new_extranonce(e1, size, self.manager.config.upstream.miners_per_connection):
            self.manager.relayout(self)

    def _on_reconnect(self, msg: Reconnect) -> None:
        """The pool wants us elsewhere: once this read is handled, miners move to another
        connection and this one closes when the pool has answered what is in flight (at
        most ``submit_timeout``), so no verdict is replaced by one of ours."""
        self.log.info("pool asked to reconnect", host=msg.params.host, port=msg.params.port)
        self.manager.pool_redirect(self, msg.params.host, msg.params.port, msg.params.wait or 0.0)
        self._leave_requested = True
        self.redirected = True

    # ------------------------------------------------------------------ housekeeping

    def sweep(self, now: float) -> None:
        """Submit timeouts, handshake timeout and pool silence."""
        for share in self.requests.expired(now, self.manager.config.server.submit_timeout):
            self.state.submit_timed_out()
            self.shares.settle(share, None)
        upstream = self.manager.config.upstream
        connected = self.transport is not None  # the connect has a timeout of its own
        if (
            connected
            and not self.ready
            and not self.closing
            and now - self.started_at > upstream.handshake_timeout
        ):
            self._handshake_failed("handshake timeout")
        elif self.ready and now - max(self.last_message, self.last_job) > upstream.silence_timeout:
            self.log.warning("pool silent; closing", seconds=round(now - self.last_message, 1))
            self.state.failed(f"silent for {now - self.last_message:.0f} s")
            self.close()
        if self.retired and not self.closing and not self.pending and now - self._retired_at >= RETIRE_GRACE:
            self.close()
        if self.ready and now >= self._suggest_at:
            self._suggest_at = now + SUGGEST_INTERVAL
            self._maybe_suggest()

    def _maybe_suggest(self) -> None:
        """Ask the pool for the difficulty the miners want, when it is clearly higher."""
        if not self.manager.config.upstream.suggest_difficulty or not self.miners:
            return
        most = max(session.wanted_difficulty for session in self.miners)
        wanted = suggestion_due(most, self.difficulty, self.suggested)
        if wanted is not None:
            self.suggested = wanted
            self.log.info("suggesting difficulty to pool", difficulty=wanted, current=self.difficulty)
            self._request(None, "mining.suggest_difficulty", [wanted])

    def _request(self, handler: Any, method: str, params: list[Any]) -> None:
        """Send a request; its reply goes to ``handler`` (None: the reply is not needed)."""
        request_id = self.requests.take() if handler is None else self.requests.expect(handler)
        self.send_line(self.encoder.encode({"id": request_id, "method": method, "params": params}))

    def send_line(self, line: bytes) -> None:
        """Write a line to the pool (dropped once the connection is closed)."""
        if self.transport is not None and not self.closed:
            self.transport.write(line)

    def retire(self) -> None:
        """Take no new miners; close after :data:`RETIRE_GRACE` once nothing is in flight.

        The grace lets miners just moved elsewhere finish shares on this connection's
        jobs (a block among them still reaches the pool that issued the job)."""
        if not self.retired:
            self.retired = True
            self._retired_at = self.manager.clock()

    def close(self) -> None:
        """Close the connection; :meth:`connection_lost` does the rest.

        Before the TCP connect completed there is no transport yet: ``closing`` makes
        :meth:`connection_made` close it the moment it exists.
        """
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class ShareForwarder(Generic[S]):
    """The submit path of one connection: shares out, verdicts back to their miners."""

    __slots__ = ("conn",)

    def __init__(self, conn: UpstreamConnection[S]) -> None:
        self.conn = conn

    def forward(
        self,
        session: MinerLink,
        request_id: Any,
        stats: WorkerStats | None,
        validator: ShareValidator,
        verdict: Verdict,
        *,
        attended: bool = True,
    ) -> None:
        """Submit a share that meets the pool's target (or is a block) upstream.

        ``verdict`` is the local one: accepted upstream, a block candidate, or (a candidate
        below the miner's own target, test networks only) low difficulty.
        ``attended``: the miner waits for the pool's verdict (else it was answered already).
        """
        job = validator.job
        assert job is not None
        en2 = session.prefix + validator.extranonce2 if self.conn.fold else validator.extranonce2
        # The base job's id: a pool's repeat may have renamed the job.
        params = [self.conn.pool.user, job.base.upstream_job_id, en2.hex(), f"{validator.ntime:08x}"]
        params.append(f"{validator.nonce:08x}")
        if self.conn.version_mask:
            params.append(f"{validator.version & self.conn.version_mask:08x}")
        block_hash = 0
        if verdict is Verdict.BLOCK_CANDIDATE or verdict is Verdict.LOW_DIFFICULTY:  # both: candidates
            block_hash = validator.hash_int
            self.conn.state.block_candidate()
        share = PendingShare(
            session,
            request_id,
            stats,
            validator.difficulty,
            verdict,
            self.conn.manager.clock(),
            attended=attended,
            block_hash=block_hash,
            params=params,
        )
        self.resubmit(share)

    def resubmit(self, pending: PendingShare) -> None:
        """Send a share: new, or in flight on a lost connection of the same pool session
        (same extranonce1), which then gets the pool's verdict after all. Its timeout runs
        from the first send."""
        if self.conn.closed:
            self.conn.manager.carry(self.conn, pending)  # sent away: wait for the resume
            return
        submit_id = self.conn.requests.share(pending)
        self.conn.send_line(
            self.conn.encoder.encode({"id": submit_id, "method": "mining.submit", "params": pending.params})
        )

    def same_session_as(self, other: UpstreamConnection[S]) -> bool:
        """True when shares built for ``other`` are valid here: the pool resumed the
        session (same extranonce1 and layout)."""
        return (
            self.conn.extranonce1 == other.extranonce1
            and self.conn.extranonce2_size == other.extranonce2_size
            and self.conn.fold == other.fold
        )

    def take_pending(self) -> list[PendingShare]:
        """Hand over every share still waiting for a verdict (the connection is gone)."""
        return self.conn.requests.take_shares()

    def settle(self, pending: PendingShare, reply: ShareReply | None) -> None:
        """Answer a forwarded share: the pool's verdict, or None (the local one)."""
        self.conn.manager.share_settled(self.conn, reply, self.conn.manager.clock() - pending.sent_at)
        if pending.block_hash and reply is not None:
            self._candidate_settled(pending, reply)
        if not pending.attended:
            return
        pending.session.pending_forwards -= 1
        if not pending.session.closed:
            pending.session.answer_forwarded(
                pending.request_id, pending.stats, pending.difficulty, reply, pending.verdict
            )

    def _candidate_settled(self, pending: PendingShare, reply: ShareReply) -> None:
        """The pool's word on a block candidate: a block is counted only when it accepts.

        A candidate below the pool's difficulty that the pool refuses shows a network
        easier than the pool (regtest, testnet): such candidates are not blocks to this
        pool, and sending more of them only earns the connection the pool's penalties
        (ckpool answers "Above target" and then refuses the connection for a while).
        """
        if reply.accepted:
            if pending.stats is not None:
                pending.stats.blocks += 1
            self.conn.state.block_accepted(pending.stats, pending.block_hash)
        elif self.conn.state.takes_easy_candidates and reply.code != 21 and pending.below_pool:
            self.conn.state.takes_easy_candidates = False
            self.conn.log.warning(
                "pool refuses block candidates below its share difficulty (a test network?);"
                " no more are sent on this connection",
                reason=reply.message,
            )

    def flush_pending(self) -> None:
        """Answer every share in flight with its local verdict (shutdown)."""
        for share in self.take_pending():
            self.settle(share, None)
