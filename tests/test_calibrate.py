"""The calibration suite: every procedure the report and the gate use holds its nominal rate."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bench.results.calibrate import PROCEDURES, Shape, World, calibrate
from bench.results.stats import seed_spread


def test_the_simulated_evaluation_has_the_asked_shape() -> None:
    shape = Shape(users=20000)
    world = World(shape, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    v = world.values(rng, world.scales(rng, 4, [0.0, 0.0], 1, 0.0))
    hits = v > 0
    assert hits.mean() == pytest.approx(shape.hit_rate, rel=0.1)
    assert v.sum() / hits.sum() == pytest.approx(shape.gain, rel=0.05)
    overlap = (hits[:, 0] & hits[:, 1]).sum() / hits[:, 0].sum()
    assert overlap == pytest.approx(shape.overlap, abs=0.05)


def test_the_seed_spread_is_measured_back() -> None:
    shape = Shape(users=20000)
    world = World(shape, np.random.default_rng(0))
    rng = np.random.default_rng(2)
    v = world.values(rng, world.scales(rng, 10, [0.0], 8, 0.05))
    assert np.mean([seed_spread(x[0]) for x in v]) == pytest.approx(0.05, abs=0.02)


@pytest.mark.slow
def test_the_quick_calibration_is_ok() -> None:
    rows = calibrate(Shape(), [0.0, 0.015, 0.03], [1, 3, 5], 400, 0)
    assert len(rows) == 9 * len(PROCEDURES)
    bad = [(r.procedure, r.tau, r.seeds, r.rate) for r in rows if not r.ok]
    assert not bad


def test_calibrate_cli_json(tmp_path: object) -> None:
    res = subprocess.run([sys.executable, "-m", "bench", "calibrate", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and "--quick" in res.stdout and "--json" in res.stdout
