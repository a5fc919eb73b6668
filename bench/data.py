"""Datasets: manifest, resolution, checksums, a strict parser and the leave-one-out split.

Resolution order for a manifest dataset: `--data-dir`, then $INTENTBENCH_DATA_DIR, then the cache
under `datasets/cache/`, then a download from the manifest's public URLs into the cache (atomic
rename after the sha256 matched). The file's sha256 and its statistics are verified before use.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import tomllib
import urllib.request
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from bench.errors import BenchError

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS_DIR = REPO_ROOT / "datasets"
ENV_DATA_DIR = "INTENTBENCH_DATA_DIR"
MAX_LEN = 50


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    file: str
    urls: tuple[str, ...]
    sha256: str
    users: int
    items: int
    interactions: int


def manifest() -> dict[str, DatasetEntry]:
    with open(DATASETS_DIR / "manifest.toml", "rb") as f:
        raw = tomllib.load(f)
    return {k: DatasetEntry(name=k, urls=tuple(v.pop("urls")), **v) for k, v in raw.items()}


def known_datasets() -> list[str]:
    return [*manifest(), "synthetic"]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(entry: DatasetEntry, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in entry.urls:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{entry.file}.")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:
                out.write(resp.read())
            digest = sha256_file(Path(tmp))
            if digest != entry.sha256:
                raise OSError(f"sha256 mismatch: expected {entry.sha256}, got {digest}")
            os.replace(tmp, dest)
            return
        except OSError as e:  # URLError is an OSError
            errors.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise BenchError(
        f"cannot download {entry.file} ({'; '.join(errors)}); offline? point at a local copy with "
        f"--data-dir DIR or {ENV_DATA_DIR}=DIR (a folder holding {entry.file})"
    )


def _entry(name: str) -> DatasetEntry:
    entries = manifest()
    if name not in entries:
        raise BenchError(f"unknown dataset {name!r}; known: {', '.join(known_datasets())}")
    return entries[name]


def _local_file(entry: DatasetEntry, data_dir: Path | None) -> Path | None:
    """The file in `--data-dir`, else in the environment variable's folder; None if neither is set.
    A named folder without the file is an error: it is not silently downloaded instead."""
    for root, why in ((data_dir, "--data-dir"), (os.environ.get(ENV_DATA_DIR), ENV_DATA_DIR)):
        if root:
            path = Path(root) / entry.file
            if not path.is_file():
                raise BenchError(f"{why}: {path} does not exist")
            return path
    return None


def resolve_file(entry: DatasetEntry, data_dir: Path | None) -> Path:
    """Finds the dataset file (see the module docstring for the order), downloading if needed."""
    local = _local_file(entry, data_dir)
    if local is not None:
        return local
    cached = DATASETS_DIR / "cache" / entry.file
    if not cached.is_file():
        _download(entry, cached)
    return cached


def parse_sequences(path: Path) -> list[np.ndarray]:
    """Strict parser of `user item item ...` lines; errors name `file:line`."""
    lines = path.read_text().split("\n")
    while lines and not lines[-1].strip():
        lines.pop()  # trailing blank lines are fine, blank lines in the middle are not
    seqs: list[np.ndarray] = []
    seen_users: dict[int, int] = {}
    for no, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            raise BenchError(f"{path}:{no}: empty line in the middle of the file")
        try:
            ids = [int(t) for t in parts]
        except ValueError:
            bad = next(t for t in parts if not t.lstrip("-").isdigit())
            raise BenchError(f"{path}:{no}: non-integer token {bad!r}") from None
        user, items = ids[0], ids[1:]
        if user in seen_users:
            raise BenchError(f"{path}:{no}: user {user} repeated (first at line {seen_users[user]})")
        seen_users[user] = no
        if len(items) < 3:
            raise BenchError(f"{path}:{no}: user {user} has {len(items)} items; leave-one-out needs at least 3")
        if min(items) < 1:
            raise BenchError(f"{path}:{no}: item ids must be positive (0 is padding), got {min(items)}")
        seqs.append(np.asarray(items, dtype=np.int64))
    if not seqs:
        raise BenchError(f"{path}: no users")
    return seqs


def concat_ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Indices of [starts[u], ends[u]) for every u, concatenated (vectorised)."""
    lengths = np.maximum(ends - starts, 0)
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + np.arange(lengths.sum()) - offsets


def train_counts(data: SeqData) -> np.ndarray:
    """Interaction counts of every item over the training part (all but each user's last two items)."""
    return np.bincount(data.flat[concat_ranges(data.starts, data.ends - 2)], minlength=data.item_size)


def windows(flat: np.ndarray, start: np.ndarray, end: np.ndarray, length: int = MAX_LEN) -> np.ndarray:
    """Left-padded windows: row u holds the last `length` items of flat[start[u]:end[u]]."""
    idx = end[:, None] - length + np.arange(length)[None]  # (U, L)
    valid = idx >= start[:, None]
    return np.where(valid, flat[np.clip(idx, 0, None)], 0)


@dataclass(frozen=True)
class SeqData:
    """All user sequences of one dataset in CSR form (user u: flat[offsets[u]:offsets[u+1]])."""

    name: str
    sha256: str
    flat: np.ndarray  # (N,) int64 item ids
    offsets: np.ndarray  # (U+1,) int64
    labels: np.ndarray | None = None  # (U,) planted intent of each user (synthetic only)

    @staticmethod
    def from_sequences(name: str, sha: str, seqs: list[np.ndarray], labels: np.ndarray | None = None) -> SeqData:
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(s) for s in seqs])
        return SeqData(name, sha, np.concatenate(seqs).astype(np.int64), offsets, labels)

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @cached_property
    def max_item(self) -> int:
        return int(self.flat.max())

    @property
    def item_size(self) -> int:
        """Embedding rows: ids 0 (padding) .. max_item, plus the authors' mask token."""
        return self.max_item + 2

    @property
    def starts(self) -> np.ndarray:
        return self.offsets[:-1]

    @property
    def ends(self) -> np.ndarray:
        return self.offsets[1:]

    def eval_split(self, stage: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Leave-one-out: (inputs (U, 50), targets (U,), history end (U,)) for "valid" or "test".

        test: target = last item, input and seen items = all before it; valid: the same one step
        earlier. The seen items of user u are flat[starts[u]:history_end[u]].
        """
        if stage not in ("valid", "test"):
            raise ValueError(stage)
        hist_end = self.ends - (1 if stage == "test" else 2)
        return windows(self.flat, self.starts, hist_end), self.flat[hist_end], hist_end

    def train_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Training sequences: items except the last three, as (start, end) into `flat`."""
        return self.starts, self.ends - 3

    def stats(self) -> dict[str, int]:
        return {"users": self.n_users, "items": self.max_item, "interactions": len(self.flat)}


def _is_synthetic(name: str) -> bool:
    return name.split(":")[0] == "synthetic"


def check_dataset(name: str, data_dir: Path | None = None) -> None:
    """Fails fast, without loading: an unknown name, a malformed synthetic spec, or a local folder
    (`--data-dir` or the environment variable) that lacks the file. A download is left to the run."""
    if _is_synthetic(name):
        from bench.synthetic import parse_spec

        parse_spec(name)
        return
    _local_file(_entry(name), data_dir)


def load_dataset(name: str, data_dir: Path | None = None) -> SeqData:
    """Loads, verifies and parses a dataset by name ("synthetic[:k=v,...]" is generated)."""
    if _is_synthetic(name):
        from bench.synthetic import synthetic_from_spec

        return synthetic_from_spec(name)
    entry = _entry(name)
    path = resolve_file(entry, data_dir)
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise BenchError(f"{path}: sha256 mismatch: expected {entry.sha256}, actual {digest}")
    data = SeqData.from_sequences(name, digest, parse_sequences(path))
    expected = {"users": entry.users, "items": entry.items, "interactions": entry.interactions}
    if data.stats() != expected:
        raise BenchError(f"{path}: statistics {data.stats()} differ from the manifest's {expected}")
    return data


def item_attributes(name: str, data: SeqData, data_dir: Path | None = None) -> np.ndarray:
    """(item_size, A) 0/1 matrix of every item's attributes (column 0: no attribute, never set).

    A manifest dataset reads `attributes/<file stem>_item2attributes.json` (S3-Rec's files, item id ->
    attribute ids) next to the dataset file (`--data-dir`, $INTENTBENCH_DATA_DIR, or the cache); the
    synthetic data's one attribute per item is its planted group."""
    if _is_synthetic(name):
        from bench.synthetic import item_groups, parse_spec

        pairs = [(i, int(g) + 1) for i, g in enumerate(item_groups(parse_spec(name))) if i > 0]
    else:
        entry = _entry(name)
        root = data_dir or (Path(os.environ[ENV_DATA_DIR]) if os.environ.get(ENV_DATA_DIR) else DATASETS_DIR / "cache")
        path = root / "attributes" / f"{Path(entry.file).stem}_item2attributes.json"
        if not path.is_file():
            raise BenchError(f"{path}: no item attributes for {name} (S3-Rec's item2attributes file is needed)")
        raw = json.loads(path.read_text())
        pairs = [(int(i), int(a)) for i, attrs in raw.items() for a in attrs]
    n_attr = max(a for _, a in pairs) + 1
    out = np.zeros((data.item_size, n_attr), dtype=np.float32)
    for i, a in pairs:
        if i < data.item_size:
            out[i, a] = 1.0
    return out
