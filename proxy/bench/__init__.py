"""Benchmarks (``stratum-proxy bench``): speed is measured here, never asserted in tests."""
