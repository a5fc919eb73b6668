"""`python -m bench list`: the models, datasets, presets and profiles this installation knows."""

from __future__ import annotations

import argparse


def cmd_list(ns: argparse.Namespace) -> int:
    from bench.data import manifest
    from bench.presets import PRESETS
    from models import REGISTRY

    print("models:")
    for name, spec in REGISTRY.items():
        print(f"  {name:9s} {spec.summary}")
    print("datasets:")
    for name, e in manifest().items():
        print(f"  {name:9s} {e.file}: {e.users} users, {e.items} items, {e.interactions} interactions")
    print("  synthetic built in, planted intents; options synthetic:users=N,items=N,intents=N,seed=N")
    print("  beauty-like built in, Beauty's lengths and popularity at a scale, planted intents; options "
          "beauty-like:scale=X,seed=N,intents=N,shape=auto|beauty|parametric")
    print("presets (dataset -> model -> hyper-parameters):")
    for ds, table in PRESETS.items():
        print(f"  {ds}: " + "; ".join(f"{m} {v}" for m, v in table.items()))
    _list_extra()
    _list_studies()
    return 0


def _list_studies() -> None:
    """The shipped experiment files (`bench reproduce FILE`), each with its description."""
    from bench.data.datasets import REPO_ROOT
    from bench.experiment import study_kind

    files = sorted((REPO_ROOT / "experiments").glob("*.toml"))
    if not files:
        return
    print("studies (python -m bench reproduce FILE [--dry-run]):")
    for path in files:
        kind, top = study_kind(path)
        tag = f" [{kind}]" if kind != "runs" else ""
        print(f"  experiments/{path.name}{tag}: {top.get('description', '')}")


def _list_extra() -> None:
    try:
        from bench.runner import PROFILES
    except ImportError:
        return
    print("profiles:")
    for name, prof in PROFILES.items():
        print(f"  {name:6s} {prof.describe()}")
