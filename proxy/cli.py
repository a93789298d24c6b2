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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="stratum-proxy",
        description="Stratum V1 mining proxy: aggregates miners onto few pool connections, "
        "validates every share and exports per-worker metrics.",
    )
    parser.add_argument("--version", action="version", version=f"stratum-proxy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

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
