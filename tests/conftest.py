"""Shared fixtures. The loss fixture is committed (tests/fixtures); the authors' datasets and
checkpoints are found in $INTENTBENCH_SHARED/<kind>, ../shared/<kind>, then the cache that
`python -m bench fetch` fills, and tests that need them skip with that command where none has them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.data.fetch import artifacts, default_cache, fetch_command

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"  # our own loss fixture (also in ../shared/reference/fixtures)


def candidates(kind: str) -> list[Path]:
    """Where the authors' files of `kind` may be: the environment's shared folder first (explicit
    beats implicit), then ../shared next to this checkout, then the fetch cache."""
    env = os.environ.get("INTENTBENCH_SHARED")
    roots = [Path(env)] if env else []
    return [*(r / kind for r in [*roots, REPO.parent / "shared"]), default_cache(kind)]


#: what most tests need (and what scripts/gpu.sh carries to a GPU machine): the Beauty files
BEAUTY = {"datasets": ("Beauty.txt",), "checkpoints": ("ELCRec-Beauty-1.pt", "ICLRec-Beauty-1.pt")}


def locate(kind: str, files: tuple[str, ...] | None = None) -> Path:
    """The first folder holding `files` (default: every file of `kind`); else skips, naming the
    command that fetches them."""
    files = files or tuple(a.file for a in artifacts(kind))
    for folder in candidates(kind):
        if all((folder / f).is_file() for f in files):
            return folder
    pytest.skip(f"the authors' {kind} are absent (looked in {', '.join(map(str, candidates(kind)))}); "
                f"fetch them with: {fetch_command(kind)}  (or add --from DIR to copy a local folder)")


@pytest.fixture
def shared_data() -> Path:
    """A folder with Beauty.txt (tests of other datasets call `locate` with their file)."""
    return locate("datasets", BEAUTY["datasets"])


@pytest.fixture
def checkpoints() -> Path:
    """A folder with the two Beauty checkpoints (the loss fixture's)."""
    return locate("checkpoints", BEAUTY["checkpoints"])


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTENTBENCH_DATA_DIR", raising=False)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Small training passes in one torch thread: on a shared machine several times faster than two."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
