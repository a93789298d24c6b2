"""Shared helpers of the unit tier: test data access, job builders and a nonce search.

Data comes only from ``tests/data``. The share hash is recomputed here from
:mod:`proxy.mining.hashing` so tests can compare it with what ``ShareValidator`` computes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from hypothesis import HealthCheck, settings

from proxy.mining.hashing import HEADER, hash_to_int, merkle_root, sha256d
from proxy.mining.job import Job, JobBook, JobIds
from proxy.mining.share import ShareValidator
from proxy.mining.target import DIFF1_TARGET

DATA_DIR: Final = Path(__file__).resolve().parent.parent / "data"

REGTEST_NBITS: Final = "207fffff"
"""Network target ~2**255: about every second hash is a block candidate."""

HARD_NBITS: Final = "1703a30c"
"""A mainnet target: no hash a test can find meets it."""

ACCEPT_ALL: Final = 1e-12
"""A difficulty whose target is capped at 2**256 - 1: every hash meets it."""

EASY: Final = 1e-7
"""About 1 hash in 430 meets this difficulty: quick to brute-force."""

JOB_NTIME: Final = 0x6B053000
EN1: Final = bytes.fromhex("a0000001")
WORKER: Final = "user.w1"

FAST: Final = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
"""Hypothesis settings for the unit tier: bounded examples, no timing checks."""


def load_json(name: str) -> Any:
    """A JSON file of tests/data."""
    with (DATA_DIR / name).open(encoding="utf-8") as fh:
        return json.load(fh)


def load_vectors() -> dict[str, Any]:
    """tests/data/stratum_vectors.json."""
    data: dict[str, Any] = load_json("stratum_vectors.json")
    return data


def transcript_paths() -> list[Path]:
    """Every recorded transcript (*.jsonl) in tests/data, sorted."""
    return sorted(DATA_DIR.glob("*.jsonl"))


def read_transcript(path: Path) -> list[dict[str, Any]]:
    """The records of one .jsonl transcript."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def make_job(
    ids: JobIds,
    *,
    nbits: str = HARD_NBITS,
    clean_jobs: bool = False,
    ntime: int = JOB_NTIME,
    version: str = "20000000",
    tag: int = 0,
    branch_len: int = 2,
    upstream_target: int = DIFF1_TARGET,
) -> Job:
    """A synthetic job; ``tag`` varies the coinbase so two jobs hash differently."""
    job_id, seq = ids.take()
    return Job.from_notify(
        job_id=job_id,
        upstream_job_id=f"pool-{job_id}",
        seq=seq,
        prevhash=bytes(range(32)).hex(),
        coinb1="01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff19"
        + format(tag, "08x"),
        coinb2="ffffffff0140be4025000000001976a914111111111111111111111111111111111111111188ac00000000",
        merkle_branch=[sha256d(bytes([tag, i])).hex() for i in range(branch_len)],
        version=version,
        nbits=nbits,
        ntime=format(ntime, "08x"),
        clean_jobs=clean_jobs,
        created=0.0,
        upstream_target=upstream_target,
    )


def make_validator(
    book: JobBook,
    *,
    difficulty: float = ACCEPT_ALL,
    extranonce1: bytes = EN1,
    extranonce2_size: int = 4,
    version_mask: int = 0,
    worker: str | None = WORKER,
) -> ShareValidator:
    """A validator with ``worker`` authorized."""
    validator = ShareValidator(
        book,
        extranonce1=extranonce1,
        extranonce2_size=extranonce2_size,
        difficulty=difficulty,
        version_mask=version_mask,
    )
    if worker is not None:
        validator.workers.add(worker)
    return validator


def share_hash(job: Job, extranonce1: bytes, extranonce2: bytes, ntime: int, nonce: int, version: int) -> int:
    """The share's hash as an integer, computed independently of ShareValidator."""
    coinbase = job.coinb1 + extranonce1 + extranonce2 + job.coinb2
    root = merkle_root(sha256d(coinbase), job.branch)
    header = HEADER.pack(version, job.prevhash, root, ntime, job.nbits, nonce)
    return hash_to_int(sha256d(header))


def between(low: int, high: int) -> Callable[[int], bool]:
    """A search predicate: ``low < hash <= high`` (meets ``high``, misses ``low``)."""

    def accept(hash_int: int) -> bool:
        return low < hash_int <= high

    return accept


def find_nonce(
    job: Job,
    accept: Callable[[int], bool],
    *,
    extranonce1: bytes = EN1,
    extranonce2: bytes = b"\x00\x00\x00\x01",
    ntime: int | None = None,
    version: int | None = None,
    start: int = 0,
    limit: int = 200_000,
) -> tuple[int, int]:
    """The first nonce from ``start`` whose hash satisfies ``accept``: (nonce, hash_int)."""
    when = job.ntime if ntime is None else ntime
    ver = job.version if version is None else version
    for nonce in range(start, start + limit):
        h = share_hash(job, extranonce1, extranonce2, when, nonce, ver)
        if accept(h):
            return nonce, h
    raise AssertionError("no nonce found: the search predicate is too strict for a unit test")
