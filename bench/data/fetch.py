"""`python -m bench fetch`: the authors' datasets and checkpoints into the cache, sha256-checked.

Each file comes from a local folder (`--from DIR`: DIR/<file> or DIR/<kind>/<file>, so that
`--from ../shared` works) or else from its public URLs (`datasets/manifest.toml`,
`checkpoints/manifest.toml`). Either way it is written beside its destination and renamed only after
its sha256 matched (`bench.data.install_verified`), so the cache never holds a wrong or half file.
A file already in the cache with the right digest is left as it is. No torch here.
"""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import dataclass
from pathlib import Path

from bench.config import from_namespace, opt
from bench.data import DATASETS_DIR, REPO_ROOT, download, install_verified, manifest, sha256_file
from bench.errors import BenchError

KINDS = ("datasets", "checkpoints")
CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"


@dataclass(frozen=True)
class Artifact:
    kind: str  # "datasets" or "checkpoints"
    name: str
    file: str
    urls: tuple[str, ...]
    sha256: str


def checkpoint_manifest() -> dict[str, Artifact]:
    with open(CHECKPOINTS_DIR / "manifest.toml", "rb") as f:
        raw = tomllib.load(f)
    return {k: Artifact("checkpoints", k, v["file"], tuple(v["urls"]), v["sha256"]) for k, v in raw.items()}


def artifacts(kind: str) -> list[Artifact]:
    """Every file of one kind, in manifest order."""
    if kind == "datasets":
        return [Artifact("datasets", e.name, e.file, e.urls, e.sha256) for e in manifest().values()]
    if kind == "checkpoints":
        return list(checkpoint_manifest().values())
    raise ValueError(kind)


def default_cache(kind: str) -> Path:
    """Where `bench run`/`eval` look without --data-dir (datasets) and where the tests look (both)."""
    return DATASETS_DIR / "cache" if kind == "datasets" else CHECKPOINTS_DIR / "cache"


def fetch_command(kind: str) -> str:
    """The command that puts every file of `kind` into the default cache (for skip messages)."""
    return f"python -m bench fetch --what {kind}"


def _local_source(art: Artifact, folder: Path) -> Path | None:
    for path in (folder / art.file, folder / art.kind / art.file):
        if path.is_file():
            return path
    return None


def fetch_one(art: Artifact, dest_dir: Path, source: Path | None = None) -> str:
    """Installs one file in `dest_dir`; returns what happened, for the command's output line.
    Raises OSError on a wrong digest, a missing local file or an unreachable URL."""
    dest = dest_dir / art.file
    if dest.is_file() and sha256_file(dest) == art.sha256:
        return f"present in {dest_dir}"
    if source is not None:
        local = _local_source(art, source)
        if local is None:
            raise OSError(f"not in {source} (nor in {source / art.kind})")
        install_verified(local, art.sha256, dest)
        return f"copied from {local}"
    return f"downloaded from {download(art.urls, art.sha256, dest)}"


@dataclass(frozen=True)
class FetchConfig:
    what: str = opt("all", help="which files", choices=("datasets", "checkpoints", "all"))
    only: tuple[str, ...] = opt((), help="comma-separated names (beauty, elcrec-beauty, ...; default: all)")
    source: Path | None = opt(None, help="take the files from this folder instead of their URLs (checked too)",
                              flag="--from")
    cache: Path | None = opt(None, help="folder to put them in (default: datasets/cache/ and checkpoints/cache/)")


def _selected(cfg: FetchConfig) -> list[Artifact]:
    chosen = [a for kind in KINDS if cfg.what in (kind, "all") for a in artifacts(kind)]
    known = {a.name for a in chosen}
    unknown = sorted(set(cfg.only) - known)
    if unknown:
        raise BenchError(f"--only: unknown name(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [a for a in chosen if not cfg.only or a.name in cfg.only]


def cmd_fetch(ns: argparse.Namespace) -> int:
    cfg = from_namespace(FetchConfig, ns)
    if cfg.source is not None and not cfg.source.is_dir():
        raise BenchError(f"--from {cfg.source}: not a folder")
    failed = []
    for art in _selected(cfg):
        dest_dir = cfg.cache or default_cache(art.kind)
        try:
            how = fetch_one(art, dest_dir, cfg.source)
        except OSError as e:
            failed.append(art.file)
            print(f"FAILED {art.kind}/{art.name} ({art.file}): {e}", flush=True)
            continue
        print(f"ok     {art.kind}/{art.name} ({art.file}): {how}", flush=True)
    if failed:
        hint = "" if cfg.source else "; offline? copy them from a folder with --from DIR"
        raise BenchError(f"{len(failed)} file(s) not fetched: {', '.join(failed)}{hint}")
    return 0

