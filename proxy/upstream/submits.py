"""Requests to a pool and the replies they wait for: a correlation table, not fixed ids.

Every request a channel sends gets the next id of one counter. A share waits in
:attr:`RequestTable.shares` (it has a timeout and a miner to answer); any other request
(configure, subscribe, authorize, suggest_difficulty) waits with the callback that handles
its reply. A reply with an id we never used, or used and already settled, is ignored: the
pool's ids are its word about our requests, never a way to reach something else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxy.mining.share import Verdict
from proxy.stats import WorkerStats
from proxy.stratum.messages import Response
from proxy.upstream.channel import MinerLink


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
        session: MinerLink,
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

    @property
    def below_pool(self) -> bool:
        """True for a block candidate that missed the pool's difficulty (test networks):
        answered already, or (below the miner's own target too) judged low difficulty."""
        return not self.attended or self.verdict is Verdict.LOW_DIFFICULTY


ReplyHandler = Callable[[Response], None]


class RequestTable:
    """Ids for our requests to one pool connection, and what waits for each reply."""

    __slots__ = ("_handlers", "_next", "shares")

    def __init__(self) -> None:
        self._next = 1
        self._handlers: dict[int, ReplyHandler] = {}
        self.shares: dict[int, PendingShare] = {}

    def take(self) -> int:
        """A fresh request id."""
        request_id = self._next
        self._next = request_id + 1
        return request_id

    def expect(self, handler: ReplyHandler) -> int:
        """A fresh id whose reply goes to ``handler``."""
        request_id = self.take()
        self._handlers[request_id] = handler
        return request_id

    def share(self, pending: PendingShare) -> int:
        """A fresh id for a share submit."""
        request_id = self.take()
        self.shares[request_id] = pending
        return request_id

    def reply_handler(self, request_id: object) -> ReplyHandler | None:
        """Who waits for the reply with this id (forgotten once asked), if anyone."""
        if type(request_id) is not int:
            return None
        return self._handlers.pop(request_id, None)

    def take_shares(self) -> list[PendingShare]:
        """Every share still waiting, handed over (the connection is gone or stopping)."""
        shares, self.shares = self.shares, {}
        return list(shares.values())

    def expired(self, now: float, timeout: float) -> list[PendingShare]:
        """Remove and return the shares sent more than ``timeout`` seconds ago."""
        late = [key for key, share in self.shares.items() if now - share.sent_at > timeout]
        return [self.shares.pop(key) for key in late]
