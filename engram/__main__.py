"""``python -m engram info|report|regress|load``."""
from __future__ import annotations

import argparse
import sys


def _info(args) -> int:
    from .info import format_info

    print(format_info())
    return 0


def _report(args) -> int:
    from . import report

    return report.main(args)


def _regress(args) -> int:
    from . import regress

    return regress.main(args)


def _load(args) -> int:
    from . import load

    return load.main(args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engram", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="print version, backend, SIMD levels, arena, threads, NumPy/BLAS")
    p.set_defaults(func=_info)
    p = sub.add_parser("report", help="measure everything and write report.md/.json/.png")
    p.add_argument("--quick", action="store_true", help="smaller workloads, fewer cases (<= 20 s)")
    p.add_argument("--out", default=".", help="directory for report.md, report.json, report.png")
    p.add_argument("--simd", default=None,
                   help="comma-separated SIMD levels to validate (default: every level here)")
    p.set_defaults(func=_report)
    p = sub.add_parser("regress", help="callgrind instruction counts against benchmarks/baseline.json")
    p.add_argument("--update", action="store_true", help="rewrite the baseline with this build's counts")
    p.add_argument("--baseline", default=None, help="baseline file (default benchmarks/baseline.json)")
    p.add_argument("--tolerance", type=float, default=0.05, help="allowed increase (default 0.05)")
    p.set_defaults(func=_regress)
    from .load import add_arguments as load_arguments

    p = sub.add_parser("load", help="the recall pipeline from N threads for S seconds: throughput, latency, "
                                    "arena, RSS")
    load_arguments(p)
    p.set_defaults(func=_load)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
