"""The jobs of one pool connection, as miners get them: pure, time passed in.

Each pool job becomes one proxy job with a process-unique id, its lines encoded once for
every miner on the connection. The pool's extranonce1 is folded into coinb1 when the
connection serves many miners (the miner's extranonce1 is then only its prefix).
"""

from __future__ import annotations

from collections.abc import Set
from typing import NamedTuple

import msgspec

from proxy.mining.job import Job, JobBook, JobIds
from proxy.mining.target import target_from_difficulty
from proxy.stratum.codec import LineEncoder, encode_notify
from proxy.stratum.messages import NotifyParams, SetDifficulty, SetDifficultyParams
from proxy.upstream.channel import MinerLink


class NewJob(NamedTuple):
    """A job to send to every miner on the connection."""

    line: bytes
    """The notify line, encoded once."""
    seq: int
    """Its sequence number: a difficulty change it carries applies from it on."""
    ceiling: float | None
    """A new pool difficulty this job carries to the miners, if any."""
    job_id: str
    clean: bool


class JobFeed:
    """Pool notifies in, proxy jobs out; also the pool difficulty that rides on them."""

    __slots__ = (
        "_clean_line",
        "_force_clean",
        "_pending_ceiling",
        "_pool_notify",
        "book",
        "current_line",
        "current_notify",
        "difficulty",
    )

    def __init__(self, ids: JobIds, *, ntime_window: int) -> None:
        self.book = JobBook(ids, ntime_window=ntime_window)
        self.difficulty = 1.0  # Stratum's default until the pool says otherwise
        self.current_notify: NotifyParams | None = None  # as miners see it
        self.current_line: bytes | None = None
        self._clean_line: bytes | None = None
        self._pool_notify: NotifyParams | None = None  # the current job as the pool sent it
        # Set when every job was voided without the pool saying so (our extranonce1
        # changed): the next job goes to miners with clean_jobs, so none keeps stale work.
        self._force_clean = False
        # A pool difficulty change waiting for the next job to carry it to the miners.
        self._pending_ceiling: float | None = None

    def set_difficulty(self, difficulty: float) -> None:
        """Like a miner, the pool applies a new difficulty to its next job; so do we: the
        miners are clamped when that job arrives, in one broadcast."""
        self.difficulty = difficulty
        self.book.upstream_target = target_from_difficulty(difficulty)
        self._pending_ceiling = difficulty

    def take(self, params: NotifyParams, now: float, coinb1_suffix: bytes) -> NewJob | None:
        """A pool notify; the job to broadcast, or None when nothing goes to the miners
        (the pool repeated its current job). Raises ``JobError`` for a malformed job."""
        repeated = self.book.current if self._same_as_current(params) else None
        if repeated is not None:
            if self._pending_ceiling is None:
                self._repeat(repeated, params)
                return None
            # A difficulty change rides on it: it goes out under a new id, but the old id
            # (the same work, renamed upstream like the new one) stays valid.
            repeated.upstream_job_id = params.job_id
            if params.clean_jobs:
                self.book.void_others(repeated)
            params = msgspec.structs.replace(params, clean_jobs=False)
        job_id, seq = self.book.ids.take()
        job = Job.from_fields(
            params,
            job_id=job_id,
            seq=seq,
            created=now,
            upstream_target=self.book.upstream_target,
            coinb1_suffix=coinb1_suffix,
        )
        if repeated is not None:
            job.seen = repeated.seen  # one header: a share is a duplicate under either id
        self.book.add(job)
        self._pool_notify = params
        clean = params.clean_jobs or self._force_clean
        self._force_clean = False
        coinb1 = params.coinb1 + coinb1_suffix.hex()
        downstream = msgspec.structs.replace(params, job_id=job_id, coinb1=coinb1, clean_jobs=clean)
        line = encode_notify(downstream)
        self.current_notify = downstream
        self.current_line = line
        self._clean_line = line if clean else None
        ceiling, self._pending_ceiling = self._pending_ceiling, None
        return NewJob(line, seq, ceiling, job_id, clean)

    def _same_as_current(self, params: NotifyParams) -> bool:
        """True when the pool re-sent its current job unchanged (ckpool does, with
        clean_jobs, e.g. after a restart); its own job id may differ.

        Issuing it as a clean job under a new id would void the old id, while miners that
        keep their work when the header is unchanged (cpuminer) go on submitting the old
        id: every share "Job not found". So the old id stays valid.
        """
        previous = self._pool_notify
        if previous is None or self.book.current is None or self._force_clean:
            return False
        same = msgspec.structs.replace(params, job_id=previous.job_id, clean_jobs=previous.clean_jobs)
        return same == previous

    def _repeat(self, current: Job, params: NotifyParams) -> None:
        """Nothing new for the miners: shares on the current job go up under the pool's
        (possibly new) id from now on; a clean resend still voids every other job."""
        current.upstream_job_id = params.job_id
        if params.clean_jobs:
            self.book.void_others(current)
        self._pool_notify = params

    def clean_line(self) -> bytes | None:
        """The current job with clean_jobs set, for miners just moved here (encoded once)."""
        if self._clean_line is None and self.current_notify is not None:
            self._clean_line = encode_notify(msgspec.structs.replace(self.current_notify, clean_jobs=True))
        return self._clean_line

    def adopt(self, lost: JobFeed) -> None:
        """The pool resumed the session of a lost connection on this one (same
        extranonce1): its jobs are still the pool's, and miners hold their ids, so they
        stay valid here, and a resend of the current one is recognised as a repeat."""
        self.book.jobs.update(lost.book.jobs)
        self.book.current = lost.book.current
        self.book.upstream_target = lost.book.upstream_target
        self.difficulty = lost.difficulty
        self.current_notify, self.current_line = lost.current_notify, lost.current_line
        self._clean_line, self._pool_notify = lost._clean_line, lost._pool_notify
        if self._pending_ceiling is None:  # a difficulty change it had not passed on yet
            self._pending_ceiling = lost._pending_ceiling
        lost.book.jobs = {}  # handed over, not voided
        lost.book.current = None

    def void_all(self, *, force_clean: bool = False) -> None:
        """Every job is void (connection lost, or our extranonce1 changed: then the next
        job goes out with clean_jobs)."""
        self.book.void_all()
        if force_clean:
            self.current_notify = self.current_line = self._clean_line = self._pool_notify = None
            self._force_clean = True


def broadcast(miners: Set[MinerLink], new: NewJob, now: float, encoder: LineEncoder) -> None:
    """Send a job to every miner of a connection. One that carries a new pool difficulty
    goes to each miner whose difficulty must change after a ``set_difficulty`` (encoded
    once per distinct value), so the change takes effect with this job."""
    if new.ceiling is None:
        for session in miners:
            session.send_job(new.line)
        return
    encoded: dict[float, bytes] = {}
    for session in list(miners):
        difficulty = session.clamp_to_pool(new.ceiling, new.seq, now)
        if difficulty is not None:
            prefix = encoded.get(difficulty)
            if prefix is None:
                prefix = encoded[difficulty] = encoder.encode(
                    SetDifficulty(params=SetDifficultyParams(difficulty))
                )
            session.send_job(prefix)
        session.send_job(new.line)
