"""Who decides where a miner mines: placement of miner sessions on upstream channels.

:mod:`proxy.routing.pools` owns the placement table (session -> channel and prefix) and
the pool connections; :mod:`proxy.routing.policy` holds its decisions as pure functions of
what was observed and ``now``; :mod:`proxy.routing.ports` is what sessions and routing
see of each other.
"""
