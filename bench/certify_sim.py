"""Certification's validity and power by simulation: the regret test and the drop test side by
side on every population of `calibrate.demo.certify_sim`, at 300, 1,000 and 3,000 labels. Writes
the Markdown table (docs/certification.md quotes it). Never used by tests.

    PYTHONPATH=$PWD .venv/bin/python bench/certify_sim.py --draws 1000 --out bench/certify_sim.md
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from calibrate.demo.certify_sim import POPULATIONS, simulate, table

MAX_DROP, DELTA = 0.02, 0.10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--labels", type=int, nargs="+", default=[300, 1000, 3000])
    parser.add_argument("--populations", nargs="+", default=list(POPULATIONS))
    parser.add_argument("--out", type=Path, default=Path("bench/certify_sim.md"))
    args = parser.parse_args()
    rows = []
    for p, name in enumerate(args.populations):
        pop = POPULATIONS[name](np.random.default_rng(1000 + p), MAX_DROP)
        for n in args.labels:
            t0 = time.perf_counter()
            rows += simulate(pop, n, args.draws, MAX_DROP, DELTA, seed=17 * n + p)
            print(f"{name} n={n}: {time.perf_counter() - t0:.0f} s", flush=True)
    slack = 3 * math.sqrt(DELTA * (1 - DELTA) / args.draws)
    text = (
        f"ε = {MAX_DROP}, δ = {DELTA}; a violation is a draw in which some certified policy's true "
        f"drop exceeds ε (allowed: δ + 3·√(δ(1−δ)/T) = {DELTA + slack:.3f} for T = {args.draws:,} "
        "draws). Savings kept: the certified pick's savings over the achievable savings (the "
        "cheapest policy whose true drop is ≤ ε), averaged over draws.\n\n" + table(rows, DELTA)
    )
    args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
