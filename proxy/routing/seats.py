"""The placement table: which upstream connection every placed miner is on.

Only :class:`Seats` changes it, and only routing calls it. A seat is a connection and an
extranonce prefix on it; moving a miner frees its seat and takes one on the target pool,
with the same prefix where it is free, so a miner moved between connections of one layout
is told nothing (docs/protocol.md, "Many miners on one pool connection").
"""

from __future__ import annotations

import asyncio

from proxy.routing.ports import PlacedMiner
from proxy.routing.state import Conn, PoolState
from proxy.stats import Tally


class Seats:
    """Every placed miner's connection, and the miners waiting for one (orphans)."""

    def __init__(self) -> None:
        self._placed: dict[PlacedMiner, Conn] = {}
        # Miners whose connection died with nowhere else to go: placed when a pool is ready.
        self.orphans: set[PlacedMiner] = set()
        self.capacity = asyncio.Event()  # set when a seat may have become free

    def conn_of(self, session: PlacedMiner) -> Conn | None:
        """The connection ``session`` is on."""
        return self._placed.get(session)

    def placed(self) -> list[PlacedMiner]:
        """Every placed miner."""
        return list(self._placed)

    def miners_of(self, conn: Conn) -> list[PlacedMiner]:
        """The miners on ``conn`` (a scan: only for failover-rare events)."""
        return [session for session, placed in self._placed.items() if placed is conn]

    @staticmethod
    def free_seat(
        pool: PoolState, preferred: bytes | None, keep: tuple[bytes, int] | None = None
    ) -> tuple[Conn, bytes] | None:
        """A ready connection of ``pool`` with room, and the prefix to take on it.

        ``keep``: the miner's (extranonce1, extranonce2 size), which must not change (it
        cannot be told): only a folded connection with the same miner size and
        ``preferred`` free qualifies.
        """
        for conn in pool.ready_connections():
            allocator = conn.allocator
            if allocator.full:
                continue
            if keep is not None:
                if preferred is None or not conn.fold or conn.miner_extranonce2_size != keep[1]:
                    continue
                if len(preferred) != allocator.size or allocator.holds(preferred) or preferred != keep[0]:
                    continue
            return conn, allocator.allocate(preferred)
        return None

    def put(
        self, session: PlacedMiner, conn: Conn, prefix: bytes, tally: Tally, previous: Conn | None = None
    ) -> None:
        """Seat ``session`` on ``conn`` with ``prefix`` (``previous``: where it came from)."""
        self.orphans.discard(session)
        conn.miners.add(session)
        self._placed[session] = conn
        session.attached(conn, prefix, previous, tally)

    def remove(self, session: PlacedMiner) -> Conn | None:
        """Free the seat of ``session`` (disconnect, or before a move); returns its conn."""
        self.orphans.discard(session)
        conn = self._placed.pop(session, None)
        if conn is None:
            return None
        conn.miners.discard(session)
        conn.allocator.release(session.prefix)
        pool = conn.state
        if not conn.miners and pool.connections and conn is not pool.connections[0] and not conn.retired:
            conn.retire()  # an extra connection nobody uses any more
        self.capacity.set()
        return conn

    def forget(self, session: PlacedMiner) -> None:
        """Drop ``session`` from the table without freeing its prefix (its connection's
        layout changed: the allocator is new)."""
        self._placed.pop(session, None)

    def move(self, session: PlacedMiner, target: PoolState, tally: Tally, *, keep_layout: bool) -> bool:
        """Move ``session`` to a connection of ``target``; False when no seat is free (or,
        with ``keep_layout``, none keeps its extranonce), and then nothing changed."""
        old_e1, old_size = session.extranonce1, session.extranonce2_size
        keep = (old_e1, old_size) if keep_layout else None
        seat = self.free_seat(target, session.prefix or None, keep)
        if seat is None:
            return False
        conn, prefix = seat
        previous = self._placed.get(session)
        if previous is not None and (previous.closing or previous.closed):
            previous = None  # its jobs are void: nothing more can go to it
        # The new seat is taken before the old one is freed: a prefix of the same
        # connection (a relayout) is never handed to the miner twice.
        self.remove(session)
        session.detached()
        self.put(session, conn, prefix, tally, previous)
        session.moved(old_e1, old_size)
        return True
