"""The interface between miner sessions and upstream channels, in both directions.

Sessions hold a :class:`Channel` (what they mine on); a channel holds the
:class:`MinerLink` of each miner placed on it. Both are protocols, so neither side
imports the other: the routing layer, which alone decides placement, connects them.
"""

from __future__ import annotations

from typing import Any, Protocol

from proxy.mining.job import JobBook
from proxy.mining.share import ShareValidator, Verdict
from proxy.stats import WorkerStats
from proxy.stratum.codec import ShareReply
from proxy.stratum.messages import NotifyParams


class MinerLink(Protocol):
    """A miner session as a channel sees it: where jobs go and verdicts come back."""

    prefix: bytes
    """The miner's extranonce prefix on this channel (its share of the pool's extranonce2)."""
    pending_forwards: int
    """Shares of this miner waiting for a pool verdict."""
    closed: bool

    @property
    def wanted_difficulty(self) -> float:
        """The difficulty the miner would get without the pool's ceiling."""

    def send_job(self, line: bytes) -> None:
        """Write a job (or a set_difficulty before one) to the miner."""

    def clamp_to_pool(self, pool_difficulty: float, seq: int, now: float) -> float | None:
        """The pool's difficulty changed with job ``seq``: the miner's new difficulty, if any."""

    def on_version_mask(self) -> None:
        """The pool changed its version mask."""

    def answer_forwarded(
        self,
        request_id: Any,
        stats: WorkerStats | None,
        difficulty: float,
        reply: ShareReply | None,
        verdict: Verdict = ...,
    ) -> None:
        """The pool's verdict on a forwarded share (None: the local verdict stands)."""


class Channel(Protocol):
    """An upstream channel as a miner session sees it (read-only: routing and the
    channel itself change it)."""

    @property
    def book(self) -> JobBook:
        """The channel's live jobs, which the session's validator judges shares against."""

    @property
    def current_line(self) -> bytes | None:
        """The current job, encoded once for every miner."""

    @property
    def current_notify(self) -> NotifyParams | None:
        """The current job's fields as miners see them (for re-issuing it under a new id)."""

    @property
    def version_mask(self) -> int:
        """The version-rolling mask the pool granted."""

    @property
    def difficulty(self) -> float:
        """The pool's share difficulty: the ceiling of every miner on the channel."""

    @property
    def extranonce1(self) -> bytes:
        """The pool's extranonce1 for this connection."""

    @property
    def fold(self) -> bool:
        """True when the pool's extranonce1 is folded into coinb1 (miners get only a prefix)."""

    @property
    def miner_extranonce2_size(self) -> int:
        """The extranonce2 size a miner on this channel gets."""

    @property
    def closing(self) -> bool:
        """True once the channel is closing: nothing more can be sent on it."""

    @property
    def accepts_shares(self) -> bool:
        """True while a share on its jobs can still get the pool's verdict through it."""

    @property
    def takes_easy_candidates(self) -> bool:
        """False once the pool refused a block candidate below its difficulty (test networks)."""

    def clean_line(self) -> bytes | None:
        """The current job with clean_jobs set, for a miner just moved here."""

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
        """Submit the share the validator just checked to the pool."""
