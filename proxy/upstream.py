"""One connection to a pool: handshake, jobs in, shares out, verdicts back.

The connection subscribes once for many miners. The pool's extranonce1 (E1) is folded into
the coinb1 the miners receive, and each miner gets a distinct prefix of the pool's
extranonce2 as its own extranonce1 (PROTOCOL.md, "Aggregation"): the miner's extranonce1 is
then independent of the pool, so moving a miner to another pool connection with the same
layout changes nothing the miner was told at subscribe. When the pool's extranonce2 is too
small to split, the connection serves one miner, which then sees the pool's E1 unchanged.

Each pool job becomes one proxy job with a process-unique id, encoded once and written to
every miner on the connection.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, Final, cast

import msgspec
import structlog

from proxy import __version__
from proxy.mining.extranonce import ExtranonceAllocator, prefix_size_for
from proxy.mining.job import Job, JobBook, JobError, JobIds
from proxy.mining.share import ShareValidator, Verdict
from proxy.mining.target import target_from_difficulty
from proxy.stats import WorkerStats
from proxy.stratum.codec import LineEncoder, ShareReply, decode_server_line, encode_notify, parse_share_reply
from proxy.stratum.errors import FramingError, LineTooLong, PeerError
from proxy.stratum.framing import LineFramer
from proxy.stratum.messages import (
    GetVersion,
    Notify,
    NotifyParams,
    Reconnect,
    Response,
    SetDifficulty,
    SetDifficultyParams,
    SetExtranonce,
    SetVersionMask,
    ShowMessage,
)

if TYPE_CHECKING:
    from proxy.downstream import MinerSession
    from proxy.pools import PoolManager, PoolState

log = structlog.get_logger("proxy.upstream")

REQUESTED_VERSION_MASK: Final = "ffffffff"
"""Ask the pool for every bit; it grants what it allows."""

_CONFIGURE_ID: Final = 1
_SUBSCRIBE_ID: Final = 2
_AUTHORIZE_ID: Final = 3
_EXTRANONCE_SUBSCRIBE_ID: Final = 4
_FIRST_SUBMIT_ID: Final = 10

SUGGEST_INTERVAL: Final = 10.0
"""Seconds between looks at whether the pool should be asked for a higher difficulty."""

RETIRE_GRACE: Final = 5.0
"""Seconds a retired connection stays open for shares on its jobs (a miner that was just
moved away sees the new job within milliseconds; this covers shares already in flight)."""

SUGGEST_HYSTERESIS: Final = 1.5
"""Only suggest when miners want at least this much more than the pool gives."""


class PendingShare:
    """A forwarded share waiting for the pool's verdict."""

    __slots__ = (
        "attended",
        "block_hash",
        "difficulty",
        "params",
        "request_id",
        "sent_at",
        "session",
        "stats",
        "verdict",
    )

    def __init__(
        self,
        session: MinerSession,
        request_id: Any,
        stats: WorkerStats | None,
        difficulty: float,
        verdict: Verdict,
        sent_at: float,
        *,
        attended: bool = True,
        block_hash: int = 0,
        params: list[str] | None = None,
    ) -> None:
        self.session = session
        self.request_id = request_id
        self.stats = stats
        self.difficulty = difficulty
        self.verdict = verdict
        self.sent_at = sent_at
        # False: the miner was already answered (a candidate below the pool's difficulty);
        # the pool's verdict only says whether it was a block.
        self.attended = attended
        self.block_hash = block_hash  # a block candidate's hash, for the log of a real block
        # The mining.submit params as sent: the share can be sent again on a new connection
        # that resumed the same pool session (extranonce1), if this one is lost first.
        self.params = params or []


class UpstreamConnection(asyncio.Protocol):
    """A Stratum client session to one pool, shared by many miners."""

    def __init__(
        self, manager: PoolManager, state: PoolState, ids: JobIds, *, resume_session: str | None = None
    ) -> None:
        self.manager = manager
        # The pool's session id of our last connection: offered at subscribe so the pool
        # can give the same extranonce1 back (ckpool does), and shares in flight when the
        # last connection was lost can be sent again here.
        self.resume_session = resume_session
        self.session_id: str | None = None
        self.state = state  # the configured pool this connection belongs to
        self.pool = state.config
        cfg = manager.config
        self.framer = LineFramer(max(cfg.server.max_line_bytes, 64 * 1024))
        self.encoder = LineEncoder()
        self.transport: asyncio.Transport | None = None
        # Lazy, not log.bind(): a reload's new log level and format reach it too.
        self.log: Any = structlog.get_logger("proxy.upstream", pool=state.name)
        now = manager.clock()
        self.started_at = now
        self.last_message = now
        self.last_job = now
        self.ready = False
        self.closing = False  # close() was called: handle nothing more from the pool
        self.closed = False
        self.retired = False  # no new miners; closed once it has nothing left to do
        self._retired_at = 0.0
        # Layout, from the subscribe result.
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.prefix_size = 0
        self.fold = True
        self.miner_extranonce2_size = 0
        self.allocator = ExtranonceAllocator(0)
        self._subscribed = False
        self._authorized = False
        self.version_mask = 0
        self.difficulty = 1.0
        self.book = JobBook(ids, ntime_window=cfg.server.ntime_window)
        self.current_notify: NotifyParams | None = None
        self._pool_notify: NotifyParams | None = None  # the current job as the pool sent it
        self.current_line: bytes | None = None
        self._clean_line: bytes | None = None
        # Set when every job was voided without the pool saying so (our extranonce1
        # changed): the next job goes to miners with clean_jobs, so none keeps stale work.
        self._force_clean = False
        # A pool difficulty change waiting for the next job to carry it to the miners.
        self._pending_ceiling: float | None = None
        self._leave_requested = False  # client.reconnect seen in the read being handled
        self.redirected = False  # the pool sent us away: its session may be resumed
        # Block candidates below the pool's difficulty (test networks only) are sent until
        # the pool refuses one: then it evidently does not take them as blocks.
        self.takes_easy_candidates = True
        self.miners: set[MinerSession] = set()
        self._next_id = _FIRST_SUBMIT_ID
        self.pending: dict[int, PendingShare] = {}
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
        self._request(
            _CONFIGURE_ID,
            "mining.configure",
            [
                ["version-rolling"],
                {"version-rolling.mask": REQUESTED_VERSION_MASK, "version-rolling.min-bit-count": 2},
            ],
        )
        agent = f"stratum-proxy/{__version__}"
        resume = [self.resume_session] if self.resume_session else []
        self._request(_SUBSCRIBE_ID, "mining.subscribe", [agent, *resume])
        self._request(_AUTHORIZE_ID, "mining.authorize", [self.pool.user, self.pool.password])

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the manager, which carries the shares in flight to the next connection
        (or answers them with their local verdict)."""
        was_ready = self.ready
        self.closed = True
        self.ready = False
        self.book.void_all()
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
            self._on_set_difficulty(msg.params.difficulty)
        elif isinstance(msg, SetVersionMask):
            self._on_set_version_mask(msg.params.mask)
        elif isinstance(msg, SetExtranonce):
            self._on_set_extranonce(msg.params.extranonce1, msg.params.extranonce2_size)
        elif isinstance(msg, Reconnect):
            self._on_reconnect(msg)
        elif isinstance(msg, ShowMessage):
            self.log.info("pool message", text=msg.params.message[:500])
        elif isinstance(msg, GetVersion):
            self._send_line(
                self.encoder.encode({"id": msg.id, "result": f"stratum-proxy/{__version__}", "error": None})
            )

    def _on_response(self, msg: Response) -> None:
        request_id = msg.id
        if isinstance(request_id, int) and request_id >= _FIRST_SUBMIT_ID:
            pending = self.pending.pop(request_id, None)
            if pending is not None:
                self.settle(pending, parse_share_reply(msg))
            return
        if request_id == _CONFIGURE_ID:
            self._on_configure_result(msg)
        elif request_id == _SUBSCRIBE_ID:
            self._on_subscribe_result(msg)
        elif request_id == _AUTHORIZE_ID:
            self._on_authorize_result(msg)

    def _on_configure_result(self, msg: Response) -> None:
        try:
            result = msgspec.json.decode(msg.result)
            if isinstance(result, dict) and result.get("version-rolling") is True:
                self.version_mask = int(str(result.get("version-rolling.mask", "0")), 16) & 0xFFFFFFFF
        except (msgspec.DecodeError, ValueError):
            self.version_mask = 0
        self.log.debug("pool version rolling", mask=f"{self.version_mask:08x}")

    def _on_subscribe_result(self, msg: Response) -> None:
        if self._subscribed:
            return  # a second result must not re-layout prefixes miners already hold
        try:
            subscriptions, extranonce1, size = msgspec.json.decode(msg.result, type=tuple[Any, str, int])
            e1 = bytes.fromhex(extranonce1)
        except (msgspec.DecodeError, ValueError):
            self._handshake_failed(f"bad subscribe result: {bytes(msg.result)[:200]!r}")
            return
        problem = _layout_problem(e1, size)
        if problem:
            self._handshake_failed(problem)
            return
        self._set_layout(e1, size)
        self.session_id = _notify_session_id(subscriptions)
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
        self._request(_EXTRANONCE_SUBSCRIBE_ID, "mining.extranonce.subscribe", [])
        self._maybe_ready()

    def _set_layout(self, extranonce1: bytes, size: int) -> None:
        self.extranonce1 = extranonce1
        self.extranonce2_size = size
        self.prefix_size = prefix_size_for(size, self.manager.config.upstream.miners_per_connection)
        self.fold = self.prefix_size > 0
        self.miner_extranonce2_size = size - self.prefix_size
        self.allocator = ExtranonceAllocator(self.prefix_size)

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
        self.close()

    def _on_notify(self, params: NotifyParams) -> None:
        now = self.manager.clock()
        if not self._subscribed:
            return  # jobs before the subscribe result cannot be folded yet; the pool resends
        repeated = self.book.current if self._same_as_current(params) else None
        if repeated is not None:
            if self._pending_ceiling is None:
                self._repeat_current(repeated, params, now)
                return
            # A difficulty change rides on it: it goes out under a new id, but the old id
            # (the same work, renamed upstream like the new one) stays valid.
            repeated.upstream_job_id = params.job_id
            self.book.void_others(repeated)
            params = msgspec.structs.replace(params, clean_jobs=False)
        job_id, seq = self.book.ids.take()
        try:
            job = Job.from_fields(
                params,
                job_id=job_id,
                seq=seq,
                created=now,
                upstream_target=self.book.upstream_target,
                coinb1_suffix=self.extranonce1 if self.fold else b"",
            )
        except JobError as exc:
            self.log.warning("pool sent a malformed job", error=str(exc))
            return
        if repeated is not None:
            job.seen = repeated.seen  # one header: a share is a duplicate under either id
        self.book.add(job)
        self._pool_notify = params
        coinb1 = params.coinb1 + self.extranonce1.hex() if self.fold else params.coinb1
        clean = params.clean_jobs or self._force_clean
        self._force_clean = False
        downstream = msgspec.structs.replace(params, job_id=job_id, coinb1=coinb1, clean_jobs=clean)
        line = encode_notify(downstream)
        self.current_notify = downstream
        self.current_line = line
        self._clean_line = line if clean else None
        self.last_job = now
        self.manager.job_received(self)
        self.log.debug("job", job_id=job_id, pool_job_id=params.job_id, clean=clean)
        ceiling, self._pending_ceiling = self._pending_ceiling, None
        if ceiling is not None:
            self._broadcast_with_ceiling(ceiling, seq, line, now)
        else:
            for session in self.miners:
                session.send_job(line)
        self._maybe_ready()

    def _same_as_current(self, params: NotifyParams) -> bool:
        """True when the pool re-sent its current job unchanged (ckpool does, with
        clean_jobs, e.g. after a restart); its own job id may differ.

        Issuing it as a clean job under a new id would void the old id, while miners that
        keep their work when the header is unchanged (cpuminer) go on submitting the old
        id: every share "Job not found". So the old id stays valid.
        """
        previous = self._pool_notify
        if previous is None or self.book.current is None or self._force_clean:
            return False
        return (
            msgspec.structs.replace(params, job_id=previous.job_id, clean_jobs=previous.clean_jobs)
            == previous
        )

    def _repeat_current(self, current: Job, params: NotifyParams, now: float) -> None:
        """Nothing new for the miners: shares on the current job go up under the pool's
        (possibly new) id from now on; a clean resend still voids every other job."""
        current.upstream_job_id = params.job_id
        if params.clean_jobs:
            self.book.void_others(current)
        self._pool_notify = params
        self.last_job = now
        self.manager.job_received(self)
        self.log.debug("job repeated", job_id=current.job_id, pool_job_id=params.job_id)

    def _broadcast_with_ceiling(self, ceiling: float, seq: int, line: bytes, now: float) -> None:
        """Send a job that carries a new pool difficulty: each miner whose difficulty must
        change gets ``set_difficulty`` first (encoded once per distinct value), then the
        same job line as everyone else, so the change takes effect with this job."""
        encoded: dict[float, bytes] = {}
        for session in list(self.miners):
            difficulty = session.clamp_to_pool(ceiling, seq, now)
            if difficulty is not None:
                prefix = encoded.get(difficulty)
                if prefix is None:
                    prefix = encoded[difficulty] = self.encoder.encode(
                        SetDifficulty(params=SetDifficultyParams(difficulty))
                    )
                session.send_job(prefix)
            session.send_job(line)

    def clean_line(self) -> bytes | None:
        """The current job with clean_jobs set, for miners just moved here (encoded once)."""
        if self._clean_line is None and self.current_notify is not None:
            self._clean_line = encode_notify(msgspec.structs.replace(self.current_notify, clean_jobs=True))
        return self._clean_line

    def _on_set_difficulty(self, difficulty: float) -> None:
        # Like a miner, the pool applies a new difficulty to its next job; so do we: the
        # miners are clamped when that job arrives, in one broadcast (see _on_notify).
        self.difficulty = difficulty
        self.book.upstream_target = target_from_difficulty(difficulty)
        self._pending_ceiling = difficulty
        self.log.info("pool difficulty", difficulty=difficulty)

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
        problem = _layout_problem(e1, size)
        if problem or not self._subscribed:
            self.log.warning("pool sent an unusable mining.set_extranonce; closing", problem=problem)
            self.close()
            return
        self.book.void_all()  # coinb1 of every job had the old E1 folded in
        self.current_notify = self.current_line = self._clean_line = self._pool_notify = None
        self._force_clean = True
        self.extranonce1 = e1
        prefix_size = prefix_size_for(size, self.manager.config.upstream.miners_per_connection)
        if (
            self.fold
            and prefix_size == self.prefix_size
            and size - prefix_size == self.miner_extranonce2_size
        ):
            self.extranonce2_size = size
            return  # the miners' layout is unchanged: the pool's next notify carries on
        self._set_layout(e1, size)
        self.manager.relayout(self)

    def _on_reconnect(self, msg: Reconnect) -> None:
        """The pool wants us elsewhere: once this read is handled, miners move to another
        connection and this one closes when the pool has answered what is in flight (at
        most ``submit_timeout``), so no verdict is replaced by one of ours."""
        self.log.info("pool asked to reconnect", host=msg.params.host, port=msg.params.port)
        self.manager.pool_redirect(self, msg.params.host, msg.params.port, msg.params.wait or 0.0)
        self._leave_requested = True
        self.redirected = True

    # ------------------------------------------------------------------ shares

    def forward(
        self,
        session: MinerSession,
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
        submit_id = self._take_id()
        params = [
            self.pool.user,
            job.base.upstream_job_id,  # the base: a pool's repeat may rename the job
            (session.prefix + validator.extranonce2).hex() if self.fold else validator.extranonce2.hex(),
            f"{validator.ntime:08x}",
            f"{validator.nonce:08x}",
        ]
        if self.version_mask:
            params.append(f"{validator.version & self.version_mask:08x}")
        now = self.manager.clock()
        block_hash = 0
        if verdict is Verdict.BLOCK_CANDIDATE or verdict is Verdict.LOW_DIFFICULTY:  # both: candidates
            block_hash = validator.hash_int
            self.manager.block_candidate(self)
        self.pending[submit_id] = PendingShare(
            session,
            request_id,
            stats,
            validator.difficulty,
            verdict,
            now,
            attended=attended,
            block_hash=block_hash,
            params=params,
        )
        self._send_line(self.encoder.encode({"id": submit_id, "method": "mining.submit", "params": params}))

    def resubmit(self, pending: PendingShare) -> None:
        """Send again a share that was in flight on a lost connection of the same pool
        session (same extranonce1): it gets the pool's verdict after all. Its timeout
        still runs from the first send."""
        submit_id = self._take_id()
        self.pending[submit_id] = pending
        line = {"id": submit_id, "method": "mining.submit", "params": pending.params}
        self._send_line(self.encoder.encode(line))

    def same_session_as(self, other: UpstreamConnection) -> bool:
        """True when shares built for ``other`` are valid here: the pool resumed the
        session (same extranonce1 and layout)."""
        return (
            self.extranonce1 == other.extranonce1
            and self.extranonce2_size == other.extranonce2_size
            and self.fold == other.fold
        )

    def take_pending(self) -> list[PendingShare]:
        """Hand over every share still waiting for a verdict (the connection is gone)."""
        pending, self.pending = self.pending, {}
        return list(pending.values())

    def settle(self, pending: PendingShare, reply: ShareReply | None) -> None:
        """Answer a forwarded share: the pool's verdict, or None (the local one)."""
        now = self.manager.clock()
        self.manager.share_settled(self, reply, now - pending.sent_at)
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
            self.manager.block_accepted(self, pending.stats, pending.block_hash)
        elif self.takes_easy_candidates and reply.code != 21 and _below_pool(pending):
            self.takes_easy_candidates = False
            self.log.warning(
                "pool refuses block candidates below its share difficulty (a test network?);"
                " no more are sent on this connection",
                reason=reply.message,
            )

    def flush_pending(self) -> None:
        """Answer every share in flight with its local verdict (connection lost, shutdown)."""
        pending, self.pending = self.pending, {}
        for share in pending.values():
            self.settle(share, None)

    # ------------------------------------------------------------------ housekeeping

    def sweep(self, now: float) -> None:
        """Submit timeouts, handshake timeout and pool silence."""
        timeout = self.manager.config.server.submit_timeout
        expired = [key for key, share in self.pending.items() if now - share.sent_at > timeout]
        for key in expired:
            self.manager.submit_timed_out(self)
            self.settle(self.pending.pop(key), None)
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
            self.close()
        if self.retired and not self.closing and not self.pending and now - self._retired_at >= RETIRE_GRACE:
            self.close()
        if self.ready and now >= self._suggest_at:
            self._suggest_at = now + SUGGEST_INTERVAL
            self._maybe_suggest()

    def _maybe_suggest(self) -> None:
        """Ask the pool for a higher difficulty when the miners would want it.

        A miner's difficulty is capped at the pool's (so no work is lost), which makes a
        fast miner under a low pool difficulty submit far more shares than it should. When
        the miners would go higher, suggesting the highest wanted difficulty lets them:
        every share the pool then credits is still found by miners at or below it.
        """
        if not self.manager.config.upstream.suggest_difficulty or not self.miners:
            return
        wanted = suggestion(max(session.vardiff.wanted for session in self.miners))
        if wanted > self.difficulty * SUGGEST_HYSTERESIS and wanted != self.suggested:
            self.suggested = wanted
            self.log.info("suggesting difficulty to pool", difficulty=wanted, current=self.difficulty)
            self._request(self._take_id(), "mining.suggest_difficulty", [wanted])

    def _take_id(self) -> int:
        request_id = self._next_id
        self._next_id = request_id + 1
        return request_id

    def _request(self, request_id: int, method: str, params: list[Any]) -> None:
        self._send_line(self.encoder.encode({"id": request_id, "method": method, "params": params}))

    def _send_line(self, line: bytes) -> None:
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


def _notify_session_id(subscriptions: object) -> str | None:
    """The session id of a subscribe result's ``mining.notify`` entry, if it has one."""
    if not isinstance(subscriptions, list):
        return None
    for entry in subscriptions:
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == "mining.notify":
            sid = entry[1]
            if isinstance(sid, str) and 0 < len(sid) <= 64:
                return sid
    return None


def _below_pool(pending: PendingShare) -> bool:
    """True for a block candidate that missed the pool's difficulty (see ``forward``)."""
    return not pending.attended or pending.verdict is Verdict.LOW_DIFFICULTY


def suggestion(wanted: float) -> float | int:
    """The value sent in ``mining.suggest_difficulty``: an integer from 1 up, rounded down.

    ckpool parses the parameter only as an integer ("Failed to parse suggest_difficulty"
    for 3.3). Rounding down keeps every miner at or below what the pool then gives, so no
    miner is clamped above its pool. Below 1 an integer cannot express it: sent as is.
    """
    return math.floor(wanted) if wanted >= 1 else wanted


def _layout_problem(extranonce1: bytes, extranonce2_size: int) -> str:
    """Why a pool's extranonce layout is unusable, or "" when it is fine."""
    if not 1 <= extranonce2_size <= 32 or len(extranonce1) > 32:
        sizes = f"extranonce1 {len(extranonce1)} bytes, extranonce2 {extranonce2_size}"
        return f"unusable extranonce layout: {sizes}"
    return ""
