"""``python -m pizza.bench [--quick] [--scenario NAME ...] [--out FILE] [--plot DIR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pizza.bench import SCENARIOS, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pizza.bench",
        description="Benchmark the kernel (publish, consume, handlers) and the system "
                    "(e2e, api, orders). Each scenario runs its own embedded nats-server.")
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"which to run (default: all): {', '.join(SCENARIOS)}")
    parser.add_argument("--scenario", "-s", action="append", default=[],
                        choices=SCENARIOS, help="same as the positional names; repeatable")
    parser.add_argument("--quick", action="store_true",
                        help="smaller N and shorter runs (still 3 rounds)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/results.json"),
                        help="where to write the JSON results")
    parser.add_argument("--plot", type=Path, default=None, metavar="DIR",
                        help="also draw a PNG bar chart per scenario into DIR")
    parser.add_argument("--n", type=int, default=None,
                        help="message count of publish/consume/handlers (overrides --quick)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3)")
    parser.add_argument("--orders", type=int, default=None,
                        help="orders per run of the orders scenario (default 500, quick 300)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="instead of benchmarking, profile the kernel's relay and "
                             "consumer into DIR (pyinstrument if installed, else cProfile)")
    args = parser.parse_args(argv)

    if args.profile is not None:
        from pizza.bench.profile import profile

        reports = profile(args.profile, n=args.n or 20_000)
        for name, report in reports.items():
            print(f"{name}: {report['tool']} report in {report['report']}")
        return 0

    names = list(dict.fromkeys([*args.scenarios, *args.scenario])) or list(SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}: choose from "
                     f"{', '.join(SCENARIOS)}")
    extra = {"orders": args.orders} if args.orders is not None else {}
    results = run(names, args.quick, args.out, args.plot, n=args.n, rounds=args.rounds,
                  **extra)
    print(f"results written to {args.out}")
    failed = [name for name, r in results["scenarios"].items() if r.get("status") == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
