"""``stratum-proxy bench validate``: the cost of share validation next to bare hashing.

A realistic share (12-entry merkle branch, ~100-byte coinb1, ~250-byte coinb2, 4+4 bytes of
extranonce, version rolling) is validated many times with distinct nonces so every share
passes the duplicate filter and is recorded. In the same run a plain loop makes exactly the
same SHA-256 calls on the same bytes with nothing else: the ratio of the two is what
parsing, lookups, checks and duplicate filtering add on top of the hashing.
"""

from __future__ import annotations

import gc
import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from proxy.mining.hashing import HEADER
from proxy.mining.job import Job, JobBook, JobIds
from proxy.mining.share import ShareValidator, Verdict
from proxy.mining.target import target_from_difficulty
from proxy.stratum.codec import decode_miner_line
from proxy.stratum.messages import Submit

TARGET_RATIO = 1.3
"""Issue #2's target: validation at most 1.3x the bare hashing."""

POOL_DIFFICULTY = 65536.0
"""The pool's difficulty: the bench shares are far below it, so all are answered locally."""


@dataclass(frozen=True)
class ValidateResult:
    """Nanoseconds per share for each measured loop (best of the repeats)."""

    shares: int
    bare_ns: float
    validate_ns: float
    decode_validate_ns: float

    @property
    def ratio(self) -> float:
        """Validation cost over bare hashing cost."""
        return self.validate_ns / self.bare_ns


def _realistic_job() -> tuple[Job, JobBook]:
    rng = _Rand(2026)
    book = JobBook(JobIds())
    job_id, seq = book.ids.take()
    job = Job(
        job_id=job_id,
        upstream_job_id="pool-1",
        seq=seq,
        prevhash=rng.bytes(32),
        coinb1=rng.bytes(100),
        coinb2=rng.bytes(250),
        branch=[rng.bytes(32) for _ in range(12)],
        version=0x20000000,
        nbits=0x17034219,  # a mainnet-like target: no share here is a block
        ntime=1_700_000_000,
        clean_jobs=True,
        created=0.0,
        upstream_target=target_from_difficulty(POOL_DIFFICULTY),
    )
    book.upstream_target = job.upstream_target
    book.add(job)
    return job, book


class _Rand:
    """Deterministic bytes without importing random's global state."""

    def __init__(self, seed: int) -> None:
        self._state = seed.to_bytes(8, "big")

    def bytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self._state = hashlib.sha256(self._state).digest()
            out += self._state
        return out[:n]


def _time_per_item(fn: Callable[[], None], count: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - start) / count)
    return best


def run(shares: int = 20_000, repeats: int = 7) -> ValidateResult:
    """Measure bare hashing, validation, and decode plus validation of ``shares`` shares."""
    job, book = _realistic_job()
    en1 = bytes.fromhex("a1b2c3d4")
    worker = "farm.rig001"
    mask = 0x1FFFE000
    params = [
        (
            worker,
            job.job_id,
            f"{i >> 16:08x}",
            f"{job.ntime + (i & 0xFF):08x}",
            f"{i:08x}",
            f"{(i & 0xF) << 13:08x}",
        )
        for i in range(shares)
    ]
    lines = [
        b'{"params":["%s","%s","%s","%s","%s","%s"],"id":4,"method":"mining.submit"}'
        % tuple(p.encode() for p in share)
        for share in params
    ]
    # The exact inputs the validator hashes, prepared ahead for the bare loop.
    en2s = [bytes.fromhex(p[2]) for p in params]
    headers = [
        HEADER.pack(
            (job.version & ~mask) | int(p[5], 16),
            job.prevhash,
            b"\0" * 32,
            int(p[3], 16),
            job.nbits,
            int(p[4], 16),
        )
        for p in params
    ]

    def bare() -> None:
        sha = hashlib.sha256
        mid, coinb2, branch = job.coinb1_state, job.coinb2, job.branch
        for en2, header in zip(en2s, headers, strict=True):
            state = mid.copy()
            state.update(en1)
            state.update(en2)
            state.update(coinb2)
            root = sha(state.digest()).digest()
            for sibling in branch:
                root = sha(sha(root + sibling).digest()).digest()
            sha(sha(header).digest()).digest()

    def fresh_validator() -> ShareValidator:
        job.seen.clear()
        validator = ShareValidator(
            book, extranonce1=en1, extranonce2_size=4, difficulty=1e-30, version_mask=mask
        )
        validator.workers.add(worker)
        return validator

    def validate() -> None:
        check = fresh_validator().check
        accepted = Verdict.ACCEPTED
        for p in params:
            if check(*p) is not accepted:
                raise AssertionError("benchmark share was not accepted")

    def decode_validate() -> None:
        check = fresh_validator().check
        for line in lines:
            msg = decode_miner_line(line)
            assert isinstance(msg, Submit)
            p = msg.params
            check(p.worker, p.job_id, p.extranonce2, p.ntime, p.nonce, p.version_bits)

    validate()  # warm up, and prove every share is accepted before timing anything
    return ValidateResult(
        shares=shares,
        bare_ns=_time_per_item(bare, shares, repeats),
        validate_ns=_time_per_item(validate, shares, repeats),
        decode_validate_ns=_time_per_item(decode_validate, shares, repeats),
    )


def report(result: ValidateResult) -> str:
    """A small table for the terminal and README."""
    rows = [
        ("bare hashing (same sha256 calls)", result.bare_ns, 1.0),
        ("validate (parse + checks + dup filter)", result.validate_ns, result.ratio),
        (
            "decode JSON line + validate",
            result.decode_validate_ns,
            result.decode_validate_ns / result.bare_ns,
        ),
    ]
    lines = [
        f"share validation, {result.shares} shares, best of repeats, Python {sys.version.split()[0]}",
        f"{'loop':40} {'us/share':>9} {'shares/s':>10} {'x bare':>7}",
    ]
    for name, ns, ratio in rows:
        lines.append(f"{name:40} {ns / 1000:9.2f} {1e9 / ns:10.0f} {ratio:7.2f}")
    verdict = "OK" if result.ratio <= TARGET_RATIO else "ABOVE TARGET"
    lines.append(f"validation / bare hashing = {result.ratio:.2f} (target <= {TARGET_RATIO}): {verdict}")
    return "\n".join(lines)
