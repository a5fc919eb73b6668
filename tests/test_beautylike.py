"""The Beauty-shaped synthetic data of the scaling study: its shape against Beauty's, determinism,
planted intents, and generation's memory (bounded by its output, never a per-user list)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from bench.data import check_dataset, load_dataset
from bench.data.beautylike import (
    BEAUTY_USERS,
    MAX_LEN,
    MIN_LEN,
    Shape,
    beauty_shape,
    generate,
    parametric_shape,
    parse_spec,
    plant,
    resolve_shape,
)
from bench.data.datasets import manifest
from bench.errors import BenchError

SHA = manifest()["beauty"].sha256


def popularity_curve(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Share of the interactions that fall on the shape's top 1%, 10% and 50% items."""
    order = np.argsort(-weights)
    return np.array([counts[order[: int(len(order) * q)]].sum() / counts.sum() for q in (0.01, 0.1, 0.5)])


def length_ks(flat_offsets: np.ndarray, pmf: np.ndarray) -> float:
    hist = np.bincount(np.diff(flat_offsets), minlength=MAX_LEN + 1)[MIN_LEN:]
    return float(np.abs(np.cumsum(hist / hist.sum()) - np.cumsum(pmf)).max())


@pytest.mark.parametrize("shape_name", ["beauty", "parametric"])
def test_lengths_and_popularity_follow_beautys(shared_data: Path, shape_name: str) -> None:
    beauty = beauty_shape(shared_data / "Beauty.txt", SHA)
    cfg = parse_spec(f"beauty-like:scale=0.2,shape={shape_name}")
    shape = resolve_shape(cfg, [shared_data], SHA)
    flat, offsets, _ = generate(cfg, shape)
    assert len(offsets) - 1 == round(0.2 * BEAUTY_USERS)
    assert length_ks(offsets, beauty.length_pmf) < 0.02
    counts = np.bincount(flat, minlength=len(shape.item_weights) + 1)[1:]
    # the generated popularity against the shape's, and the shape's curve against Beauty's own
    assert np.abs(popularity_curve(counts, shape.item_weights) - popularity_curve(beauty.item_weights,
                                                                                  beauty.item_weights)).max() < 0.02
    assert 8.0 < np.diff(offsets).mean() < 9.8  # Beauty: 8.88 items per user


def test_parametric_shape_is_close_to_beauty(shared_data: Path) -> None:
    beauty, fit = beauty_shape(shared_data / "Beauty.txt", SHA), parametric_shape()
    assert np.abs(np.cumsum(beauty.length_pmf) - np.cumsum(fit.length_pmf)).max() < 0.005
    assert np.abs(np.sort(beauty.item_weights)[::-1].cumsum()[[120, 1210, 6050]]
                  - np.sort(fit.item_weights)[::-1].cumsum()[[120, 1210, 6050]]).max() < 0.01


def test_without_beautys_file_auto_falls_back_and_beauty_refuses(tmp_path: Path) -> None:
    assert resolve_shape(parse_spec("beauty-like:shape=auto"), [tmp_path], SHA).source == "parametric"
    with pytest.raises(BenchError, match=r"needs Beauty\.txt"):
        resolve_shape(parse_spec("beauty-like:shape=beauty"), [tmp_path], SHA)
    (tmp_path / "Beauty.txt").write_text("1 1 2 3 4 5\n")
    with pytest.raises(BenchError, match="is not Beauty"):
        resolve_shape(parse_spec("beauty-like:shape=auto"), [tmp_path], SHA)


def test_deterministic_per_seed_and_loadable_by_name() -> None:
    a = load_dataset("beauty-like:scale=0.02,seed=3,shape=parametric")
    b = load_dataset("beauty-like:scale=0.02,seed=3,shape=parametric")
    c = load_dataset("beauty-like:scale=0.02,seed=4,shape=parametric")
    assert a.sha256 == b.sha256 and np.array_equal(a.flat, b.flat) and np.array_equal(a.labels, b.labels)
    assert a.sha256 != c.sha256
    assert a.flat.dtype == np.int64 and a.offsets.dtype == np.int64 and a.flat.min() >= 1


def test_planted_intents_hold_users_items_and_follow_group_mass() -> None:
    cfg = parse_spec("beauty-like:scale=0.2,shape=parametric,intents=16")
    shape = parametric_shape()
    flat, offsets, labels = generate(cfg, shape)
    planted = plant(shape, cfg.intents, np.random.default_rng([cfg.seed, 1]))
    in_label_group = planted.group_of[flat] == np.repeat(labels, np.diff(offsets))
    assert in_label_group.mean() > 0.7  # 1-3 intents weighted 3:1:1, kept with probability 0.85 a step
    mass = np.diff(np.concatenate([[0.0], planted.mass_cdf]))
    share = np.bincount(labels, minlength=cfg.intents) / len(labels)
    assert np.abs(share - mass).max() < 0.03
    assert np.all(planted.group_of[planted.succ[1:]] == planted.group_of[1:, None])  # successors in the group


def _generation_peak(scale: float, chunk: int, shape: Shape) -> tuple[int, int]:
    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    flat, offsets, labels = generate(parse_spec(f"beauty-like:scale={scale}"), shape, chunk)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, flat.nbytes + offsets.nbytes + labels.nbytes


def test_generation_memory_is_its_output_plus_one_chunk() -> None:
    """Peak allocation <= 1.5 x the output + the planted structure (items x successors, ~2 MB) + a
    per-chunk constant, and it grows with the users no faster than 1.5 x the output: so a 100x set
    (about 200 MB of arrays) generates within a few hundred MB, far below what training it takes."""
    shape = parametric_shape()
    (small, out_small), (big, out_big) = (_generation_peak(scale, 1024, shape) for scale in (0.1, 0.4))
    for peak, out in ((small, out_small), (big, out_big)):
        assert peak <= 1.5 * out + 2**21 + 1024 * 4096, (peak, out)
    assert big - small <= 1.5 * (out_big - out_small)


@pytest.mark.parametrize(("spec", "message"), [
    ("beauty-like:scale=0", "scale > 0"), ("beauty-like:users=3", "unknown option 'users'"),
    ("beauty-like:scale=x", "needs a number"), ("beauty-like:shape=round", "shape one of")])
def test_bad_specs_are_bench_errors(spec: str, message: str) -> None:
    with pytest.raises(BenchError, match=message):
        check_dataset(spec)
