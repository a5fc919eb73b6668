"""Synthetic data shaped like Amazon-Beauty at a scale factor, with planted intents (the scaling study).

Users scale (`scale` x Beauty's 22,363), items stay at Beauty's 12,101. Each user's sequence length
is drawn from Beauty's empirical length distribution and items from Beauty's per-item popularity;
intents are planted as in `bench.data.synthetic`: items 1..12101 fall into `intents` contiguous groups,
each item has `successors` preferred successors in its group (drawn by popularity), and a user follows
1-3 intents (the first, its label, weighted 3:1:1). A user's intents are drawn in proportion to their
groups' popularity mass, so that the items' marginal popularity stays Beauty's.

The shape comes from Beauty.txt where it is found (`bench.data.datasets.beauty_search`: `--data-dir`,
$INTENTBENCH_DATA_DIR, the dataset cache, ../shared/datasets), sha256-checked; otherwise
(`shape=parametric`, or `auto` without the file) from a parametric fit to it: P(length = 5 + j)
proportional to (j + 5.38)^-3.083 for j = 0..199, and the popularity of the item of rank r
proportional to (r + 211)^-0.92 (maximum likelihood and log least squares on Beauty.txt;
docs/scaling.md gives the fit's quality).

Generation runs in chunks of users straight into the CSR arrays `SeqData` holds (flat int64 items,
int64 offsets), so its peak memory is the output plus one chunk's buffers, never a list of per-user
arrays. Deterministic per (scale, seed, intents, shape); the chunk size is part of the definition.

Spec strings: "beauty-like:scale=3,seed=0" (options: scale, seed, intents, shape=auto|beauty|parametric).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from bench.data.sequences import SeqData
from bench.errors import BenchError

NAME = "beauty-like"
BEAUTY_USERS, BEAUTY_ITEMS, MIN_LEN, MAX_LEN = 22363, 12101, 5, 204  # Beauty.txt (5-core: >= 5 items each)
LENGTH_FIT = (5.38, 3.083)  # P(length = 5 + j) ~ (j + a)^-b
POPULARITY_FIT = (211.0, 0.92)  # weight of the item of popularity rank r ~ (r + q)^-s
CHUNK_USERS = 16384  # users generated at once: bounds generation's buffers (chunk x 204 int64 = 27 MB)
SHAPES = ("auto", "beauty", "parametric")
# as bench.data.synthetic's, but following a successor less often (0.8 there): each follow moves the
# items' marginal popularity a little away from Beauty's (docs/scaling.md)
STAY, FOLLOW, SUCCESSORS = 0.85, 0.5, 3


@dataclass(frozen=True)
class BeautyLikeConfig:
    scale: float = 1.0
    seed: int = 0
    intents: int = 64  # groups of ~190 items; 256 groups of 47 repeat items within a user often
    shape: str = "auto"

    @property
    def users(self) -> int:
        return max(1, round(self.scale * BEAUTY_USERS))


@dataclass(frozen=True)
class Shape:
    """Where lengths and items come from: pmf over lengths MIN_LEN..MAX_LEN and a weight per item id."""

    source: str  # "beauty" or "parametric"
    sha256: str  # of Beauty.txt, or of the parametric constants
    length_pmf: np.ndarray  # (MAX_LEN - MIN_LEN + 1,)
    item_weights: np.ndarray  # (BEAUTY_ITEMS,) for ids 1..BEAUTY_ITEMS


def parse_spec(spec: str) -> BeautyLikeConfig:
    _, _, opts = spec.partition(":")
    kinds = {f.name: f.type for f in fields(BeautyLikeConfig)}
    kw: dict[str, float | int | str] = {}
    for part in filter(None, opts.split(",")):
        key, _, value = part.partition("=")
        if key not in kinds:
            raise BenchError(f"{NAME}: unknown option {key!r}; known: {', '.join(kinds)}")
        try:
            kw[key] = value if key == "shape" else float(value) if key == "scale" else int(value)
        except ValueError:
            raise BenchError(f"{NAME}: option {key} needs a number, got {value!r}") from None
    cfg = BeautyLikeConfig(**kw)  # type: ignore[arg-type]
    if not cfg.scale > 0 or not 1 <= cfg.intents <= BEAUTY_ITEMS // 2 or cfg.shape not in SHAPES:
        raise BenchError(f"{NAME}: need scale > 0, 1 <= intents <= {BEAUTY_ITEMS // 2}, shape one of "
                         f"{', '.join(SHAPES)}: {spec}")
    return cfg


def beauty_file(roots: list[Path]) -> Path | None:
    return next((r / "Beauty.txt" for r in roots if (r / "Beauty.txt").is_file()), None)


def beauty_shape(path: Path, sha256: str) -> Shape:
    """Beauty's length histogram and per-item counts, read from the file (which must have `sha256`)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != sha256:
        raise BenchError(f"{path}: sha256 {h.hexdigest()} is not Beauty.txt's")
    lengths, items = [], []
    with open(path) as f:
        for line in f:
            ids = line.split()[1:]
            lengths.append(len(ids))
            items.extend(ids)
    hist = np.bincount(np.array(lengths), minlength=MAX_LEN + 1)[MIN_LEN:MAX_LEN + 1]
    counts = np.bincount(np.array(items, dtype=np.int64), minlength=BEAUTY_ITEMS + 1)[1:BEAUTY_ITEMS + 1]
    return Shape("beauty", sha256, hist / hist.sum(), counts / counts.sum())


def parametric_shape() -> Shape:
    """The fit to Beauty (module docstring); popularity ranks go to item ids by a fixed permutation."""
    a, b = LENGTH_FIT
    pmf = (np.arange(MAX_LEN - MIN_LEN + 1) + a) ** -b
    q, s = POPULARITY_FIT
    by_rank = (np.arange(1, BEAUTY_ITEMS + 1) + q) ** -s
    weights = by_rank[np.random.default_rng(20240101).permutation(BEAUTY_ITEMS)]
    digest = hashlib.sha256(repr((LENGTH_FIT, POPULARITY_FIT, 20240101)).encode()).hexdigest()
    return Shape("parametric", digest, pmf / pmf.sum(), weights / weights.sum())


def resolve_shape(cfg: BeautyLikeConfig, roots: list[Path], sha256: str) -> Shape:
    """Beauty's shape from Beauty.txt in the first of `roots` holding it (shape=auto or beauty; the file
    must have `sha256`), else the parametric fit (shape=parametric, or auto without the file)."""
    path = beauty_file(roots) if cfg.shape != "parametric" else None
    if path is not None:
        return beauty_shape(path, sha256)
    if cfg.shape == "beauty":
        raise BenchError(f"{NAME}: shape=beauty needs Beauty.txt (--data-dir DIR, or `python -m bench fetch`)")
    return parametric_shape()


@dataclass(frozen=True)
class Planted:
    """The planted intents: items in contiguous groups, each item's preferred successors."""

    group_of: np.ndarray  # (items + 1,) group of each item id (id 0: group 0, never drawn)
    group_end: np.ndarray  # (intents,) one past the last item index (0-based) of each group
    cdf: np.ndarray  # (items,) g + cumulative popularity within group g, for `draw`
    mass_cdf: np.ndarray  # (intents,) cumulative popularity mass of the groups
    succ: np.ndarray  # (items + 1, SUCCESSORS) preferred successors, drawn by popularity in the group


def draw(p: Planted, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One item id per entry of `groups`, by popularity within the group: one search over all groups,
    whose cumulative weights are laid out as g + (0, 1]."""
    idx = np.searchsorted(p.cdf, groups + rng.random(groups.shape), side="right")
    return np.minimum(idx, p.group_end[groups] - 1) + 1  # float rounding at a group's end stays inside


def plant(shape: Shape, intents: int, rng: np.random.Generator) -> Planted:
    group_of = np.zeros(BEAUTY_ITEMS + 1, dtype=np.int64)
    for i, members in enumerate(np.array_split(np.arange(1, BEAUTY_ITEMS + 1), intents)):
        group_of[members] = i
    g = group_of[1:]
    mass = np.bincount(g, shape.item_weights, minlength=intents)
    cum = np.cumsum(shape.item_weights / mass[g])
    group_end = np.cumsum(np.bincount(g, minlength=intents))
    before = np.concatenate([[0.0], cum[group_end[:-1] - 1]])  # cumulative weight before each group
    cdf = g + (cum - before[g])
    cdf[group_end - 1] = np.arange(intents) + 1.0  # exact group ends
    p = Planted(group_of, group_end, cdf, np.cumsum(mass) / mass.sum(), np.zeros((0, SUCCESSORS), np.int64))
    return Planted(group_of, group_end, cdf, p.mass_cdf, _successors(p, rng))


def _successors(p: Planted, rng: np.random.Generator) -> np.ndarray:
    """(items + 1, S) successors: each group's items x S slots are filled by systematic sampling of the
    group's popularity (every item gets its share of slots, rounded), then shuffled within the group.
    Drawn independently, a few items would collect many slots and following them would skew the
    items' popularity away from Beauty's; quotas keep each item's inflow close to its popularity."""
    slot_group = np.repeat(p.group_of[1:], SUCCESSORS)  # (items * S,) slots in item order
    size = np.bincount(slot_group)
    first = np.cumsum(size) - size
    u = slot_group + (np.arange(len(slot_group)) - first[slot_group] + 0.5) / size[slot_group]
    items = np.minimum(np.searchsorted(p.cdf, u, side="right"), p.group_end[slot_group] - 1) + 1
    items = items[np.argsort(slot_group + rng.random(len(slot_group)), kind="stable")]  # shuffle within groups
    return np.concatenate([np.zeros((1, SUCCESSORS), np.int64), items.reshape(-1, SUCCESSORS)])


# cumulative probability of the user's 1st, 2nd, 3rd intent when it has 1, 2 or 3 of them (3:1:1)
_INTENT_CDF = np.array([[1.0, 1.0, 1.0], [0.75, 1.0, 1.0], [0.6, 0.8, 1.0]])


def _user_intents(p: Planted, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) intents drawn by group mass (a repeat makes a user with fewer) and (n,) how many count."""
    mine = np.searchsorted(p.mass_cdf, rng.random((n, 3)), side="right")
    return np.minimum(mine, len(p.mass_cdf) - 1), rng.integers(1, 4, size=n)


def _fill_chunk(flat: np.ndarray, dest: np.ndarray, lengths: np.ndarray, p: Planted,
                rng: np.random.Generator) -> np.ndarray:
    """Writes the sequences of one chunk of users (flat[dest[i]:dest[i] + lengths[i]]) step by step,
    longest first, so that step t touches only the users still going; returns their labels."""
    order = np.argsort(-lengths, kind="stable")
    dest, lens = dest[order], lengths[order]
    mine, n_int = _user_intents(p, len(order), rng)
    cdf = _INTENT_CDF[n_int - 1]  # (c, 3)
    cur = mine[:, 0].copy()
    prev = draw(p, cur, rng)
    flat[dest] = prev
    for t in range(1, int(lens.max())):
        a = int(np.searchsorted(-lens, -t, side="left"))  # users with length > t
        switch = rng.random(a) > STAY
        pick = (rng.random(a)[:, None] >= cdf[:a]).sum(1)  # (a,) index of the intent switched to
        cur = np.where(switch, mine[np.arange(a), np.minimum(pick, 2)], cur[:a])
        prev = prev[:a]
        follow = (p.group_of[prev] == cur) & (rng.random(a) < FOLLOW)
        nxt = np.where(follow, p.succ[prev, rng.integers(0, SUCCESSORS, size=a)], draw(p, cur, rng))
        flat[dest[:a] + t] = nxt
        prev = nxt
    labels = np.empty(len(order), dtype=np.int64)
    labels[order] = mine[:, 0]
    return labels


def draw_lengths(shape: Shape, users: int, rng: np.random.Generator) -> np.ndarray:
    cdf = np.cumsum(shape.length_pmf)
    return np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(users), side="right"), len(cdf) - 1) + MIN_LEN


def generate(cfg: BeautyLikeConfig, shape: Shape, chunk: int = CHUNK_USERS) -> tuple[np.ndarray, np.ndarray,
                                                                                        np.ndarray]:
    """-> (flat (N,) int64 items, offsets (U + 1,) int64, labels (U,) int64), chunk by chunk."""
    lengths = draw_lengths(shape, cfg.users, np.random.default_rng([cfg.seed, 0]))
    offsets = np.zeros(cfg.users + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    planted = plant(shape, cfg.intents, np.random.default_rng([cfg.seed, 1]))
    flat = np.empty(int(offsets[-1]), dtype=np.int64)
    labels = np.empty(cfg.users, dtype=np.int64)
    for i, lo in enumerate(range(0, cfg.users, chunk)):
        hi = min(lo + chunk, cfg.users)
        rng = np.random.default_rng([cfg.seed, 2, i])
        labels[lo:hi] = _fill_chunk(flat, offsets[lo:hi], lengths[lo:hi], planted, rng)
    return flat, offsets, labels


def data_digest(shape: Shape, flat: np.ndarray, offsets: np.ndarray) -> str:
    """sha256 of the shape and the arrays' bytes (read in place: no copy of a 100x set)."""
    h = hashlib.sha256(shape.sha256.encode())
    h.update(np.ascontiguousarray(offsets).data)  # a view of the buffer, no copy
    h.update(np.ascontiguousarray(flat).data)
    return h.hexdigest()


def beautylike_from_spec(spec: str, roots: list[Path], sha256: str) -> SeqData:
    """The data of a spec; `roots` and `sha256`: where Beauty.txt may be and its checksum (bench.data.datasets)."""
    cfg = parse_spec(spec)
    shape = resolve_shape(cfg, roots, sha256)
    flat, offsets, labels = generate(cfg, shape)
    return SeqData(spec, data_digest(shape, flat, offsets), flat, offsets, labels)


def shape_source(spec: str, roots: list[Path], sha256: str) -> str:
    """Which shape a spec resolves to here: "beauty (Beauty.txt, sha256 226cce9c...)" or "parametric fit"."""
    shape = resolve_shape(parse_spec(spec), roots, sha256)
    return f"beauty (Beauty.txt, sha256 {shape.sha256[:8]}...)" if shape.source == "beauty" else "parametric fit"
