"""The miner session's lifecycle table: every allowed step, and what is refused."""

from __future__ import annotations

import pytest

from proxy.session.state import TRANSITIONS, Event, ProtocolViolation, SessionState, State


def walk(*events: Event) -> SessionState:
    state = SessionState()
    for event in events:
        state.handle(event)
    return state


def test_the_usual_handshake() -> None:
    state = walk(Event.CONFIGURE, Event.SUBSCRIBE, Event.AUTHORIZE, Event.START)
    assert state.state is State.MINING
    assert state.subscribed and state.mining and not state.closing


def test_authorize_before_subscribe_is_refused_and_changes_nothing() -> None:
    state = walk(Event.CONFIGURE)
    with pytest.raises(ProtocolViolation) as raised:
        state.handle(Event.AUTHORIZE)
    assert raised.value.state is State.CONFIGURED and raised.value.event is Event.AUTHORIZE
    assert state.state is State.CONFIGURED


def test_more_workers_and_a_late_configure_keep_the_state() -> None:
    state = walk(Event.SUBSCRIBE, Event.AUTHORIZE, Event.START, Event.AUTHORIZE, Event.CONFIGURE)
    assert state.state is State.MINING


def test_mining_starts_only_once_authorized() -> None:
    assert not walk(Event.SUBSCRIBE).allows(Event.START)
    with pytest.raises(ProtocolViolation):
        walk().handle(Event.START)


def test_a_leaving_miner_keeps_what_it_had() -> None:
    leaving = walk(Event.SUBSCRIBE, Event.AUTHORIZE, Event.START, Event.LEAVE)
    assert leaving.state is State.LEAVING and leaving.mining and leaving.subscribed
    early = walk(Event.LEAVE)
    assert early.state is State.LEAVING and not early.mining and not early.subscribed
    assert not leaving.allows(Event.START)  # it is told to go: no new work
    assert not leaving.allows(Event.LEAVE)


def test_closed_is_final() -> None:
    closed = walk(Event.SUBSCRIBE, Event.CLOSE)
    assert closed.closing and not closed.mining
    for event in Event:
        assert closed.allows(event) is (event is Event.CLOSE)


def test_every_state_can_close_and_every_state_is_reachable() -> None:
    for state in State:
        assert TRANSITIONS[(state, Event.CLOSE)] is State.CLOSED
    reached, frontier = {State.CONNECTED}, [State.CONNECTED]
    while frontier:
        here = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is here and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(State)
