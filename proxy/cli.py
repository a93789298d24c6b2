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


def _bench_daemon(args: argparse.Namespace) -> int:
    from proxy.bench import daemon
    from proxy.runner import run

    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    unknown = set(scenarios) - set(daemon.SCENARIOS)
    if unknown:
        print(f"stratum-proxy bench: unknown scenario(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    rows: list[daemon.Row] = []

    async def main() -> None:
        rows.extend(await daemon.run(scenarios))

    run(main())
    print(daemon.report(rows))
    return 0


def _bench_upgrade(args: argparse.Namespace) -> int:
    from proxy.bench import upgrade
    from proxy.runner import run

    results: list[upgrade.UpgradeResult] = []

    async def main() -> None:
        results.append(await upgrade.run_upgrade(args.miners))

    run(main())
    print(upgrade.report(results[0]))
    return 0


def _bench_routing(args: argparse.Namespace) -> int:
    import tempfile

    from proxy.bench import routing
    from proxy.runner import run

    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    unknown = set(scenarios) - {"time", "miners", "single", "api", "scale"}
    if unknown or not (args.minutes > 0):
        print(f"stratum-proxy bench: unknown scenario(s) {sorted(unknown)} or bad --minutes", file=sys.stderr)
        return 2
    if "scale" in scenarios:
        print(routing.scale())
        scenarios = tuple(s for s in scenarios if s != "scale")
        if not scenarios:
            return 0
    results: list[routing.SplitResult] = []
    with tempfile.NamedTemporaryFile("w", suffix=".token") as token:
        token.write(routing.TOKEN + "\n")
        token.flush()

        async def main() -> None:
            results.extend(await routing.run(args.minutes, scenarios, token.name))

        run(main())
    print(routing.report(results))
    return 0


def _bench_all(args: argparse.Namespace) -> int:
    args.shares, args.repeats, args.scenarios = 20_000, 7, "a,b,c,d,e"
    _bench_validate(args)
    print()
    return _bench_daemon(args)


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
    return run_forever(config, args.config)


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


def _pool(args: argparse.Namespace) -> int:
    from proxy.tools import pool

    return pool.main(args)


def _simulate(args: argparse.Namespace) -> int:
    from proxy.tools import simulate

    return simulate.main(args)


def _add_tool_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``pool`` (the bundled test pool) and ``simulate`` (the fleet simulator)."""
    pool = commands.add_parser("pool", help="run the bundled test pool (a real Stratum V1 pool)")
    pool.add_argument("--listen", default="127.0.0.1:3333", metavar="HOST:PORT", help="port 0: any free port")
    pool.add_argument("--difficulty", type=float, default=1.0, help="share difficulty (floats below 1 ok)")
    pool.add_argument("--extranonce2-size", type=int, default=8, metavar="N", help="bytes (1..16)")
    pool.add_argument("--job-interval", type=float, default=30.0, metavar="S", help="seconds between jobs")
    pool.add_argument("--block-interval", type=float, default=600.0, metavar="S", help="seconds per block")
    pool.add_argument("--version-mask", default="1fffe000", metavar="HEX", help="00000000 refuses rolling")
    pool.add_argument("--reject-every", type=int, default=0, metavar="N", help="reject every Nth valid share")
    pool.add_argument("--nbits", default="1d00ffff", metavar="HEX", help="network target (easy: more blocks)")
    pool.add_argument("--seed", type=int, default=None, help="seed for reproducible jobs")
    pool.add_argument("--report-interval", type=float, default=5.0, metavar="S", help="seconds per report")
    pool.set_defaults(handler=_pool)

    sim = commands.add_parser("simulate", help="simulate a fleet of miners against a pool or the proxy")
    sim.add_argument("--url", required=True, help="stratum+tcp://HOST:PORT")
    sim.add_argument("--miners", type=int, default=1, metavar="N", help="miners, one connection each")
    sim.add_argument("--hashrate", type=float, default=20_000.0, metavar="H", help="max hashes/s per miner")
    sim.add_argument("--share-rate", type=float, default=1.0, metavar="R", help="shares/s/miner (--no-hash)")
    sim.add_argument(
        "--no-hash",
        action="store_true",
        help="load mode: unique shares without hashing; valid only at pool difficulty <= 2.3e-10",
    )
    sim.add_argument("--user", default="sim", help="account; workers are USER.simNNNN")
    sim.add_argument("--password", default="x")
    sim.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    sim.add_argument("--report-interval", type=float, default=5.0, metavar="S", help="seconds between lines")
    sim.set_defaults(handler=_simulate)


def _demo(args: argparse.Namespace) -> int:
    from proxy.tools import demo

    return demo.main(args)


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

    demo = commands.add_parser("demo", help="test pool + proxy + simulated miners on this machine")
    demo.add_argument("--config", default="proxy.toml.example", help="proxy config (default: the example)")
    demo.add_argument("--miners", type=int, default=4, help="simulated miners")
    demo.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: Ctrl-C)")
    demo.set_defaults(handler=_demo)

    bench = commands.add_parser("bench", help="run a benchmark and print its figures")
    bench.set_defaults(handler=_bench_all)
    benches = bench.add_subparsers(dest="bench", metavar="BENCH")
    validate = benches.add_parser("validate", help="share validation cost next to bare hashing")
    validate.add_argument("--shares", type=int, default=20_000, help="shares per timed loop")
    validate.add_argument("--repeats", type=int, default=7, help="timed loops; the best is kept")
    validate.set_defaults(handler=_bench_validate)
    daemon = benches.add_parser("daemon", help="pool, proxy and miners as separate processes (Linux)")
    daemon.add_argument("--scenarios", default="a,b,c,d,e", help="comma-separated subset of a,b,c,d,e")
    daemon.set_defaults(handler=_bench_daemon)
    upgrade = benches.add_parser("upgrade", help="README's reuse_port upgrade recipe, timed (Linux)")
    upgrade.add_argument("--miners", type=int, default=200, help="simulated miners")
    upgrade.set_defaults(handler=_bench_upgrade)
    routing = benches.add_parser("routing", help="weighted split across two pools, judged by their ledgers")
    routing.add_argument("--minutes", type=float, default=10.0, help="measured minutes per scenario")
    routing.add_argument(
        "--scenarios",
        default="scale,time,miners,single,api",
        help="comma-separated subset (scale: in process)",
    )
    routing.set_defaults(handler=_bench_routing)
    _add_tool_commands(commands)
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
