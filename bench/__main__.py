"""`python -m bench [--quick] [--postgres-dsn DSN] ...`: start the servers, load them,
print the table and write bench/results/latest.{md,json,png}. Exit 1 if a phase failed."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import report, runner
from .config import PHASES, RESULTS, make_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_true", help="every phase, small, in under a minute"
    )
    mode.add_argument(
        "--smoke", action="store_true", help="plumbing only (the test suite)"
    )
    parser.add_argument(
        "--generator", choices=("auto", "wrk", "python"), default="auto"
    )
    parser.add_argument(
        "--bcrypt-rounds", type=int, help="passwords.bcrypt_rounds (default 10)"
    )
    parser.add_argument("--duration", type=float, help="seconds per measurement")
    parser.add_argument("--postgres-dsn", help="also measure phase 4 on PostgreSQL")
    parser.add_argument(
        "--phases", type=int, nargs="+", choices=PHASES, help="a subset"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the server into this folder"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(message)s",
        stream=sys.stderr,
    )
    config = make_config(
        "smoke" if args.smoke else "quick" if args.quick else "full",
        generator=args.generator,
        bcrypt_rounds=args.bcrypt_rounds,
        duration=args.duration,
        postgres_dsn=args.postgres_dsn,
        phases=tuple(args.phases) if args.phases else None,
        out_dir=args.out,
        profile_dir=args.profile,
    )
    try:
        results = runner.run(config)
    except KeyboardInterrupt:
        print("interrupted: every server and generator was stopped", file=sys.stderr)
        return 130
    written = report.write(results, config.out_dir)
    print(report.header(results))
    print(report.table(results))
    print("written: " + ", ".join(str(path) for path in written))
    for error in results.errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if results.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
