"""Datasets: manifest, resolution, checksums, a strict parser and the leave-one-out split.

Resolution order for a manifest dataset: `--data-dir`, then $INTENTBENCH_DATA_DIR, then the cache
under `datasets/cache/`, then a download from the manifest's public URLs into the cache (atomic
rename after the sha256 matched). The file's sha256 and its statistics are verified before use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.sequences import SeqData
from bench.errors import BenchError

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASETS_DIR = REPO_ROOT / "datasets"
ENV_DATA_DIR = "INTENTBENCH_DATA_DIR"


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
    return [*manifest(), "synthetic", "beauty-like"]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def install_verified(source: str | Path, sha256: str, dest: Path) -> None:
    """Copies a URL (http, https, file) or a local file to `dest` atomically: into a temporary file
    beside it, renamed only after its sha256 matched, so `dest` is whole and right or untouched.
    Raises OSError (URLError included) naming the mismatch."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(source, Path):
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            else:
                with urllib.request.urlopen(source, timeout=30) as resp:
                    shutil.copyfileobj(resp, out, 1 << 20)
        digest = sha256_file(Path(tmp))
        if digest != sha256:
            raise OSError(f"sha256 mismatch: expected {sha256}, got {digest}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download(urls: tuple[str, ...], sha256: str, dest: Path) -> str:
    """The first of `urls` whose content has the sha256, installed at `dest`; returns that URL.
    Raises OSError listing every URL's failure."""
    errors = []
    for url in urls:
        try:
            install_verified(url, sha256, dest)
            return url
        except OSError as e:  # URLError is an OSError
            errors.append(f"{url}: {e}")
    raise OSError("; ".join(errors) or "no URL known")


def _download(entry: DatasetEntry, dest: Path) -> None:
    try:
        download(entry.urls, entry.sha256, dest)
    except OSError as e:
        raise BenchError(
            f"cannot download {entry.file} ({e}); offline? point at a local copy with "
            f"--data-dir DIR or {ENV_DATA_DIR}=DIR (a folder holding {entry.file}), or run "
            f"`python -m bench fetch --what datasets --from DIR`"
        ) from None


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


def _is_synthetic(name: str) -> bool:
    return name.split(":")[0] == "synthetic"


def _is_beautylike(name: str) -> bool:
    return name.split(":")[0] == "beauty-like"


def beauty_search(data_dir: Path | None = None) -> tuple[list[Path], str]:
    """Where the Beauty-shaped data looks for Beauty.txt (`--data-dir`, $INTENTBENCH_DATA_DIR, the cache,
    ../shared/datasets next to this checkout), and the file's sha256."""
    roots = [data_dir, os.environ.get(ENV_DATA_DIR), DATASETS_DIR / "cache", REPO_ROOT.parent / "shared" / "datasets"]
    return [Path(r) for r in roots if r], manifest()["beauty"].sha256


def check_dataset(name: str, data_dir: Path | None = None) -> None:
    """Fails fast, without loading: an unknown name, a malformed synthetic spec, or a local folder
    (`--data-dir` or the environment variable) that lacks the file. A download is left to the run."""
    if _is_synthetic(name):
        from bench.data.synthetic import parse_spec

        parse_spec(name)
        return
    if _is_beautylike(name):
        from bench.data.beautylike import parse_spec as parse_beautylike
        from bench.data.beautylike import resolve_shape

        resolve_shape(parse_beautylike(name), *beauty_search(data_dir))  # shape=beauty without the file fails
        return
    _local_file(_entry(name), data_dir)


def load_dataset(name: str, data_dir: Path | None = None) -> SeqData:
    """Loads, verifies and parses a dataset by name ("synthetic[:k=v,...]", "beauty-like[:k=v,...]" are generated)."""
    if _is_synthetic(name):
        from bench.data.synthetic import synthetic_from_spec

        return synthetic_from_spec(name)
    if _is_beautylike(name):
        from bench.data.beautylike import beautylike_from_spec

        return beautylike_from_spec(name, *beauty_search(data_dir))
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
        from bench.data.synthetic import item_groups, parse_spec

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
