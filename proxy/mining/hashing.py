"""SHA-256d, the merkle root from a stratum branch, and header byte layouts."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Final

_sha256: Final = hashlib.sha256

HEADER: Final = struct.Struct("<I32s32sIII")
"""version, prevhash, merkle root, ntime, nbits, nonce: the 80-byte block header."""


def sha256d(data: bytes) -> bytes:
    """Bitcoin's double SHA-256, in internal (header) byte order."""
    return _sha256(_sha256(data).digest()).digest()


def merkle_root(coinbase_hash: bytes, branch: Sequence[bytes]) -> bytes:
    """Fold a stratum merkle branch onto the coinbase hash (docs/protocol.md, share check step 1).

    The branch lists the sibling hashes from the coinbase up, each already in internal byte
    order, and the coinbase is always the left node, so no index bits are needed.
    """
    root = coinbase_hash
    for sibling in branch:
        root = _sha256(_sha256(root + sibling).digest()).digest()
    return root


def prevhash_from_stratum(prevhash_hex: str) -> bytes:
    """The 32 header bytes of a notify's prevhash: byte-swap each 4-byte word, keep word order."""
    raw = bytes.fromhex(prevhash_hex)
    if len(raw) != 32:
        raise ValueError("prevhash must be 32 bytes")
    return b"".join(raw[i : i + 4][::-1] for i in range(0, 32, 4))


def prevhash_to_stratum(header_prevhash: bytes) -> str:
    """The inverse of :func:`prevhash_from_stratum` (the word swap is its own inverse)."""
    return prevhash_from_stratum(header_prevhash.hex()).hex()


def hash_to_int(hash_internal: bytes) -> int:
    """A header hash as the number compared against targets (little-endian)."""
    return int.from_bytes(hash_internal, "little")


def display_hash(hash_internal: bytes) -> str:
    """A hash as block explorers print it (byte-reversed hex)."""
    return hash_internal[::-1].hex()
