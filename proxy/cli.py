"""The ``stratum-proxy`` command line (also ``python -m proxy``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from proxy import __version__


def _bench_validate(args: argparse.Namespace) -> int:
    from proxy.bench import validate

    print(validate.report(validate.run(shares=args.shares, repeats=args.repeats)))
    return 0


def _run(args: argparse.Namespace) -> int:
    from proxy.app import run_forever
    from proxy.config import ConfigError, load_config
    from proxy.logs import configure_logging

    try:
        config = load_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"stratum-proxy: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log.level, config.log.format)
    return run_forever(config)


def _check(args: argparse.Namespace) -> int:
    from proxy.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    n = len(config.pools)
    pools = ", ".join(p.name for p in config.pools)
    print(f"ok: {n} pool{'s' * (n != 1)} ({pools}), listeners {', '.join(config.server.listen)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="stratum-proxy",
        description="Stratum V1 mining proxy: aggregates miners onto few pool connections, "
        "validates every share and exports per-worker metrics.",
    )
    parser.add_argument("--version", action="version", version=f"stratum-proxy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="run the proxy in the foreground")
    run.add_argument("--config", required=True, help="TOML config file (see proxy.toml.example)")
    run.set_defaults(handler=_run)

    check = commands.add_parser("check", help="validate a config file and exit (0 ok, 2 invalid)")
    check.add_argument("--config", required=True, help="TOML config file (see proxy.toml.example)")
    check.set_defaults(handler=_check)

    bench = commands.add_parser("bench", help="run a benchmark and print its figures")
    benches = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    validate = benches.add_parser("validate", help="share validation cost next to bare hashing")
    validate.add_argument("--shares", type=int, default=20_000, help="shares per timed loop")
    validate.add_argument("--repeats", type=int, default=7, help="timed loops; the best is kept")
    validate.set_defaults(handler=_bench_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
