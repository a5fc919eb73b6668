"""The one-seed interval's 'smaller than claimed' error alone, at a records folder's evaluation shape.

    python scripts/probes/one_seed_interval.py <folder with records> [--tau 0.629] [--reps 4000]

Simulates, as `bench calibrate` does (`bench.results.calibrate.World`), one seed a model with the
claimed +8.9% effect exact for these seeds, and counts how often the one-seed interval's upper bound
falls below 1.089 (the 'NOT REPRODUCED or SMALLER' error, nominal 2.5%) for three intervals: the
delta method on the log ratio with t(U - 1), Fieller's with t(U - 1), and Fieller's with t(K - 1), K
the users where either model scores (what `stats.seed_ratio` uses). Prints the rate with its Monte
Carlo standard error, and the median and 10th percentile of K.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import special

from bench.results import calibrate, stats

CLAIMED = 0.089


def upper_bounds(s: np.ndarray, r: np.ndarray) -> tuple[float, float, float]:
    """Delta t(U - 1), Fieller t(U - 1), Fieller t(K - 1) upper bounds of (users,) arrays s / r."""
    est = stats.seed_ratio(s[None], r[None])
    if not isinstance(est, stats.FiellerRatio):  # a model without hits: no ratio
        return math.inf, math.inf, math.inf
    users = len(s) - 1.0
    delta = math.exp(est.log_ratio + float(special.stdtrit(users, 0.975)) * est.se)
    return delta, replace(est, df=users).interval()[1], est.interval()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", type=Path)
    ap.add_argument("--tau", type=float, default=0.629)
    ap.add_argument("--reps", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ns = ap.parse_args()
    rng = np.random.default_rng(ns.seed)
    world = calibrate.World(calibrate.shape_from_records(ns.records), rng)
    misses, scoring = np.zeros(3), []
    for start in range(0, ns.reps, 40):
        n = min(40, ns.reps - start)
        values = world.values(rng, world.scales(rng, n, [0.0, CLAIMED], 1, ns.tau))  # (n, 2, 1, users)
        for i in range(n):
            s, r = values[i, 1, 0], values[i, 0, 0]
            misses += np.array(upper_bounds(s, r)) < 1 + CLAIMED
            scoring.append(int(np.count_nonzero((s != 0) | (r != 0))))
    for name, k in zip(("delta t(U-1)", "Fieller t(U-1)", "Fieller t(K-1)"), misses, strict=True):
        rate = k / ns.reps
        print(f"{name}: {100 * rate:.2f}% +- {100 * math.sqrt(rate * (1 - rate) / ns.reps):.2f}")
    print(f"scoring users K: median {np.median(scoring):.0f}, 10th percentile {np.percentile(scoring, 10):.0f}")


if __name__ == "__main__":
    main()
