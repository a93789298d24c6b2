"""A miner session's lifecycle as an explicit state machine (pure; the model is h11's).

States, in the order a miner normally goes through them::

    CONNECTED --configure--> CONFIGURED --subscribe--> SUBSCRIBED --authorize--> AUTHORIZED
    AUTHORIZED --start--> MINING          (once it is placed on a channel: first job sent)
    any open state --leave--> LEAVING     (told to reconnect: answered until it goes)
    any state --close--> CLOSED           (no more input is handled)

``mining.configure`` may come again later (BIP310 allows it), and a connection may
authorize more workers once authorized; both leave the state as it is. Everything a
session may do in a state is in :data:`TRANSITIONS`: an event not listed for a state is a
:class:`ProtocolViolation` (the session answers it with an error, the state unchanged).
"""

from __future__ import annotations

from enum import Enum
from typing import Final


class State(Enum):
    """Where a miner session is in its lifecycle."""

    CONNECTED = "connected"
    CONFIGURED = "configured"
    SUBSCRIBED = "subscribed"
    AUTHORIZED = "authorized"
    MINING = "mining"
    LEAVING = "leaving"
    CLOSED = "closed"


class Event(Enum):
    """What moves a session from one state to another."""

    CONFIGURE = "configure"
    SUBSCRIBE = "subscribe"
    AUTHORIZE = "authorize"
    START = "start"
    LEAVE = "leave"
    CLOSE = "close"


class ProtocolViolation(Exception):
    """An event the session's state does not allow (e.g. authorize before subscribe)."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"{event.value} not allowed while {state.value}")
        self.state = state
        self.event = event


_OPEN: Final = (State.CONNECTED, State.CONFIGURED, State.SUBSCRIBED, State.AUTHORIZED, State.MINING)

TRANSITIONS: Final[dict[tuple[State, Event], State]] = {
    (State.CONNECTED, Event.CONFIGURE): State.CONFIGURED,
    (State.CONFIGURED, Event.CONFIGURE): State.CONFIGURED,
    (State.SUBSCRIBED, Event.CONFIGURE): State.SUBSCRIBED,
    (State.AUTHORIZED, Event.CONFIGURE): State.AUTHORIZED,
    (State.MINING, Event.CONFIGURE): State.MINING,
    (State.CONNECTED, Event.SUBSCRIBE): State.SUBSCRIBED,
    (State.CONFIGURED, Event.SUBSCRIBE): State.SUBSCRIBED,
    (State.SUBSCRIBED, Event.AUTHORIZE): State.AUTHORIZED,
    (State.AUTHORIZED, Event.AUTHORIZE): State.AUTHORIZED,
    (State.MINING, Event.AUTHORIZE): State.MINING,
    # Told to leave, it is still answered (a request sent before it read the reconnect),
    # but it gets no new work.
    (State.LEAVING, Event.SUBSCRIBE): State.LEAVING,
    (State.LEAVING, Event.AUTHORIZE): State.LEAVING,
    (State.AUTHORIZED, Event.START): State.MINING,
    **{(state, Event.LEAVE): State.LEAVING for state in _OPEN},
    **{(state, Event.CLOSE): State.CLOSED for state in (*_OPEN, State.LEAVING, State.CLOSED)},
}
"""Every allowed (state, event) and the state it leads to."""


def advance(state: State, event: Event) -> State:
    """The state ``event`` leads to from ``state``; :class:`ProtocolViolation` if it is not
    allowed there. A session holds only its current :class:`State` (an enum member, no
    object of its own: a farm keeps tens of thousands of sessions)."""
    new = TRANSITIONS.get((state, event))
    if new is None:
        raise ProtocolViolation(state, event)
    return new


def allows(state: State, event: Event) -> bool:
    """True when ``event`` is allowed in ``state``."""
    return (state, event) in TRANSITIONS
