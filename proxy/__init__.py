"""stratum-proxy: a Stratum V1 mining proxy that validates every share."""

__version__ = "0.1.0"
