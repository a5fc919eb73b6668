"""Shared fixtures. Tests that need the authors' files read ../shared and skip where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("INTENTBENCH_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "datasets"
CHECKPOINTS = SHARED / "checkpoints"
FIXTURES = SHARED / "reference" / "fixtures"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the authors' files live in ../shared, which this checkout lacks")
    return path


@pytest.fixture
def shared_data() -> Path:
    return need(SHARED_DATA)


@pytest.fixture
def checkpoints() -> Path:
    return need(CHECKPOINTS)


@pytest.fixture
def fixtures_dir() -> Path:
    return need(FIXTURES)


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTENTBENCH_DATA_DIR", raising=False)
