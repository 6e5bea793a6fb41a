"""``qtrl bench WHAT``: benchmarks that print measured tables."""

from __future__ import annotations

import argparse
import importlib

# name -> module under qtrl.bench providing register_args(parser) and run(args) -> int
BENCHES = {
    "simulator": "simulator",
    "generation": "generation",
    "training": "training",
    "inference": "inference",
    "scaling": "scaling",
    "backends": "backends",
    "startup": "startup",
    "hosts": "hosts",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark and print its table")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="WHAT")
    for name, module in BENCHES.items():
        mod = importlib.import_module(f"qtrl.bench.{module}")
        bp = bsub.add_parser(name, help=mod.__doc__.strip().splitlines()[0])
        mod.register_args(bp)
        bp.set_defaults(func=mod.run)
