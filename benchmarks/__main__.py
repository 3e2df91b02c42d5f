"""`python -m benchmarks` (what `make bench` runs): every benchmark, one after the other.

Each also runs alone with its own options, e.g. `python -m benchmarks.overhead --runs 5`.
"""

from __future__ import annotations

import argparse

from benchmarks import (
    growth,
    node_loss,
    overhead,
    packing,
    real_scheduling,
    scale,
    scheduling,
    startup,
    still,
)
from benchmarks.common import console

ALL = {
    "overhead": overhead.main,
    "scheduling": scheduling.main,
    "node_loss": node_loss.main,
    "scale": scale.main,
    "growth": growth.main,
    "packing": packing.main,
    "startup": startup.main,
    "real_scheduling": real_scheduling.main,
    "still": still.main,
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("only", nargs="*", metavar="NAME", help=f"run only these: {', '.join(ALL)}")
    args = p.parse_args(argv)
    unknown = set(args.only) - set(ALL)
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}: choose from {', '.join(ALL)}")
    for name in args.only or ALL:
        console.rule(f"benchmarks.{name}")
        ALL[name]([])


if __name__ == "__main__":
    main()
