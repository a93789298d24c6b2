"""Tests of the TOML config: parsing, validation errors, reload diffs and `check`."""
