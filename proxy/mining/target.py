"""Difficulty and targets in exact integer math (bdiff), nbits, BIP310 version rolling.

A share meets difficulty ``D`` iff ``hash <= floor(DIFF1 / D)``. Difficulties arrive as
floats (``0.002`` is a real CPU-miner difficulty), so the target is computed from the
float's exact binary value with rational arithmetic: no float ever decides a boundary.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Final

DIFF1_TARGET: Final = 0xFFFF * 2**208
"""The difficulty-1 target (bdiff), as pools and ASIC firmware use it."""

MAX_TARGET: Final = 2**256 - 1


def target_from_difficulty(difficulty: float) -> int:
    """``floor(DIFF1 / difficulty)`` exactly, capped to 256 bits."""
    if not math.isfinite(difficulty) or difficulty <= 0:
        raise ValueError(f"difficulty must be a positive finite number, got {difficulty!r}")
    ratio = Fraction(difficulty)
    target = DIFF1_TARGET * ratio.denominator // ratio.numerator
    return min(target, MAX_TARGET)


def difficulty_from_target(target: int) -> float:
    """The difficulty a target stands for (a float, for display and vardiff)."""
    if target <= 0:
        raise ValueError("target must be positive")
    return DIFF1_TARGET / target


def share_difficulty(hash_int: int) -> float:
    """The difficulty a hash actually reached (``DIFF1 / hash``); inf for a zero hash."""
    return DIFF1_TARGET / hash_int if hash_int else math.inf


def target_from_nbits(nbits: int) -> int:
    """The network target of compact ``nbits``: ``mantissa * 256**(exponent - 3)``."""
    exponent = nbits >> 24
    mantissa = nbits & 0x007FFFFF
    if nbits & 0x00800000:
        return 0  # negative compact targets are invalid; nothing meets them
    if exponent <= 3:
        return mantissa >> (8 * (3 - exponent))
    return mantissa << (8 * (exponent - 3))


def compose_version(job_version: int, version_bits: int, mask: int) -> int:
    """BIP310: ``(job_version & ~mask) | (version_bits & mask)``.

    Pools that OR or XOR the bits in agree with this only while ``job_version & mask`` is
    zero, so this formula is the one to use.
    """
    return (job_version & ~mask & 0xFFFFFFFF) | (version_bits & mask)
