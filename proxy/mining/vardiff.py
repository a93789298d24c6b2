"""Variable difficulty per miner, pure: time is passed in as ``now``.

Each miner should submit a share about every ``target_interval`` seconds, whatever its
hashrate: few enough shares to keep the proxy cheap, enough to measure the miner. Share
arrival is a Poisson process whose rate is ``hashrate / (difficulty * 2**32)``, so the
interval observed over a window scales linearly with difficulty and the correction is
``difficulty * target_interval / observed_interval``.

The estimate is noisy over few shares, so a retarget waits for enough shares or enough
time, moves at most :data:`MAX_STEP` per retarget, and ignores corrections inside the
:data:`DEADBAND` to avoid flapping (every change costs the miner a fresh job).

The rate is measured in work, not in shares: each share counts the difficulty it was
judged at. A miner that has not applied a raise yet (it applies difficulty to its next
job, and some firmware keeps its work while the header is unchanged) goes on finding
shares at the old, lower difficulty; counted as shares at the new one they would look
like a miner that got faster, and vardiff would raise again and again. For the same
reason, after a raise no further raise happens until a share judged at the new
difficulty arrives, or :data:`RAISE_HOLD_WINDOWS` retarget intervals have passed.
"""

from __future__ import annotations

import math
from typing import Final

SHARES_PER_RETARGET: Final = 16
"""Shares in a window before the rate is trusted (16 shares: about +-25% at 1 sigma)."""

MAX_STEP: Final = 8.0
"""At most x8 or /8 per retarget: a new ASIC at a CPU-miner difficulty still converges in
a few steps, and a noisy window cannot swing a miner wildly."""

DEADBAND: Final = (0.7, 1.4)
"""Corrections within this factor are left alone."""

RAISE_HOLD_WINDOWS: Final = 4
"""Retarget intervals a raise waits to be seen in the miner's shares before another raise
may follow: long enough for a miner that applies difficulty to its next job to have had
one (pools send jobs every 30-60 s), short enough that a miner that ignores set_difficulty
is still measured, by the work-weighted rate, rather than frozen."""


def clamp(value: float, low: float, high: float) -> float:
    """``value`` bounded to ``[low, high]`` (``low`` wins if the bounds cross)."""
    return max(low, min(value, high))


class Vardiff:
    """One miner's difficulty controller.

    ``ceiling`` is the upstream clamp: a miner's difficulty never exceeds the difficulty of
    the pool session its shares go to, or the pool would credit less work than was done.
    ``floor`` is raised by BIP310 ``minimum-difficulty`` and ``suggest_difficulty``.
    """

    __slots__ = (
        "_ceiling",
        "_floor",
        "_raised_at",
        "_raised_to",
        "_shares",
        "_window_start",
        "_work",
        "difficulty",
        "enabled",
        "maximum",
        "minimum",
        "retarget_interval",
        "target_interval",
        "wanted",
    )

    def __init__(
        self,
        *,
        initial: float,
        minimum: float,
        maximum: float,
        target_interval: float,
        retarget_interval: float,
        now: float,
        enabled: bool = True,
        ceiling: float = math.inf,
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.target_interval = target_interval
        self.retarget_interval = retarget_interval
        self.enabled = enabled
        self._floor = minimum
        self._ceiling = ceiling
        self._shares = 0
        self._work = 0.0  # the sum of the difficulties the window's shares were judged at
        self._window_start = now
        self._raised_to: float | None = None  # a raise not yet seen in the miner's shares
        self._raised_at = now
        self.difficulty = self._bounded(initial)
        # What the miner would get without the pool's ceiling: when miners want more than
        # the pool gives, the proxy asks the pool for more (mining.suggest_difficulty).
        self.wanted = clamp(initial, minimum, maximum)

    def _bounded(self, difficulty: float) -> float:
        high = min(self.maximum, self._ceiling)
        return clamp(difficulty, min(self._floor, high), high)

    def _restart(self, now: float) -> None:
        self._shares = 0
        self._work = 0.0
        self._window_start = now

    def set_ceiling(self, ceiling: float, now: float) -> float | None:
        """The pool's difficulty changed (or the miner moved to another pool); return the
        new difficulty if the miner must move. The miner goes to what vardiff wants,
        bounded by the new ceiling: down at once to a lower pool, and back up when the
        ceiling that held it down rises (a time split returning to a harder pool)."""
        self._ceiling = ceiling
        return self._move_to(self._bounded(self.wanted), now)

    def set_floor(self, floor: float, now: float) -> float | None:
        """The miner asked for at least ``floor`` (BIP310 minimum-difficulty)."""
        self._floor = clamp(floor, self.minimum, self.maximum)
        return self._move_to(self._bounded(self.difficulty), now)

    def suggest(self, difficulty: float, now: float) -> float | None:
        """The miner suggested a difficulty: take it, within the bounds."""
        self.wanted = clamp(difficulty, self._floor, self.maximum)
        return self._move_to(self._bounded(difficulty), now)

    def reconfigure(
        self,
        *,
        initial: float,
        minimum: float,
        maximum: float,
        target_interval: float,
        retarget_interval: float,
        enabled: bool,
        now: float,
    ) -> float | None:
        """New settings from a config reload; return the new difficulty if it changes.

        With vardiff off every miner is at ``initial``; with it on, the current difficulty
        is kept within the new bounds and adapts from there.
        """
        self.minimum = minimum
        self.maximum = maximum
        self.target_interval = target_interval
        self.retarget_interval = retarget_interval
        self.enabled = enabled
        self._floor = clamp(self._floor, minimum, maximum)
        # What it wants follows, so a later ceiling change (a move to another pool) keeps it.
        self.wanted = clamp(self.wanted if enabled else initial, minimum, maximum)
        return self._move_to(self._bounded(self.difficulty if enabled else initial), now)

    def on_share(self, now: float, judged: float | None = None) -> float | None:
        """Count an accepted share judged at difficulty ``judged`` (default: the current
        one); return a new difficulty when a retarget is due."""
        if judged is None:
            judged = self.difficulty
        self._shares += 1
        self._work += judged
        if self._raised_to is not None and judged >= self._raised_to:
            self._raised_to = None  # the miner works at the raised difficulty now
        if self._shares < SHARES_PER_RETARGET:
            return None
        return self.poll(now)

    @property
    def awaiting_raise(self) -> bool:
        """True while a raise has not shown up in the miner's shares yet."""
        return self._raised_to is not None

    def poll(self, now: float) -> float | None:
        """Re-evaluate (called on shares and from a periodic tick for silent miners)."""
        if not self.enabled:
            return None
        elapsed = now - self._window_start
        if elapsed < self.retarget_interval and self._shares < SHARES_PER_RETARGET:
            return None
        if self._shares == 0:
            # No share at all: the true interval is at least `elapsed`; only act once that
            # is clearly too long, so one unlucky gap does not cut the difficulty.
            if elapsed < 4 * self.target_interval:
                return None
            ratio = self.target_interval / elapsed
        else:
            ratio = self.target_interval * self._work / (self.difficulty * max(elapsed, 1e-9))
        ratio = clamp(ratio, 1 / MAX_STEP, MAX_STEP)
        if ratio > 1 and self._raised_to is not None:
            if now - self._raised_at < RAISE_HOLD_WINDOWS * self.retarget_interval:
                ratio = min(ratio, DEADBAND[1])  # the last raise is not in force yet: hold
            else:
                self._raised_to = None  # it ignores set_difficulty; the work rate still holds
        if DEADBAND[0] <= ratio <= DEADBAND[1]:
            self.wanted = self.difficulty
            self._restart(now)
            return None
        self.wanted = clamp(self.difficulty * ratio, self._floor, self.maximum)
        return self._move_to(self._bounded(self.difficulty * ratio), now)

    def _move_to(self, difficulty: float, now: float) -> float | None:
        self._restart(now)
        if difficulty == self.difficulty:
            return None
        if difficulty > self.difficulty:
            self._raised_to, self._raised_at = difficulty, now
        else:
            self._raised_to = None  # every share meets a lower difficulty at once
        self.difficulty = difficulty
        return difficulty
