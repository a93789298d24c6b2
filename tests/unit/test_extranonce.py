"""Extranonce prefix sizing and allocation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.mining.extranonce import (
    MAX_PREFIX_SIZE,
    MIN_MINER_EXTRANONCE2,
    ExtranonceAllocator,
    ExtranonceExhausted,
    prefix_size_for,
)
from tests.unit.support import FAST


def test_constants() -> None:
    assert MIN_MINER_EXTRANONCE2 == 4
    assert MAX_PREFIX_SIZE == 4


@pytest.mark.parametrize(
    ("pool_size", "wanted", "prefix"),
    [
        (8, 1 << 16, 2),  # the default: 65536 miners need 2 bytes, the miner keeps 6
        (8, 256, 1),
        (8, 257, 2),
        (8, 1, 1),  # at least one byte when the pool allows a split at all
        (8, 2, 1),
        (8, 1 << 32, 4),
        (8, 1 << 40, 4),  # never more than leaves the miner 4 bytes
        (12, 1 << 40, 4),  # never more than MAX_PREFIX_SIZE
        (7, 1 << 32, 3),
        (6, 1 << 16, 2),
        (5, 1 << 16, 1),
        (4, 1 << 16, 0),  # too small to split: one upstream connection per miner
        (3, 1 << 16, 0),
        (2, 2, 0),
        (0, 1, 0),
    ],
)
def test_prefix_size_for(pool_size: int, wanted: int, prefix: int) -> None:
    assert prefix_size_for(pool_size, wanted) == prefix


@FAST
@given(st.integers(min_value=0, max_value=32), st.integers(min_value=1, max_value=1 << 48))
def test_prefix_size_invariants(pool_size: int, wanted: int) -> None:
    k = prefix_size_for(pool_size, wanted)
    assert 0 <= k <= MAX_PREFIX_SIZE
    if k:
        assert pool_size - k >= MIN_MINER_EXTRANONCE2
        # Enough prefixes for the miners wanted, or as many as the pool's size allows.
        assert 256**k >= wanted or k == min(pool_size - MIN_MINER_EXTRANONCE2, MAX_PREFIX_SIZE)
        # And not a byte more than needed.
        assert k == 1 or 256 ** (k - 1) < wanted
    else:
        assert pool_size <= MIN_MINER_EXTRANONCE2


def test_default_pool_sizes_leave_miner_at_least_four_bytes() -> None:
    assert 8 - prefix_size_for(8) >= 4
    assert prefix_size_for(4) == 0


@pytest.mark.parametrize("size", [-1, 5, 8])
def test_allocator_rejects_bad_size(size: int) -> None:
    with pytest.raises(ValueError, match="prefix size"):
        ExtranonceAllocator(size)


def test_unique_prefixes_and_exhaustion_size_1() -> None:
    alloc = ExtranonceAllocator(1)
    assert alloc.capacity == 256
    prefixes = [alloc.allocate() for _ in range(256)]
    assert len(set(prefixes)) == 256
    assert all(len(p) == 1 for p in prefixes)
    assert alloc.in_use == 256
    assert alloc.full
    with pytest.raises(ExtranonceExhausted, match="256"):
        alloc.allocate()
    with pytest.raises(ExtranonceExhausted):
        alloc.allocate(preferred=b"\x07")
    # Release one: exactly that one comes back.
    alloc.release(b"\x42")
    assert not alloc.full
    assert not alloc.holds(b"\x42")
    assert alloc.allocate() == b"\x42"
    assert alloc.full


def test_release_and_reuse_round_robin() -> None:
    alloc = ExtranonceAllocator(1)
    first = alloc.allocate()
    second = alloc.allocate()
    assert (first, second) == (b"\x00", b"\x01")
    alloc.release(first)
    # A just-freed prefix is not handed out at once: shares in flight stay unambiguous.
    assert alloc.allocate() == b"\x02"
    assert alloc.holds(second)
    assert not alloc.holds(first)
    assert alloc.in_use == 2


def test_release_is_idempotent() -> None:
    alloc = ExtranonceAllocator(2)
    prefix = alloc.allocate()
    alloc.release(prefix)
    alloc.release(prefix)
    alloc.release(b"\xff\xff")
    assert alloc.in_use == 0


def test_preferred_prefix() -> None:
    alloc = ExtranonceAllocator(2)
    assert alloc.allocate(preferred=b"\x12\x34") == b"\x12\x34"
    assert alloc.holds(b"\x12\x34")
    # Taken: another one is handed out instead.
    other = alloc.allocate(preferred=b"\x12\x34")
    assert other != b"\x12\x34"
    assert len(other) == 2
    # Wrong length: ignored.
    odd = alloc.allocate(preferred=b"\x01")
    assert len(odd) == 2
    assert odd not in {b"\x12\x34", other}
    # Freed again: a returning miner gets it back.
    alloc.release(b"\x12\x34")
    assert alloc.allocate(preferred=b"\x12\x34") == b"\x12\x34"


def test_cursor_skips_preferred_prefixes() -> None:
    alloc = ExtranonceAllocator(1)
    assert alloc.allocate(preferred=b"\x00") == b"\x00"
    assert alloc.allocate(preferred=b"\x01") == b"\x01"
    assert alloc.allocate() == b"\x02"


def test_size_zero_has_exactly_one_prefix() -> None:
    alloc = ExtranonceAllocator(0)
    assert alloc.capacity == 1
    assert alloc.allocate() == b""
    assert alloc.full
    with pytest.raises(ExtranonceExhausted):
        alloc.allocate()
    alloc.release(b"")
    assert alloc.allocate(preferred=b"") == b""


@FAST
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 300)), max_size=80))
def test_live_prefixes_always_distinct(ops: list[tuple[bool, int]]) -> None:
    alloc = ExtranonceAllocator(1)
    live: list[bytes] = []
    for allocate, pick in ops:
        if allocate:
            if alloc.full:
                with pytest.raises(ExtranonceExhausted):
                    alloc.allocate()
                continue
            prefix = alloc.allocate(preferred=bytes([pick % 256]) if pick > 255 else None)
            assert prefix not in live
            live.append(prefix)
        elif live:
            alloc.release(live.pop(pick % len(live)))
        assert alloc.in_use == len(live) == len(set(live))
        assert all(alloc.holds(p) for p in live)
