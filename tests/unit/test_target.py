"""Target math: exact difficulty -> target, nbits, BIP310 version, prevhash word order."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.mining.hashing import (
    display_hash,
    hash_to_int,
    merkle_root,
    prevhash_from_stratum,
    prevhash_to_stratum,
    sha256d,
)
from proxy.mining.target import (
    DIFF1_TARGET,
    MAX_TARGET,
    compose_version,
    difficulty_from_target,
    share_difficulty,
    target_from_difficulty,
    target_from_nbits,
)
from tests.unit.support import FAST

UINT32 = st.integers(min_value=0, max_value=0xFFFFFFFF)


def _exact(difficulty: float) -> int:
    """floor(DIFF1 / difficulty) in rational arithmetic, capped to 256 bits."""
    return min(math.floor(Fraction(DIFF1_TARGET) / Fraction(difficulty)), MAX_TARGET)


def test_constants() -> None:
    assert DIFF1_TARGET == 0xFFFF * 2**208
    assert DIFF1_TARGET == 0x00000000FFFF0000000000000000000000000000000000000000000000000000
    assert MAX_TARGET == 2**256 - 1


def test_difficulty_one() -> None:
    assert target_from_difficulty(1) == DIFF1_TARGET
    assert target_from_difficulty(1.0) == DIFF1_TARGET


def test_cpu_miner_difficulty() -> None:
    target = target_from_difficulty(0.002)
    assert target == _exact(0.002)
    # 0.002 is not exact in binary (0.002000000000000000041...): the exact target is a little
    # below the naive DIFF1 * 500, which a float computation would have produced.
    assert Fraction(0.002) > Fraction(1, 500)
    assert DIFF1_TARGET * 500 * (1 - Fraction(1, 10**15)) < target < DIFF1_TARGET * 500
    assert target != int(DIFF1_TARGET / 0.002)


def test_tiny_difficulty() -> None:
    target = target_from_difficulty(1e-9)
    assert target == _exact(1e-9)
    assert target < MAX_TARGET  # still below the cap
    assert target > DIFF1_TARGET * 999_999_999


def test_difficulty_below_cap_threshold_is_capped() -> None:
    assert target_from_difficulty(1e-12) == MAX_TARGET
    assert target_from_difficulty(5e-324) == MAX_TARGET


def test_huge_difficulties() -> None:
    assert target_from_difficulty(2.0**64) == 0xFFFF * 2**144
    assert target_from_difficulty(1e15) == DIFF1_TARGET // 10**15
    assert target_from_difficulty(1e300) == 0
    assert target_from_difficulty(1.7976931348623157e308) == 0
    # The easiest target no ASIC share could miss and the hardest real network difficulty.
    assert target_from_difficulty(1e14) == _exact(1e14)


def test_integer_difficulties_divide_exactly() -> None:
    for d in (2, 3, 7, 1024, 65536, 2**20 + 1):
        assert target_from_difficulty(d) == DIFF1_TARGET // d


@pytest.mark.parametrize("bad", [0, 0.0, -0.0, -1, -1e-9, math.inf, -math.inf, math.nan])
def test_rejects_non_positive_and_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="positive finite"):
        target_from_difficulty(bad)


@FAST
@given(st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False))
def test_target_is_exact_floor(difficulty: float) -> None:
    target = target_from_difficulty(difficulty)
    assert target == _exact(difficulty)
    if target < MAX_TARGET:
        exact = Fraction(DIFF1_TARGET) / Fraction(difficulty)
        # A hash equal to the target meets the difficulty; one above it does not.
        assert target <= exact < target + 1


@FAST
@given(
    st.floats(min_value=1e-9, max_value=1e12, allow_nan=False),
    st.floats(min_value=1e-9, max_value=1e12, allow_nan=False),
)
def test_higher_difficulty_never_easier(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert target_from_difficulty(high) <= target_from_difficulty(low)


def test_difficulty_from_target() -> None:
    assert difficulty_from_target(DIFF1_TARGET) == 1.0
    assert difficulty_from_target(DIFF1_TARGET // 1024) == pytest.approx(1024, rel=1e-12)
    with pytest.raises(ValueError, match="positive"):
        difficulty_from_target(0)
    with pytest.raises(ValueError, match="positive"):
        difficulty_from_target(-5)


def test_share_difficulty() -> None:
    assert share_difficulty(DIFF1_TARGET) == 1.0
    assert share_difficulty(DIFF1_TARGET // 2) == 2.0
    assert share_difficulty(0) == math.inf
    assert share_difficulty(MAX_TARGET) == pytest.approx(DIFF1_TARGET / 2**256, rel=1e-12)


@pytest.mark.parametrize(
    ("nbits", "target"),
    [
        (0x1D00FFFF, DIFF1_TARGET),  # the genesis / difficulty-1 target
        (0x1B04864C, 0x04864C * 256 ** (0x1B - 3)),  # block 100000
        (0x1A44B9F2, 0x44B9F2 * 256 ** (0x1A - 3)),  # block 125552
        (0x1C2AC4AF, 0x2AC4AF * 256 ** (0x1C - 3)),  # testnet3 in the slush example
        (0x207FFFFF, 0x7FFFFF << 232),  # regtest
        (0x1703A30C, 0x03A30C * 256 ** (0x17 - 3)),
        (0x03123456, 0x123456),
        (0x02123456, 0x1234),
        (0x01123456, 0x12),
        (0x00123456, 0),
        (0x1D800000, 0),  # sign bit set: negative, invalid
        (0x04923456, 0),
    ],
)
def test_target_from_nbits(nbits: int, target: int) -> None:
    assert target_from_nbits(nbits) == target


def test_network_difficulty_from_nbits() -> None:
    assert difficulty_from_target(target_from_nbits(0x1D00FFFF)) == 1.0
    assert difficulty_from_target(target_from_nbits(0x1B04864C)) == pytest.approx(
        14484.162361225399, rel=1e-12
    )


def test_compose_version_examples() -> None:
    mask = 0x1FFFE000
    assert compose_version(0x20000000, 0x1FFFE000, mask) == 0x3FFFE000
    assert compose_version(0x20000000, 0x00002000, mask) == 0x20002000
    # Bits outside the mask are ignored (the validator rejects them before composing).
    assert compose_version(0x20000000, 0x00001000, mask) == 0x20000000
    # The job's bits inside the mask are replaced, not ORed: ORing would give 0x20006000.
    assert compose_version(0x20004000, 0x00002000, mask) == 0x20002000
    assert compose_version(0x20004000, 0, mask) == 0x20000000
    assert compose_version(0x20000000, 0xDEADBEEF, 0xFFFFFFFF) == 0xDEADBEEF
    assert compose_version(0x20000004, 0xFFFFFFFF, 0) == 0x20000004


@FAST
@given(UINT32, UINT32, UINT32)
def test_compose_version_formula(job_version: int, bits: int, mask: int) -> None:
    version = compose_version(job_version, bits, mask)
    assert 0 <= version <= 0xFFFFFFFF
    assert version == ((job_version & ~mask) | (bits & mask)) & 0xFFFFFFFF
    assert version & ~mask == job_version & ~mask & 0xFFFFFFFF
    assert version & mask == bits & mask
    if job_version & mask == 0:
        # Pools that OR the bits in agree with BIP310 only in this case.
        assert version == job_version | (bits & mask)


def test_prevhash_word_swap() -> None:
    stratum = "1901125004612a1701c3a621d930d31d36b607df1fccc2160002d01c00000000"
    header = prevhash_from_stratum(stratum)
    assert header.hex() == "50120119172a610421a6c3011dd330d9df07b63616c2cc1f1cd0020000000000"
    assert header[::-1].hex() == "000000000002d01c1fccc21636b607dfd930d31d01c3a62104612a1719011250"
    assert prevhash_to_stratum(header) == stratum


@FAST
@given(st.binary(min_size=32, max_size=32))
def test_prevhash_round_trip(raw: bytes) -> None:
    stratum = raw.hex()
    header = prevhash_from_stratum(stratum)
    assert len(header) == 32
    assert prevhash_to_stratum(header) == stratum
    assert prevhash_from_stratum(prevhash_to_stratum(raw)) == raw
    # Word order kept, bytes within each word reversed.
    for i in range(0, 32, 4):
        assert header[i : i + 4] == raw[i : i + 4][::-1]


@pytest.mark.parametrize("bad", ["", "00" * 31, "00" * 33])
def test_prevhash_wrong_length(bad: str) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        prevhash_from_stratum(bad)


def test_prevhash_not_hex() -> None:
    with pytest.raises(ValueError):
        prevhash_from_stratum("zz" * 32)


def test_hash_helpers() -> None:
    digest = sha256d(b"")
    assert digest.hex() == "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"
    assert hash_to_int(digest) == int.from_bytes(digest[::-1], "big")
    assert display_hash(digest) == digest[::-1].hex()
    assert merkle_root(digest, []) == digest
    sibling = bytes(32)
    assert merkle_root(digest, [sibling]) == sha256d(digest + sibling)
