"""The miner session's protocol logic, apart from its transport.

:mod:`proxy.session.state` is its lifecycle as an explicit state machine;
:mod:`proxy.session.handshake` the pure parts of the handshake (BIP310 version rolling,
worker names, suggested targets, resumed prefixes). The asyncio protocol around them is
:mod:`proxy.downstream`.
"""
