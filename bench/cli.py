"""`python -m bench run|eval|report|gate|list|perf|calibrate`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from bench.config import EvalConfig, add_arguments, from_namespace
from bench.errors import BenchError


def cmd_eval(ns: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench.data import load_dataset, sha256_file
    from bench.evaluate import device_info, evaluate
    from bench.modelio import check_model, load_checkpoint
    from bench.records import append_record, peak_rss_mb, provenance

    cfg = from_namespace(EvalConfig, ns)
    check_model(cfg.model)
    data = load_dataset(cfg.dataset, cfg.data_dir)
    model = load_checkpoint(cfg.model, cfg.checkpoint, data.item_size)
    res = evaluate(model, data, "test", cfg.seen_items)
    peak_mb = peak_rss_mb()
    if cfg.json:
        print(json.dumps({**res.metrics, "protocol": res.protocol.as_dict(), "peak_rss_mb": peak_mb}))
    else:
        rows = [[k, f"{v:.4f}"] for k, v in res.metrics.items()]
        print(f"{cfg.model} on {cfg.dataset} ({cfg.checkpoint.name}), seen items: {cfg.seen_items}, "
              f"{data.n_users} users x {data.item_size} items")
        print(tabulate(rows, headers=["metric", "value"], tablefmt="github"))
    if cfg.out is not None:
        record = {
            "kind": "eval", "status": "ok", "model": cfg.model, "dataset": cfg.dataset, "seed": None,
            "checkpoint": str(cfg.checkpoint), "checkpoint_sha256": sha256_file(cfg.checkpoint),
            "metrics": res.metrics, "protocol": res.protocol.as_dict(), "provenance": provenance(),
            "n_users": data.n_users, "memory": {"peak_rss_mb": peak_mb}, "device": device_info("cpu"),
        }
        per_user = {**res.per_user, "rank": res.ranks}
        rec = append_record(cfg.out, record, per_user)
        print(f"record {rec['id']} appended to {cfg.out}", file=sys.stderr)
    return 0


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
    print("presets (dataset -> model -> hyper-parameters):")
    for ds, table in PRESETS.items():
        print(f"  {ds}: " + "; ".join(f"{m} {v}" for m, v in table.items()))
    _list_extra()
    return 0


def _list_extra() -> None:
    try:
        from bench.runner import PROFILES
    except ImportError:
        return
    print("profiles:")
    for name, prof in PROFILES.items():
        print(f"  {name:6s} {prof.describe()}")


COMMANDS: dict[str, tuple[str, type | None, Callable[[argparse.Namespace], int]]] = {
    "eval": ("evaluate a checkpoint on a dataset's test split", EvalConfig, cmd_eval),
    "list": ("list models, datasets, presets and profiles", None, cmd_list),
}


def register(name: str, help: str, cfg: type | None, fn: Callable[[argparse.Namespace], int]) -> None:
    COMMANDS[name] = (help, cfg, fn)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; given the subcommand about to run, only its module is imported (the others
    pull in pandas and scipy, ~0.5 s of start-up that `bench run` would otherwise spend first)."""
    _load_plugins(command)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help, cfg, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if cfg is not None:
            add_arguments(p, cfg)
    return parser


PLUGINS = {"run": "bench.runner", "report": "bench.report", "gate": "bench.gate", "perf": "bench.perf",
           "calibrate": "bench.calibrate"}


def _load_plugins(command: str | None = None) -> None:
    """Subcommands defined next to the code they drive register themselves on import."""
    import importlib

    if command in PLUGINS:
        mods = [PLUGINS[command]]
    elif command in COMMANDS:  # built in here
        mods = []
    else:  # no or unknown command: the help lists them all
        mods = list(PLUGINS.values())
    for mod in mods:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args[0] if args else None)
    ns = parser.parse_args(args)
    try:
        return COMMANDS[ns.command][2](ns)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # an output folder that cannot be created, a full disk: the user's to fix
        print(f"error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def exit_now(code: int) -> None:
    """Exits without tearing down the interpreter: freeing torch's modules and a GB-sized heap takes
    ~0.8 s on a small CPU, and everything that must outlive the process (the record, fsynced) is
    written already."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
