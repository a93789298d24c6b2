"""The miner session's lifecycle table: every allowed step, and what is refused."""

from __future__ import annotations

import pytest

from proxy.session.state import TRANSITIONS, Event, ProtocolViolation, State, advance, allows


def walk(*events: Event) -> State:
    state = State.CONNECTED
    for event in events:
        state = advance(state, event)
    return state


def test_the_usual_handshake() -> None:
    assert walk(Event.CONFIGURE, Event.SUBSCRIBE, Event.AUTHORIZE, Event.START) is State.MINING


def test_authorize_before_subscribe_is_refused() -> None:
    configured = walk(Event.CONFIGURE)
    with pytest.raises(ProtocolViolation) as raised:
        advance(configured, Event.AUTHORIZE)
    assert raised.value.state is State.CONFIGURED and raised.value.event is Event.AUTHORIZE
    assert not allows(State.CONNECTED, Event.AUTHORIZE)


def test_more_workers_and_a_late_configure_keep_the_state() -> None:
    assert (
        walk(Event.SUBSCRIBE, Event.AUTHORIZE, Event.START, Event.AUTHORIZE, Event.CONFIGURE) is State.MINING
    )


def test_mining_starts_only_once_authorized() -> None:
    assert not allows(walk(Event.SUBSCRIBE), Event.START)
    with pytest.raises(ProtocolViolation):
        advance(State.CONNECTED, Event.START)


def test_a_leaving_miner_gets_no_new_work_and_leaves_once() -> None:
    leaving = walk(Event.SUBSCRIBE, Event.AUTHORIZE, Event.START, Event.LEAVE)
    assert leaving is State.LEAVING
    assert not allows(leaving, Event.START) and not allows(leaving, Event.LEAVE)
    assert allows(leaving, Event.AUTHORIZE)  # answered, but it is on its way out
    assert walk(Event.LEAVE) is State.LEAVING  # told to go before its handshake ended


def test_closed_is_final() -> None:
    closed = walk(Event.SUBSCRIBE, Event.CLOSE)
    for event in Event:
        assert allows(closed, event) is (event is Event.CLOSE)


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
