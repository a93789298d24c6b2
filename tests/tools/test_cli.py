"""``stratum-proxy pool`` and ``stratum-proxy simulate`` as a user runs them (loopback only)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from proxy.cli import build_parser, main
from proxy.tools.pool import config_from_args as pool_config
from proxy.tools.simulate import config_from_args as sim_config


def test_pool_arguments_build_the_config() -> None:
    args = build_parser().parse_args(
        [
            "pool",
            "--listen",
            "127.0.0.1:0",
            "--difficulty",
            "0.001",
            "--extranonce2-size",
            "4",
            "--job-interval",
            "5",
            "--version-mask",
            "0",
            "--reject-every",
            "10",
            "--nbits",
            "207fffff",
        ]
    )
    config = pool_config(args)
    assert (config.host, config.port, config.difficulty) == ("127.0.0.1", 0, 0.001)
    assert (config.extranonce2_size, config.job_interval, config.version_mask) == (4, 5, 0)
    assert (config.reject_every, config.nbits) == (10, 0x207FFFFF)


def test_simulate_arguments_build_the_config() -> None:
    args = build_parser().parse_args(
        ["simulate", "--url", "stratum+tcp://127.0.0.1:3333", "--miners", "3", "--no-hash", "--user", "farm"]
    )
    config = sim_config(args)
    assert (config.host, config.port, config.user, config.no_hash) == ("127.0.0.1", 3333, "farm", True)
    assert args.miners == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["pool", "--listen", "no-port"],
        ["pool", "--listen", "127.0.0.1:0", "--extranonce2-size", "0"],
        ["pool", "--listen", "127.0.0.1:0", "--version-mask", "zz"],
        ["simulate", "--url", "stratum+ssl://127.0.0.1:1"],
        ["simulate", "--url", "127.0.0.1:1", "--miners", "0"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "stratum-proxy" in capsys.readouterr().err


def _number(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match is not None, (pattern, text)
    return int(match.group(1))


def test_pool_and_simulator_processes_agree() -> None:
    pool = subprocess.Popen(
        [sys.executable, "-m", "proxy", "pool", "--listen", "127.0.0.1:0", "--difficulty", "1e-7"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert pool.stdout is not None
        banner = pool.stdout.readline()
        port = _number(r"stratum\+tcp://127\.0\.0\.1:(\d+)", banner)
        sim = subprocess.run(
            [
                sys.executable,
                "-m",
                "proxy",
                "simulate",
                "--url",
                f"stratum+tcp://127.0.0.1:{port}",
                "--miners",
                "2",
                "--duration",
                "2",
                "--report-interval",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        pool.send_signal(signal.SIGTERM)
        out, err = pool.communicate(timeout=10)
    assert sim.returncode == 0, sim.stderr
    assert pool.returncode == 0, err
    summary = next(line for line in sim.stdout.splitlines() if line.startswith("sim summary:"))
    assert "2 handshakes" in summary and "unanswered 0" in summary and "rejected 0" in summary
    pool_summary = next(line for line in out.splitlines() if line.startswith("pool summary:"))
    assert _number(r"accepted (\d+)", pool_summary) == _number(r"accepted (\d+)", summary)
    assert _number(r"connections (\d+)", pool_summary) == 2
