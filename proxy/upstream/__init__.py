"""The pool side: one channel per pool connection.

:mod:`proxy.upstream.channel` is the narrow interface sessions and the routing layer see
(what a channel offers a miner, and what it needs of one); :mod:`proxy.upstream.v1` is the
Stratum V1 pool client behind it. Another upstream protocol plugs in by offering the same
:class:`~proxy.upstream.channel.Channel` surface; sessions never import a client.
"""
