"""Extranonce prefix allocation for miners sharing one upstream connection.

The pool gives the proxy ``extranonce2_size`` bytes to roll; the proxy takes the first
``k`` of them as a per-miner prefix and leaves the rest to the miner, so miners on one
upstream connection search disjoint spaces (docs/protocol.md, "Many miners on one pool connection").
"""

from __future__ import annotations

from typing import Final

MIN_MINER_EXTRANONCE2: Final = 4
"""Bytes of extranonce2 a miner keeps whenever the pool's size allows: stock firmware makes
duplicate shares below 3 bytes, and 4 bytes is what every ASIC handles well."""

MAX_PREFIX_SIZE: Final = 4
"""2**32 miners per upstream connection is more than any farm; more bytes buy nothing."""


class ExtranonceExhausted(Exception):
    """Every prefix of this upstream connection is in use; open another connection."""


def prefix_size_for(pool_extranonce2_size: int, wanted_miners: int = 1 << 16) -> int:
    """How many of the pool's extranonce2 bytes to take as the per-miner prefix.

    Leaves the miner at least :data:`MIN_MINER_EXTRANONCE2` bytes when the pool allows it
    (pool 8 -> prefix up to 4) and takes no more than needed for ``wanted_miners``. Returns
    0 when the pool's size is too small to split: one upstream connection per miner.
    """
    spare = min(pool_extranonce2_size - MIN_MINER_EXTRANONCE2, MAX_PREFIX_SIZE)
    if spare <= 0:
        return 0
    needed = max(1, (max(wanted_miners, 2) - 1).bit_length() + 7 >> 3)
    return min(spare, needed)


class ExtranonceAllocator:
    """Hands out distinct ``size``-byte prefixes, freed when their session ends.

    Prefixes are handed out round-robin rather than lowest-free first, so a prefix just
    freed is not given to the next miner at once: shares of the old session still in flight
    can then never be confused with the new one's.
    """

    __slots__ = ("_capacity", "_cursor", "_in_use", "size")

    def __init__(self, size: int) -> None:
        if not 0 <= size <= MAX_PREFIX_SIZE:
            raise ValueError(f"prefix size must be 0..{MAX_PREFIX_SIZE}, got {size}")
        self.size = size
        self._capacity = 1 << (8 * size)
        self._cursor = 0
        self._in_use: set[bytes] = set()

    @property
    def capacity(self) -> int:
        """How many sessions can hold a prefix at once."""
        return self._capacity

    @property
    def in_use(self) -> int:
        """How many prefixes are held now."""
        return len(self._in_use)

    @property
    def full(self) -> bool:
        """True when :meth:`allocate` would raise."""
        return len(self._in_use) >= self._capacity

    def allocate(self, preferred: bytes | None = None) -> bytes:
        """A free prefix; ``preferred`` (a returning miner's old prefix) when it is free."""
        if self.full:
            raise ExtranonceExhausted(
                f"all {self._capacity} extranonce prefixes of {self.size} bytes are in use"
            )
        if preferred is not None and len(preferred) == self.size and preferred not in self._in_use:
            self._in_use.add(preferred)
            return preferred
        while True:
            candidate = self._cursor.to_bytes(self.size, "big")
            self._cursor = (self._cursor + 1) % self._capacity
            if candidate not in self._in_use:
                self._in_use.add(candidate)
                return candidate

    def release(self, prefix: bytes) -> None:
        """Give a prefix back (idempotent)."""
        self._in_use.discard(prefix)

    def holds(self, prefix: bytes) -> bool:
        """True while ``prefix`` is allocated."""
        return prefix in self._in_use
