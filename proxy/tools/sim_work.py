"""A simulated miner's work: what it mines on, and the nonce search at a fixed rate.

:class:`WorkEngine` is the hashing part of :class:`proxy.tools.simulate.SimMiner`. It keeps
the work inputs the pool gave (extranonce1, extranonce2 size, version mask, the newest job
and the difficulty it is worked at), builds units of work from them with the miner's own
extranonce2 and version-rolling counters, searches nonces with real sha256d (or, in load
mode, submits distinct shares without hashing) and sends every share found through the
miner's :class:`~proxy.tools.sim_link.MinerLink`.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from typing import Any, Final

from proxy.mining.hashing import merkle_root, sha256d
from proxy.mining.job import Job
from proxy.mining.target import target_from_difficulty
from proxy.tools.sim_link import MinerLink
from proxy.tools.sim_stats import MinerStats

BATCH_SECONDS: Final = 0.02
"""Work is done in slices of this much time at the configured rate, so the event loop is
never held long by one miner and the rate stays smooth."""

MAX_BATCH: Final = 4096
"""Hashes per slice at most: ~5 ms of Python hashing, a bound on event loop latency."""

_U32: Final = struct.Struct("<I")
_U32X2: Final = struct.Struct("<II")
_sha256: Final = hashlib.sha256


def spread_bits(value: int, mask: int) -> int:
    """Deposit the low bits of ``value`` into the set bits of ``mask`` (like x86 PDEP).

    Turns a counter into version bits that are always inside the granted mask.
    """
    out = 0
    bit = 1
    while mask:
        low = mask & -mask
        if value & bit:
            out |= low
        bit <<= 1
        mask ^= low
    return out


class WorkUnit:
    """One unit of work: a job with a fixed extranonce2 and version, searched over nonces.

    The first 64 header bytes never change within a unit, so their SHA-256 state is kept
    and each nonce only hashes the last 16 bytes (the midstate trick ASICs use too).
    """

    __slots__ = (
        "difficulty",
        "en2_hex",
        "gen",
        "job",
        "mid",
        "nonce",
        "ntime_hex",
        "tail",
        "target",
        "vbits",
    )

    def __init__(
        self,
        job: Job,
        *,
        difficulty: float,
        gen: int,
        extranonce1: bytes,
        extranonce2: bytes,
        version: int,
        vbits: str | None,
    ) -> None:
        self.job = job
        self.difficulty = difficulty
        self.target = target_from_difficulty(difficulty)
        self.gen = gen
        self.en2_hex = extranonce2.hex()
        self.ntime_hex = f"{job.ntime:08x}"
        self.vbits = vbits
        coinbase_hash = sha256d(job.coinb1 + extranonce1 + extranonce2 + job.coinb2)
        head = _U32.pack(version) + job.prevhash + merkle_root(coinbase_hash, job.branch)
        self.mid = _sha256(head[:64])
        self.tail = head[64:] + _U32X2.pack(job.ntime, job.nbits)
        self.nonce = 0


class WorkEngine:
    """The work inputs of one miner's connection and the loop that works them.

    The connection's owner sets the inputs (``extranonce1``, ``extranonce2_size``,
    ``version_mask``, ``authorized``, ``job``, ``job_difficulty``, ``leaving``) and calls
    :meth:`job_changed` after each change, which voids the unit being searched; :attr:`ready`
    is set once the miner is authorized and has a job.
    """

    def __init__(
        self, link: MinerLink, stats: MinerStats, *, worker: str, rate: float, no_hash: bool
    ) -> None:
        self.link = link
        self.stats = stats
        self.worker = worker
        self.rate = rate  # hashes per second, or shares per second with no_hash
        self.no_hash = no_hash
        self.ready = asyncio.Event()
        # Inputs, reset on each connect.
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.version_mask = 0
        self.authorized = False
        self.job: Job | None = None
        self.job_difficulty = 1.0
        self.leaving = False  # told to reconnect: submit nothing more on this connection
        # Search state.
        self._gen = 0
        self._work: WorkUnit | None = None
        self._en2_counter = 0
        self._roll_counter = 0
        self._paused = False
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ control

    def reset(self) -> None:
        """A new connection: nothing granted, no job yet."""
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.version_mask = 0
        self.authorized = False
        self.job = None
        self.leaving = False
        self._gen += 1

    def clear(self) -> None:
        """The connection ended: its job and work are void."""
        self.authorized = False
        self.job = None
        self._work = None
        self.ready.clear()

    def job_changed(self) -> None:
        """The inputs changed: drop the unit in hand, and mine on once there is a job."""
        self._gen += 1
        self._work = None
        if self.authorized and self.job is not None:
            self.ready.set()
            self._wake.set()

    def pause(self) -> None:
        """Stop hashing and submitting."""
        self._paused = True

    def resume(self) -> None:
        """Hash and submit again."""
        self._paused = False
        self._wake.set()

    # ------------------------------------------------------------------ work

    def _current_work(self) -> WorkUnit | None:
        """The unit to search now, building a fresh one on a new job or an exhausted unit."""
        if self._paused or self.leaving or not self.authorized or self.job is None:
            return None
        work = self._work
        if work is None or work.gen != self._gen or work.nonce > 0xFFFFFFFF:
            work = self._work = self._new_work(self.job)
        return work

    def _new_work(self, job: Job) -> WorkUnit:
        """Next extranonce2 from the miner's counter and next rolled version bits."""
        size = self.extranonce2_size
        extranonce2 = (self._en2_counter % (1 << (8 * size))).to_bytes(size, "big")
        self._en2_counter += 1
        mask = self.version_mask
        if mask:
            bits = spread_bits(self._roll_counter, mask)
            self._roll_counter += 1
            version = (job.version & ~mask & 0xFFFFFFFF) | bits
            vbits: str | None = f"{bits:08x}"
        else:
            version, vbits = job.version, None
        return WorkUnit(
            job,
            difficulty=self.job_difficulty,
            gen=self._gen,
            extranonce1=self.extranonce1,
            extranonce2=extranonce2,
            version=version,
            vbits=vbits,
        )

    async def run(self) -> None:
        """Work in slices at the configured rate; never burst to catch up after a stall."""
        loop = asyncio.get_running_loop()
        rate = self.rate
        per_slice = max(1, min(MAX_BATCH, int(rate * BATCH_SECONDS)))
        slot = loop.time()
        while True:
            work = self._current_work()
            if work is None:
                self._wake.clear()
                await self._wake.wait()
                slot = loop.time()
                continue
            slot = max(slot, loop.time() - 1.0)
            count = min(per_slice, 0x100000000 - work.nonce)
            if self.no_hash:
                self._fake_shares(work, count)
            else:
                self._hash(work, count)
            slot += count / rate
            await self.link.drain()
            await asyncio.sleep(max(0.0, slot - loop.time()))

    def _hash(self, work: WorkUnit, count: int) -> None:
        """Search ``count`` nonces of ``work``; submit every share found."""
        mid, tail, target = work.mid, work.tail, work.target
        pack, sha, from_bytes = _U32.pack, _sha256, int.from_bytes
        start = work.nonce
        found: list[tuple[int, int]] = []
        for nonce in range(start, start + count):
            state = mid.copy()
            state.update(tail + pack(nonce))
            value = from_bytes(sha(state.digest()).digest(), "little")
            if value <= target:
                found.append((nonce, value))
        work.nonce = start + count
        self.stats.hashes += count
        network_target = work.job.network_target
        for nonce, value in found:
            if value <= network_target:
                self.stats.block_candidates += 1
            self._submit(work, nonce)

    def _fake_shares(self, work: WorkUnit, count: int) -> None:
        """Load mode: distinct shares without hashing (valid only at a target of 2**256-1)."""
        start = work.nonce
        for nonce in range(start, start + count):
            self._submit(work, nonce)
        work.nonce = start + count

    def _submit(self, work: WorkUnit, nonce: int) -> None:
        params: list[Any] = [self.worker, work.job.job_id, work.en2_hex, work.ntime_hex, f"{nonce:08x}"]
        if work.vbits is not None:
            params.append(work.vbits)  # the 6th param once version rolling is granted
        if self.link.submit(params, work.difficulty):
            self.stats.shares_submitted += 1
