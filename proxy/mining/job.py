"""Jobs pre-decoded once, and the book of live jobs of one upstream connection.

Every hex field of a ``mining.notify`` is decoded exactly once, when the job arrives, so
validating a share never decodes job fields. The duplicate filter of a job lives on the
job, so it is forgotten with it: memory is bounded by the number of live jobs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final, Protocol

from proxy.mining.hashing import prevhash_from_stratum
from proxy.mining.target import DIFF1_TARGET, target_from_nbits

DEFAULT_NTIME_WINDOW: Final = 7000
"""Seconds a share's ntime may run ahead of the job's (ckpool's window)."""

DEFAULT_MAX_JOBS: Final = 32
"""Live jobs kept per upstream connection when the pool never sends clean_jobs."""

ShareKey = tuple[bytes, bytes, int, int, int]
"""(extranonce1, extranonce2, ntime, nonce, version): what makes a share unique in a job."""


class NotifyFields(Protocol):
    """The fields of a ``mining.notify`` (``proxy.stratum.messages.NotifyParams`` has them);
    a protocol, so the pure mining layer does not depend on the wire format."""

    job_id: str
    prevhash: str
    coinb1: str
    coinb2: str
    merkle_branch: list[str]
    version: str
    nbits: str
    ntime: str
    clean_jobs: bool


class JobError(ValueError):
    """A pool sent a job whose fields are malformed."""


def _hex(value: str, name: str, size: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise JobError(f"{name} is not hex") from None
    if size is not None and len(raw) != size:
        raise JobError(f"{name} must be {size} bytes, got {len(raw)}")
    return raw


def _u32(value: str, name: str) -> int:
    return int.from_bytes(_hex(value, name, 4), "big")


class Job:
    """Everything from one ``mining.notify``, decoded to bytes and ints once.

    ``job_id`` is the id miners see (the proxy's own); ``upstream_job_id`` is the pool's.
    ``seq`` orders jobs in the process so a share can be judged at the difficulty that was
    in force when its job was sent. An *alias* (see :meth:`alias`) is the same work under
    a fresh id, used to make a difficulty change take effect; it shares the duplicate
    filter of its base job, so resubmitting a share under the alias is still a duplicate.
    """

    __slots__ = (
        "base",
        "branch",
        "clean_jobs",
        "coinb1",
        "coinb1_state",
        "coinb2",
        "created",
        "job_id",
        "nbits",
        "network_target",
        "ntime",
        "prevhash",
        "seen",
        "seq",
        "upstream_job_id",
        "upstream_target",
        "version",
        "voided",
    )

    def __init__(
        self,
        *,
        job_id: str,
        upstream_job_id: str,
        seq: int,
        prevhash: bytes,
        coinb1: bytes,
        coinb2: bytes,
        branch: Sequence[bytes],
        version: int,
        nbits: int,
        ntime: int,
        clean_jobs: bool,
        created: float,
        upstream_target: int = DIFF1_TARGET,
    ) -> None:
        self.job_id = job_id
        self.upstream_job_id = upstream_job_id
        self.seq = seq
        self.prevhash = prevhash
        self.coinb1 = coinb1
        # SHA-256 midstate after coinb1: each share only hashes extranonces and coinb2.
        self.coinb1_state: Any = hashlib.sha256(coinb1)
        self.coinb2 = coinb2
        self.branch = tuple(branch)
        self.version = version
        self.nbits = nbits
        self.ntime = ntime
        self.clean_jobs = clean_jobs
        self.created = created
        self.network_target = target_from_nbits(nbits)
        self.upstream_target = upstream_target
        self.seen: set[ShareKey] = set()
        self.voided = False
        self.base: Job = self

    @classmethod
    def from_notify(
        cls,
        *,
        job_id: str,
        upstream_job_id: str,
        seq: int,
        prevhash: str,
        coinb1: str,
        coinb2: str,
        merkle_branch: Sequence[str],
        version: str,
        nbits: str,
        ntime: str,
        clean_jobs: bool,
        created: float,
        upstream_target: int = DIFF1_TARGET,
        coinb1_suffix: bytes = b"",
    ) -> Job:
        """Decode a notify's hex fields; raise :class:`JobError` naming a bad field.

        ``coinb1_suffix`` is appended to coinb1: the proxy folds the pool's extranonce1 in
        there so a miner's own extranonce1 is only its prefix (docs/protocol.md, "Many
        miners on one pool connection").
        """
        try:
            header_prevhash = prevhash_from_stratum(prevhash)
        except ValueError:
            raise JobError("prevhash must be 32 bytes of hex") from None
        return cls(
            job_id=job_id,
            upstream_job_id=upstream_job_id,
            seq=seq,
            prevhash=header_prevhash,
            coinb1=_hex(coinb1, "coinb1") + coinb1_suffix,
            coinb2=_hex(coinb2, "coinb2"),
            branch=[_hex(h, "merkle_branch entry", 32) for h in merkle_branch],
            version=_u32(version, "version"),
            nbits=_u32(nbits, "nbits"),
            ntime=_u32(ntime, "ntime"),
            clean_jobs=clean_jobs,
            created=created,
            upstream_target=upstream_target,
        )

    @classmethod
    def from_fields(
        cls,
        fields: NotifyFields,
        *,
        seq: int,
        created: float,
        job_id: str | None = None,
        upstream_target: int = DIFF1_TARGET,
        coinb1_suffix: bytes = b"",
    ) -> Job:
        """:meth:`from_notify` on a decoded notify; ``job_id`` defaults to the notify's own."""
        return cls.from_notify(
            job_id=fields.job_id if job_id is None else job_id,
            upstream_job_id=fields.job_id,
            seq=seq,
            prevhash=fields.prevhash,
            coinb1=fields.coinb1,
            coinb2=fields.coinb2,
            merkle_branch=fields.merkle_branch,
            version=fields.version,
            nbits=fields.nbits,
            ntime=fields.ntime,
            clean_jobs=fields.clean_jobs,
            created=created,
            upstream_target=upstream_target,
            coinb1_suffix=coinb1_suffix,
        )

    def alias(self, job_id: str, seq: int) -> Job:
        """The same work under a new id and sequence number (duplicate filter shared)."""
        twin = Job.__new__(Job)
        for name in Job.__slots__:
            setattr(twin, name, getattr(self, name))
        twin.job_id = job_id
        twin.seq = seq
        twin.clean_jobs = False
        twin.base = self.base
        return twin

    @property
    def live(self) -> bool:
        """False once the job (or the job it aliases) was voided by clean_jobs or age."""
        return not self.base.voided


class JobIds:
    """Process-wide source of proxy job ids and sequence numbers.

    One source feeds every upstream connection, so ids never collide across pools (pool job
    ids do) and a miner moved to another pool cannot have an old id match a new job.
    """

    __slots__ = ("_next",)

    def __init__(self, start: int = 1) -> None:
        self._next = start

    @property
    def next_seq(self) -> int:
        """The sequence number the next :meth:`take` will return."""
        return self._next

    def take(self) -> tuple[str, int]:
        """A fresh (job id, sequence number)."""
        n = self._next
        self._next = n + 1
        return format(n, "x"), n


class JobBook:
    """The live jobs of one upstream connection, keyed by the id miners see.

    ``clean_jobs`` voids every earlier job; otherwise the oldest job is voided once more
    than ``max_jobs`` are live. ``upstream_target`` is the pool's current share target.
    """

    __slots__ = ("current", "ids", "jobs", "max_jobs", "ntime_window", "upstream_target")

    def __init__(
        self,
        ids: JobIds,
        *,
        max_jobs: int = DEFAULT_MAX_JOBS,
        ntime_window: int = DEFAULT_NTIME_WINDOW,
    ) -> None:
        if max_jobs < 1:
            raise ValueError("max_jobs must be at least 1")
        self.ids = ids
        self.jobs: dict[str, Job] = {}
        self.max_jobs = max_jobs
        self.ntime_window = ntime_window
        # Stratum's default difficulty is 1 until the pool says otherwise.
        self.upstream_target = DIFF1_TARGET
        self.current: Job | None = None

    def add(self, job: Job) -> None:
        """Make ``job`` current; void older jobs as clean_jobs or the cap demands."""
        if job.clean_jobs:
            self.void_all()
        self.jobs[job.job_id] = job
        self.current = job
        while len(self.jobs) > self.max_jobs:
            oldest = next(iter(self.jobs))
            self.jobs.pop(oldest).voided = True

    def void_all(self) -> None:
        """Void every live job (clean_jobs, or the upstream connection went away)."""
        for job in self.jobs.values():
            job.voided = True
        self.jobs.clear()
        self.current = None

    def void_others(self, keep: Job) -> None:
        """Void every live job but ``keep`` (a pool's clean resend of its current job)."""
        for job_id, job in list(self.jobs.items()):
            if job is not keep:
                job.voided = True
                del self.jobs[job_id]

    def get(self, job_id: str) -> Job | None:
        """The live job with this id, if any."""
        return self.jobs.get(job_id)
