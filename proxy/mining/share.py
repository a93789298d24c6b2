"""Share validation: the hot path.

One :class:`ShareValidator` per miner session holds what the checks need (extranonce1,
extranonce2 size, granted version mask, authorized workers, difficulty history) and the
book of jobs of the upstream connection the miner is on. :meth:`ShareValidator.check`
returns a :class:`Verdict` and leaves the parsed share on the validator (``job``,
``extranonce2``, ``ntime``, ``nonce``, ``version``, ``hash_int``) for forwarding and
metrics, so a share allocates no result object.

The checks, in order (docs/protocol.md, "How a share is checked"); each rejects with its reason:

1. the worker is authorized on this connection (24, ``unauthorized``);
2. the job is known and not voided (21, ``job_not_found``);
3. extranonce2 is exactly ``extranonce2_size`` bytes of hex, ntime and nonce 4 bytes
   (20, ``invalid_params``; never padded or truncated);
4. ntime within ``[job.ntime, job.ntime + window]`` (20, ``invalid_ntime``);
5. version bits only inside the granted mask (20, ``invalid_version``);
6. not a duplicate of an accepted share of the job (22, ``duplicate``): checked before
   hashing, so replayed shares cost a set lookup, not 14 hashes;
7. the hash meets the network target: a block candidate, forwarded whatever the miner's
   difficulty; else the miner's target for that job (23, ``low_difficulty``).

A block candidate also records whether it met the miner's target (``met_target``) and the
pool's (``met_pool``). On a main network both hold for every candidate. On a test network
(regtest, testnet's minimum-difficulty blocks) the network target can be easier than the
pool's or even the miner's, and the answer to the miner must not depend on the pool's
verdict on a share the pool never asked for.
"""

from __future__ import annotations

import hashlib
import struct
from enum import IntEnum
from typing import Final

from proxy.mining.hashing import HEADER
from proxy.mining.job import Job, JobBook
from proxy.mining.target import target_from_difficulty

DIFFICULTY_HISTORY: Final = 8
"""Difficulty changes remembered per miner; older jobs are long voided by then."""


class Verdict(IntEnum):
    """The outcome of one share. The first three are acceptances."""

    ACCEPTED = 0
    ACCEPTED_UPSTREAM = 1
    BLOCK_CANDIDATE = 2
    JOB_NOT_FOUND = 3
    DUPLICATE = 4
    LOW_DIFFICULTY = 5
    INVALID_NTIME = 6
    INVALID_VERSION = 7
    INVALID_PARAMS = 8
    UNAUTHORIZED = 9

    @property
    def accepted(self) -> bool:
        """True for the three acceptances."""
        return self <= Verdict.BLOCK_CANDIDATE

    @property
    def forward(self) -> bool:
        """True when the share must go upstream (meets the pool's target, or a block)."""
        return self is Verdict.ACCEPTED_UPSTREAM or self is Verdict.BLOCK_CANDIDATE

    @property
    def reason(self) -> str:
        """The metric label of a rejection (``accepted`` for acceptances)."""
        return "accepted" if self.accepted else self.name.lower()

    @property
    def error_code(self) -> int:
        """The Stratum error code a rejection is answered with (0 for acceptances)."""
        return _CODES[self]

    @property
    def error_message(self) -> str:
        """The message a rejection is answered with."""
        return _MESSAGES[self]


_CODES: Final = {
    Verdict.ACCEPTED: 0,
    Verdict.ACCEPTED_UPSTREAM: 0,
    Verdict.BLOCK_CANDIDATE: 0,
    Verdict.JOB_NOT_FOUND: 21,
    Verdict.DUPLICATE: 22,
    Verdict.LOW_DIFFICULTY: 23,
    Verdict.INVALID_NTIME: 20,
    Verdict.INVALID_VERSION: 20,
    Verdict.INVALID_PARAMS: 20,
    Verdict.UNAUTHORIZED: 24,
}
_MESSAGES: Final = {
    Verdict.ACCEPTED: "",
    Verdict.ACCEPTED_UPSTREAM: "",
    Verdict.BLOCK_CANDIDATE: "",
    Verdict.JOB_NOT_FOUND: "Job not found",
    Verdict.DUPLICATE: "Duplicate share",
    Verdict.LOW_DIFFICULTY: "Low difficulty share",
    Verdict.INVALID_NTIME: "Invalid ntime",
    Verdict.INVALID_VERSION: "Invalid version bits",
    Verdict.INVALID_PARAMS: "Invalid extranonce2, ntime or nonce",
    Verdict.UNAUTHORIZED: "Unauthorized worker",
}

# Module constants: attribute access on an Enum class costs ~100 ns on 3.11, per share.
_sha256: Final = hashlib.sha256
_U32_PAIR: Final = struct.Struct(">II").unpack
_ACCEPTED: Final = Verdict.ACCEPTED
_ACCEPTED_UPSTREAM: Final = Verdict.ACCEPTED_UPSTREAM
_BLOCK: Final = Verdict.BLOCK_CANDIDATE
_JOB_NOT_FOUND: Final = Verdict.JOB_NOT_FOUND
_DUPLICATE: Final = Verdict.DUPLICATE
_LOW_DIFFICULTY: Final = Verdict.LOW_DIFFICULTY
_INVALID_NTIME: Final = Verdict.INVALID_NTIME
_INVALID_VERSION: Final = Verdict.INVALID_VERSION
_INVALID_PARAMS: Final = Verdict.INVALID_PARAMS
_UNAUTHORIZED: Final = Verdict.UNAUTHORIZED


class ShareValidator:
    """Validates one miner session's shares against the jobs of its upstream connection."""

    __slots__ = (
        "_aliases",
        "_difficulty",
        "_hex_len",
        "_history",
        "_target",
        "_target_since",
        "book",
        "difficulty",
        "extranonce1",
        "extranonce2",
        "extranonce2_size",
        "from_previous",
        "hash_int",
        "job",
        "met_pool",
        "met_target",
        "nonce",
        "ntime",
        "previous_book",
        "version",
        "version_mask",
        "workers",
    )

    def __init__(
        self,
        book: JobBook,
        *,
        extranonce1: bytes,
        extranonce2_size: int,
        difficulty: float,
        version_mask: int = 0,
    ) -> None:
        self.book = book
        self.extranonce1 = extranonce1
        self.extranonce2_size = extranonce2_size
        self._hex_len = 2 * extranonce2_size
        self.version_mask = version_mask
        self.workers: set[str] = set()
        self.previous_book: JobBook | None = None
        self._target = target_from_difficulty(difficulty)
        self._difficulty = difficulty
        self._target_since = 0
        self._history: list[tuple[int, int, float]] = []
        self._aliases: dict[str, Job] = {}
        # The parsed share of the last check, for forwarding and metrics.
        self.job: Job | None = None
        self.from_previous = False  # the last share's job was of the previous book
        self.extranonce2 = b""
        self.ntime = 0
        self.nonce = 0
        self.version = 0
        self.hash_int = 0
        self.difficulty = difficulty  # the difficulty the last share was judged at
        # Set for block candidates only (off the common path): which targets it also met.
        self.met_target = False
        self.met_pool = False

    # ------------------------------------------------------------------ state changes

    def set_extranonce(self, book: JobBook, extranonce1: bytes, extranonce2_size: int) -> None:
        """Move to another upstream connection or extranonce layout.

        With the same extranonce the old book's jobs stay valid until that book is voided
        (its connection closes): shares the miner was already working on when it was moved
        are still judged, and a block among them still goes to the pool that issued it.
        """
        same = (extranonce1, extranonce2_size) == (self.extranonce1, self.extranonce2_size)
        self.previous_book = self.book if same and book is not self.book else None
        self.book = book
        self.extranonce1 = extranonce1
        self.extranonce2_size = extranonce2_size
        self._hex_len = 2 * extranonce2_size
        self._aliases.clear()

    def set_difficulty(self, difficulty: float, from_seq: int) -> None:
        """A new difficulty, in force for jobs with ``seq >= from_seq``.

        Shares on jobs sent before stay judged at the lower of the old and new difficulty,
        so a miner that did work at the old difficulty never loses it.
        """
        self._history.append((self._target_since, self._target, self._difficulty))
        del self._history[:-DIFFICULTY_HISTORY]
        self._target = target_from_difficulty(difficulty)
        self._difficulty = difficulty
        self._target_since = from_seq

    @property
    def current_difficulty(self) -> float:
        """The difficulty in force for jobs sent from now on."""
        return self._difficulty

    def remember_alias(self, job: Job) -> None:
        """Accept shares on an alias job sent only to this miner (a few are kept)."""
        self._aliases[job.job_id] = job
        if len(self._aliases) > DIFFICULTY_HISTORY:
            del self._aliases[next(iter(self._aliases))]

    def target_for(self, job: Job) -> tuple[int, float]:
        """The miner's (target, difficulty) for a job: the easier of then and now."""
        target, difficulty = self._target, self._difficulty
        if job.seq >= self._target_since:
            return target, difficulty
        for since, old_target, old_difficulty in reversed(self._history):
            if old_target > target:
                target, difficulty = old_target, old_difficulty
            if job.seq >= since:
                break
        return target, difficulty

    # ------------------------------------------------------------------ the hot path

    def check(  # noqa: PLR0912, PLR0915 - one flat function: a call per check costs more than the check
        self,
        worker: str,
        job_id: str,
        extranonce2: str,
        ntime: str,
        nonce: str,
        version_bits: str | None,
    ) -> Verdict:
        """Validate one ``mining.submit``; see the module docstring for the checks."""
        if worker not in self.workers:
            return _UNAUTHORIZED
        book = self.book
        job = book.jobs.get(job_id)
        if job is None:
            job = self._aliases.get(job_id)
            if job is None or job.base.voided:
                # Not ours: maybe a job of the connection this miner was just moved from.
                previous = self.previous_book
                job = None if previous is None else previous.jobs.get(job_id)
                if job is None or previous is None:
                    return _JOB_NOT_FOUND
                book = previous
        self.job = job
        self.from_previous = book is not self.book
        if len(extranonce2) != self._hex_len or len(ntime) != 8 or len(nonce) != 8:
            return _INVALID_PARAMS
        try:
            en2 = bytes.fromhex(extranonce2)
            times = bytes.fromhex(ntime + nonce)
        except ValueError:
            return _INVALID_PARAMS
        # fromhex skips whitespace (int() would also take signs, "0x", "_" and non-ASCII
        # digits): fewer bytes than hex characters/2 means a field was not all hex digits.
        if len(en2) != self.extranonce2_size or len(times) != 8:
            return _INVALID_PARAMS
        ntime_int, nonce_int = _U32_PAIR(times)
        if not job.ntime <= ntime_int <= job.ntime + self.book.ntime_window:
            return _INVALID_NTIME
        if version_bits is None:
            version = job.version
        else:
            version = self._rolled_version(job.version, version_bits)
            if version < 0:
                return _INVALID_VERSION
        key = (self.extranonce1, en2, ntime_int, nonce_int, version)
        seen = job.seen
        if key in seen:
            return _DUPLICATE

        state = job.coinb1_state.copy()
        state.update(self.extranonce1)
        state.update(en2)
        state.update(job.coinb2)
        root = _sha256(state.digest()).digest()
        for sibling in job.branch:
            root = _sha256(_sha256(root + sibling).digest()).digest()
        header = HEADER.pack(version, job.prevhash, root, ntime_int, job.nbits, nonce_int)
        hash_int = int.from_bytes(_sha256(_sha256(header).digest()).digest(), "little")

        self.extranonce2 = en2
        self.ntime = ntime_int
        self.nonce = nonce_int
        self.version = version
        self.hash_int = hash_int
        if job.seq >= self._target_since:
            target = self._target
            self.difficulty = self._difficulty
        else:
            target, self.difficulty = self.target_for(job)
        if hash_int <= job.network_target:
            seen.add(key)
            self.met_target = hash_int <= target
            self.met_pool = hash_int <= job.upstream_target or hash_int <= book.upstream_target
            return _BLOCK
        if hash_int > target:
            return _LOW_DIFFICULTY
        seen.add(key)
        if hash_int <= job.upstream_target or hash_int <= book.upstream_target:
            return _ACCEPTED_UPSTREAM
        return _ACCEPTED

    def _rolled_version(self, job_version: int, version_bits: str) -> int:
        """The header version (BIP310), or -1 when the bits are malformed or outside the mask."""
        if len(version_bits) != 8:
            return -1
        try:
            raw = bytes.fromhex(version_bits)
        except ValueError:
            return -1
        if len(raw) != 4:  # whitespace that fromhex skipped
            return -1
        bits = int.from_bytes(raw, "big")
        mask = self.version_mask
        if bits & ~mask:
            return -1
        return (job_version & ~mask & 0xFFFFFFFF) | bits
