"""What a miner session and the routing layer see of each other (protocols only)."""

from __future__ import annotations

from typing import Protocol

from proxy.stats import Tally
from proxy.upstream.channel import Channel, MinerLink


class PlacedMiner(MinerLink, Protocol):
    """A miner session as routing places it."""

    extranonce1: bytes
    extranonce2_size: int
    extranonce_subscribed: bool
    """It may be sent ``mining.set_extranonce``."""
    peer: str
    """``HOST:PORT`` of the miner (the PROXY header's source behind a balancer)."""
    listener: str | None
    """The ``[server] listen`` address it connected to, as configured."""
    work: float
    """Accepted share difficulty so far (its measured hashrate, over time)."""
    tally: Tally
    """Where its accepted work is counted: its group's counter for its pool."""

    @property
    def closing(self) -> bool:
        """True once the session handles no more input."""

    @property
    def mining(self) -> bool:
        """It has been sent work."""

    @property
    def worker(self) -> str | None:
        """The first worker name it authorized (None before authorize)."""

    def attached(self, channel: Channel, prefix: bytes, previous: Channel | None, tally: Tally) -> None:
        """Placed on ``channel`` with ``prefix`` (``previous``: the channel it was moved
        from); its accepted work counts on ``tally``."""

    def detached(self) -> None:
        """No longer on any channel (its channel is gone; it waits for a new place)."""

    def moved(self, old_extranonce1: bytes, old_size: int) -> None:
        """Placed on another channel; tell the miner whatever changed for it."""

    def reconnect(self, host: str | None = None, port: int | None = None, wait: float = 0) -> None:
        """Ask the miner to reconnect."""


class Placement(Protocol):
    """Routing as a miner session sees it."""

    @property
    def version_mask(self) -> int:
        """The version mask offered to a miner that configures before it is placed."""

    def attach(self, session: PlacedMiner, preferred: bytes | None = None) -> Channel | None:
        """Place a subscribing miner now, if there is room (``preferred``: its old prefix)."""

    async def attach_wait(
        self, session: PlacedMiner, preferred: bytes | None, timeout: float
    ) -> Channel | None:
        """Place it within ``timeout`` seconds, or None."""

    def place(self, session: PlacedMiner, worker: str) -> None:
        """The miner authorized ``worker``: put it where its group says."""

    def detach(self, session: PlacedMiner) -> None:
        """The miner left: free its place."""
