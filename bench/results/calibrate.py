"""`python -m bench calibrate`: Monte Carlo calibration of every procedure the report and the gate
use. No torch.

Per-user metrics are simulated shaped like a real evaluation (a built-in Beauty-like default, or
measured from a records file): users have a latent hit propensity q ~ Beta whose spread gives
the observed hit overlap between models (P(B hits | A hits) = E[q^2] / E[q]); a model's seed s
hits user u with probability min(1, q_u * m * (1 + tau * z_s)), z_s ~ N(0, 1), and a hit scores
an NDCG-like gain. tau is the seed-to-seed spread of a model's true mean. Each scenario (tau,
seeds per model) runs every procedure on fresh users and seeds and counts how often it covers
the truth, errs, or detects. The truth a procedure is checked against is what it says it covers:
with two or more seeds a side, the models' effect (expected over seeds and users); with one
seed, the effect of those seeds (their own true means).

A row is ok when its rate is within 3 Monte Carlo standard errors of the nominal rate on the
side that matters (type-I: rate <= nominal + 3 se; coverage: rate >= nominal - 3 se, the se
taken at the nominal rate); power rows are informational.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.config import from_namespace, opt
from bench.results import claims as cl
from bench.results import gate, stats

GAINS = np.array([1.0, 0.631, 0.5, 0.431, 0.387])  # 1 / log2(rank + 1), ranks 1..5
RANK_P = np.array([0.30, 0.22, 0.18, 0.16, 0.14])  # P(rank | hit): mean gain 0.652 (Beauty NDCG@5 / HR@5)
CLAIMED = 0.089  # the headline claim: +8.9% NDCG@5
GATE_DROP, GATE_RATIO, COST_EFFECT = 0.05, 1.5, 0.8
DRIFT, EPOCH_NOISE, EPOCHS = 0.10, 0.03, 10  # machine speed between runs (sd of log), within a run


@dataclass(frozen=True)
class CalibrateConfig:
    quick: bool = opt(False, help="fewer replicates (the CI set: a minute or two)")
    json: bool = opt(False, help="print one JSON object per row instead of a table")
    records: Path | None = opt(None, help="records file or folder to take the evaluation's shape (hit rate, "
                               "overlap, users, measured seed spread) from; default: Beauty-like")
    reps: int = opt(0, help="replicates per scenario (0: 400 with --quick, else 2000)")
    seed: int = opt(0, help="seed of the simulation")


@dataclass(frozen=True)
class Shape:
    """What the simulation matches of a real evaluation (defaults: the committed Beauty audit)."""

    users: int = 22363
    hit_rate: float = 0.050  # HR@5
    gain: float = 0.654  # NDCG@5 / HR@5 (NDCG@5 0.0327)
    overlap: float = 0.68  # P(the other model hits | one hits)
    measured_tau: float = math.nan  # seed spread measured from records (nan: none)

    def beta(self) -> tuple[float, float]:
        m = self.hit_rate
        total = m * (1 - m) / (self.overlap * m - m * m) - 1  # Beta a + b from E[q^2] = overlap * m
        return m * total, (1 - m) * total


@dataclass
class Row:
    procedure: str
    measure: str  # coverage | type-I | power
    covers: str
    tau: float
    seeds: int
    rate: float
    se: float
    nominal: float | None
    reps: int
    ok: bool


class World:
    """The simulated population: f(c) = E[min(q c, 1)], the mean hit rate of a model of scale c."""

    def __init__(self, shape: Shape, rng: np.random.Generator) -> None:
        self.shape = shape
        self.a, self.b = shape.beta()
        q = rng.beta(self.a, self.b, size=400_000)
        self.grid = np.linspace(0.3, 2.5, 441)
        self.f = np.array([np.minimum(q * c, 1.0).mean() for c in self.grid])

    def mean(self, scale: np.ndarray) -> np.ndarray:
        return np.interp(scale, self.grid, self.f)

    def scale_for(self, mean: np.ndarray) -> np.ndarray:
        return np.interp(mean, self.f, self.grid)

    def scales(self, rng: np.random.Generator, reps: int, effects: list[float], seeds: int, tau: float
               ) -> np.ndarray:
        """(reps, models, seeds) scales: model 0 the reference, model i with true mean (1 + effects[i])
        x the reference's; each seed's true mean spread by tau (relative sd). With one seed the
        subjects are set relative to the reference's own seed: the effect of these seeds is exact."""
        z = rng.standard_normal((reps, len(effects), seeds))
        m0, e = float(self.mean(np.array(1.0))), np.asarray(effects)[None, :, None]
        if seeds == 1:
            z = np.repeat(z[:, :1], len(effects), axis=1)  # the subjects' own seeds vary with the reference's
        return self.scale_for(m0 * (1 + e) * np.clip(1 + tau * z, 0.2, None))

    def values(self, rng: np.random.Generator, scales: np.ndarray) -> np.ndarray:
        """(reps, models, seeds, users) per-user metrics, users shared by the models of a replicate."""
        reps = scales.shape[0]
        q = rng.beta(self.a, self.b, size=(reps, 1, 1, self.shape.users)).astype(np.float32)
        hits = rng.random((*scales.shape, self.shape.users), dtype=np.float32) < q * scales[..., None]
        out = np.zeros(hits.shape, dtype=np.float64)
        gains = GAINS * self.shape.gain / float(GAINS @ RANK_P)
        out[hits] = gains[rng.choice(5, size=int(hits.sum()), p=RANK_P)]
        return out


# procedure name -> (measure, what it covers / is checked against, nominal rate)
PROCEDURES: dict[str, tuple[str, str, float | None]] = {
    "claim CI (quality), true effect +3%": ("coverage", "the effect", 0.95),
    "claim REPRODUCED, null effect": ("type-I", "the effect", 0.025),
    "claim REPRODUCED, a third of the claim": ("type-I", "the effect", 0.05),
    "claim NOT REPRODUCED or SMALLER, effect as claimed": ("type-I", "the effect", 0.025),
    "claim REPRODUCED, effect as claimed (power)": ("power", "the effect", None),
    "daggers (any pair significant), 3 equal models": ("type-I", "family-wise", 0.05),
    "gate quality FAIL, drop exactly at the 5% margin": ("type-I", "the drop", 0.05),
    "gate cost FAIL, ratio exactly at the limit": ("type-I", "the ratio", 0.05),
    "claim CI (cost), true ratio 0.8": ("coverage", "the ratio", 0.95),
}


def _contains(est: stats.LogRatio, ratio: float) -> bool:
    lo, hi = est.interval()
    return bool(lo <= ratio <= hi)


def _quality_batch(world: World, rng: np.random.Generator, reps: int, seeds: int, tau: float,
                   min_seeds: int) -> dict[str, list[bool]]:
    """One batch of replicates of every quality procedure (verdict rule, daggers, gate)."""
    out: dict[str, list[bool]] = {k: [] for k in PROCEDURES}
    equal = world.values(rng, world.scales(rng, reps, [0.0, 0.0, 0.0], seeds, tau))
    third = world.values(rng, world.scales(rng, reps, [0.0, CLAIMED / 3], seeds, tau))
    full = world.values(rng, world.scales(rng, reps, [0.0, CLAIMED], seeds, tau))
    drop = world.values(rng, world.scales(rng, reps, [0.0, -GATE_DROP], seeds, tau))
    for i in range(reps):
        v0, _ = cl.quality_decision(equal[i, 1], equal[i, 0], CLAIMED)
        out["claim REPRODUCED, null effect"].append(v0 == cl.REPRODUCED)
        v3, est3 = cl.quality_decision(third[i, 1], third[i, 0], CLAIMED)
        out["claim REPRODUCED, a third of the claim"].append(v3 == cl.REPRODUCED)
        out["claim CI (quality), true effect +3%"].append(_contains(est3, 1 + CLAIMED / 3))
        vc, _ = cl.quality_decision(full[i, 1], full[i, 0], CLAIMED)
        out["claim NOT REPRODUCED or SMALLER, effect as claimed"].append(vc in (cl.NOT_REPRODUCED, cl.SMALLER))
        out["claim REPRODUCED, effect as claimed (power)"].append(vc == cl.REPRODUCED)
        worse = dagger_any(list(equal[i]), min_seeds)
        out["daggers (any pair significant), 3 equal models"].append(worse)
        failed = seeds >= min_seeds and gate.quality_p(drop[i, 0], drop[i, 1], GATE_DROP)[0] < 0.05
        out["gate quality FAIL, drop exactly at the 5% margin"].append(bool(failed))
    return out


def dagger_any(mats: list[np.ndarray], min_seeds: int, alpha: float = 0.05) -> bool:
    """Whether the report's dagger procedure rejects any pair of these (seeds, users) arrays."""

    if min(len(m) for m in mats) < min_seeds:
        return False
    ps = list(stats.pairwise_p(dict(enumerate(mats))).values())
    return bool(min(stats.holm(ps)) < alpha)


def _cost_batch(rng: np.random.Generator, reps: int, runs: int, min_seeds: int) -> dict[str, list[bool]]:
    """Epoch times of `runs` runs a side: each run's speed drifts (sd DRIFT of its log), epochs vary within."""
    out: dict[str, list[bool]] = {k: [] for k in PROCEDURES}
    for _ in range(reps):
        zb, zc = rng.standard_normal(runs), rng.standard_normal(runs)
        base = [np.exp(DRIFT * z + EPOCH_NOISE * rng.standard_normal(EPOCHS)) for z in zb]
        cur = [GATE_RATIO * np.exp(DRIFT * z + EPOCH_NOISE * rng.standard_normal(EPOCHS)) for z in zc]
        failed = runs >= min_seeds and gate.cost_p(base, cur, GATE_RATIO)[0] < 0.05
        out["gate cost FAIL, ratio exactly at the limit"].append(bool(failed))
        subj = [COST_EFFECT / GATE_RATIO * c for c in cur]
        est = stats.run_ratio(subj, base)
        truth = COST_EFFECT if runs > 1 else COST_EFFECT * math.exp(DRIFT * (zc[0] - zb[0]))  # these runs
        out["claim CI (cost), true ratio 0.8"].append(_contains(est, truth))
    return out


def _row(name: str, tau: float, seeds: int, hits: list[bool]) -> Row:
    measure, covers, nominal = PROCEDURES[name]
    n = len(hits)
    rate = float(np.mean(hits)) if n else math.nan
    se = math.sqrt(rate * (1 - rate) / n) if n else math.nan
    if seeds == 1:
        covers = f"{covers} of these seeds" if covers.startswith("the") else covers
    ok = True
    if nominal is not None and n:
        tol = 3 * math.sqrt(nominal * (1 - nominal) / n)
        ok = rate >= nominal - tol if measure == "coverage" else rate <= nominal + tol
    return Row(name, measure, covers, tau, seeds, rate, se, nominal, n, bool(ok))


def calibrate(shape: Shape, taus: list[float], seeds: list[int], reps: int, seed: int, min_seeds: int = 3,
              progress: Callable[[str], None] | None = None) -> list[Row]:
    """Every procedure in every (tau, seeds) scenario."""
    rng = np.random.default_rng(seed)
    world = World(shape, rng)
    rows = []
    for tau in taus:
        for n in seeds:
            hits: dict[str, list[bool]] = {k: [] for k in PROCEDURES}
            for start in range(0, reps, 20):
                batch = _quality_batch(world, rng, min(20, reps - start), n, tau, min_seeds)
                for k, v in batch.items():
                    hits[k] += v
            for k, v in _cost_batch(rng, reps, n, min_seeds).items():
                hits[k] += v
            rows += [_row(k, tau, n, hits[k]) for k in PROCEDURES]
            if progress:
                progress(f"tau {tau:.3f}, {n} seed(s): done")
    return rows


def shape_from_records(path: Path) -> Shape:
    """The evaluation's shape from records: users, HR@5, NDCG@5 / HR@5, the hit overlap of the
    first two models (their first seeds), and the mean measured seed spread of NDCG@5."""
    from bench.errors import BenchError
    from bench.results.frame import load_frame, per_user_matrix
    from bench.results.schema import Evaluated

    df = load_frame([path])
    ok = df[(df.status == "ok") & df["record"].map(lambda r: isinstance(r, Evaluated) and bool(r.per_user_file))]
    if ok.empty:
        raise BenchError(f"{path}: no finished records with per-user metrics")
    key: tuple[str, str] = tuple(ok.groupby(["dataset", "protocol"]).size().idxmax())  # type: ignore[arg-type,assignment]
    part = ok[(ok.dataset == key[0]) & (ok.protocol == key[1])]
    models = sorted(part.model.unique())
    hits = [per_user_matrix(part[part.model == m], "HR@5") for m in models]
    ndcg = [per_user_matrix(part[part.model == m], "NDCG@5") for m in models]
    rate = float(np.mean([h.mean() for h in hits]))
    both = float((hits[0][0] * hits[-1][0]).mean()) if len(hits) > 1 else math.nan
    overlap = both / rate if len(hits) > 1 and rate > 0 else Shape.overlap
    taus = [t for t in (stats.seed_spread(n) for n in ndcg) if not math.isnan(t)]
    return Shape(users=hits[0].shape[1], hit_rate=rate, gain=float(np.mean([n.mean() for n in ndcg])) / rate,
                 overlap=max(overlap, rate * 1.01), measured_tau=float(np.mean(taus)) if taus else math.nan)


def table(rows: list[Row]) -> str:
    """The rows as a markdown table (rates in %, with their Monte Carlo standard errors)."""
    from tabulate import tabulate

    body = [[r.procedure, r.measure, r.covers, f"{100 * r.tau:.1f}%", r.seeds,
             f"{100 * r.rate:.1f} ± {100 * r.se:.1f}", "–" if r.nominal is None else f"{100 * r.nominal:.1f}",
             "yes" if r.ok else "NO"] for r in rows]
    return tabulate(body, ["procedure", "measure", "checked against", "tau", "seeds", "rate % ± MC se",
                           "nominal %", "ok"], tablefmt="github", disable_numparse=True)


def cmd_calibrate(ns: argparse.Namespace) -> int:
    cfg = from_namespace(CalibrateConfig, ns)
    shape = shape_from_records(cfg.records) if cfg.records else Shape()
    taus = [0.0, 0.015, 0.03] + ([round(shape.measured_tau, 4)] if shape.measured_tau == shape.measured_tau else [])
    reps = cfg.reps or (400 if cfg.quick else 2000)
    rows = calibrate(shape, sorted(set(taus)), [1, 3, 5], reps, cfg.seed,
                     progress=lambda s: print(s, file=sys.stderr))
    if cfg.json:
        for r in rows:
            print(json.dumps(asdict(r)))
    else:
        print(f"shape: {shape}; {reps} replicates per scenario")
        print(table(rows))
    bad = [r for r in rows if not r.ok]
    for r in bad:
        print(f"not ok: {r.procedure} at tau {r.tau}, {r.seeds} seed(s): {r.rate:.3f} vs {r.nominal}", file=sys.stderr)
    return 1 if bad else 0

