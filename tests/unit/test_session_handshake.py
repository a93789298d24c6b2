"""The pure parts of the miner handshake."""

from __future__ import annotations

from proxy.mining.target import DIFF1_TARGET
from proxy.session.handshake import (
    VersionRolling,
    minimum_difficulty,
    resume_prefix,
    suggested_difficulty,
    valid_worker_name,
)


def test_version_rolling_grants_the_and_of_both_masks_and_tells_changes_once() -> None:
    rolling = VersionRolling()
    assert rolling.to_tell(0x1FFFE000) is None  # never negotiated: nothing to tell
    assert rolling.configure({"version-rolling.mask": "00fff000"}, 0x1FFFE000) == {
        "version-rolling": True,
        "version-rolling.mask": "00ffe000",
    }
    assert rolling.to_tell(0x1FFFE000) is None  # it was told exactly that
    assert rolling.to_tell(0x00FFF000) == 0x00FFF000  # the pool's mask changed
    assert rolling.to_tell(0x00FFF000) is None
    assert rolling.granted(None) == 0  # no pool: no rolling


def test_version_rolling_refusals() -> None:
    assert VersionRolling().configure({"version-rolling.mask": "zz"}, 0x1FFFE000) == {
        "version-rolling": "invalid version-rolling.mask"
    }
    assert VersionRolling().configure({}, 0) == {"version-rolling": False}
    assert (
        VersionRolling().configure({}, 0x1FFFE000)["version-rolling.mask"] == "1fffe000"
    )  # default ffffffff


def test_minimum_difficulty_takes_positive_numbers_only() -> None:
    assert minimum_difficulty({"minimum-difficulty.value": 2048}) == 2048.0
    for bad in (0, -1, True, "2048", None, 10**400):
        assert minimum_difficulty({"minimum-difficulty.value": bad}) is None


def test_worker_names_and_targets_and_resume_ids() -> None:
    assert valid_worker_name("acct.rig-1")
    assert not valid_worker_name("") and not valid_worker_name("a" * 257) and not valid_worker_name("a\nb")
    assert suggested_difficulty(f"{DIFF1_TARGET:064x}") == 1.0
    assert suggested_difficulty("0" * 64) is None and suggested_difficulty("x") is None
    assert suggested_difficulty("f" * 65) is None
    assert resume_prefix("00ff") == b"\x00\xff"
    assert resume_prefix("zz") is None and resume_prefix("0" * 18) is None and resume_prefix(None) is None
