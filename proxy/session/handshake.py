"""The pure parts of a miner's handshake: BIP310 version rolling, worker names, suggested
targets and difficulties, resumed prefixes, and the ``[difficulty]`` settings vardiff takes.

Nothing here writes to a miner: each function or method returns what to answer or to
tell, and the session sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypedDict

from proxy.config import DifficultyConfig
from proxy.mining.target import difficulty_from_target

MAX_WORKER_NAME: Final = 256
"""Longest worker name accepted at authorize; it becomes a metric label."""

MAX_TARGET_HEX: Final = 64
"""A target is 256 bits: more hex digits than this is not a target."""


class VersionRolling:
    """One miner's BIP310 state: the mask it asked for and the mask it was told."""

    __slots__ = ("miner_mask", "told_mask")

    def __init__(self) -> None:
        self.miner_mask: int | None = None  # None: it never negotiated version rolling
        self.told_mask: int | None = None

    def configure(self, params: Mapping[str, object], pool_mask: int) -> dict[str, object]:
        """The ``version-rolling`` part of a ``mining.configure`` answer: the pool's mask
        and the miner's (a missing one means ffffffff), ANDed."""
        raw_mask = params.get("version-rolling.mask", "ffffffff")
        try:
            miner_mask = int(str(raw_mask), 16) & 0xFFFFFFFF
        except ValueError:
            return {"version-rolling": "invalid version-rolling.mask"}
        self.miner_mask = miner_mask
        granted = self.told_mask = pool_mask & miner_mask
        if not granted:
            return {"version-rolling": False}
        return {"version-rolling": True, "version-rolling.mask": f"{granted:08x}"}

    def granted(self, pool_mask: int | None) -> int:
        """The mask the miner may roll now (0: none, or no pool yet)."""
        if self.miner_mask is None or pool_mask is None:
            return 0
        return pool_mask & self.miner_mask

    def to_tell(self, pool_mask: int | None) -> int | None:
        """The mask to send with ``mining.set_version_mask`` (in force at once), when what
        the miner was told no longer matches what it may roll; None when it matches."""
        granted = self.granted(pool_mask)
        if self.miner_mask is None or granted == self.told_mask:
            return None
        self.told_mask = granted
        return granted


def minimum_difficulty(params: Mapping[str, object]) -> float | None:
    """BIP310 ``minimum-difficulty.value``, or None when it is not a positive number."""
    value = params.get("minimum-difficulty.value")
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float (10**400): not a difficulty
        return None


def valid_worker_name(name: str) -> bool:
    """A name that may become a worker (and a metric label): printable, bounded."""
    return bool(name) and len(name) <= MAX_WORKER_NAME and name.isprintable()


def suggested_difficulty(target_hex: str) -> float | None:
    """The difficulty of a ``mining.suggest_target`` target, or None when it is not one."""
    if len(target_hex) > MAX_TARGET_HEX:
        return None
    try:
        target = int(target_hex, 16)
    except ValueError:
        return None
    return difficulty_from_target(target) if target > 0 else None


def resume_prefix(session_id: str | None) -> bytes | None:
    """The prefix a returning miner had: our session ids are its hex."""
    if not session_id or len(session_id) > 16:
        return None
    try:
        return bytes.fromhex(session_id)
    except ValueError:
        return None


class VardiffSettings(TypedDict):
    """The ``[difficulty]`` table as :class:`~proxy.mining.vardiff.Vardiff` arguments."""

    initial: float
    minimum: float
    maximum: float
    target_interval: float
    retarget_interval: float
    enabled: bool


def vardiff_settings(d: DifficultyConfig) -> VardiffSettings:
    """The ``[difficulty]`` table as Vardiff's keyword arguments (new sessions and reloads)."""
    return VardiffSettings(
        initial=d.initial,
        minimum=d.minimum,
        maximum=d.maximum,
        target_interval=d.target_share_interval,
        retarget_interval=d.retarget_interval,
        enabled=d.vardiff,
    )
