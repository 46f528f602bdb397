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
        "--quick",
        action="store_true",
        help="every phase, small and short (a smoke run)",
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
    parser.add_argument(
        "--hash-workers",
        type=_hash_workers,
        help="passwords.hash_workers of phases 1-3 and 7: cores (default), server "
        "(the server's own default) or a number",
    )
    parser.add_argument(
        "--postgres-dsn", help="also measure phases 4, 9, 10 and 11 on PostgreSQL"
    )
    parser.add_argument(
        "--postgres-only",
        action="store_true",
        help="with --postgres-dsn: phases 4, 9, 10 and 11 on PostgreSQL only",
    )
    parser.add_argument(
        "--phases", type=int, nargs="+", choices=PHASES, help="a subset"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the server into this folder"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step")
    return parser


def _hash_workers(value: str) -> str:
    if value in ("cores", "server") or (value.isdigit() and int(value) > 0):
        return value
    raise argparse.ArgumentTypeError("cores, server or a positive number")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.postgres_only and not args.postgres_dsn:
        parser.error("--postgres-only needs --postgres-dsn")
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
        hash_workers=args.hash_workers,
        postgres_only=args.postgres_only or None,
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
