"""`python -m bench COMMAND`: a dispatch table that parses the command line and calls the command.

Each command lives next to the code it drives and is named here as "module:attribute" strings, so
that only the module of the command about to run is imported (the others pull in pandas, scipy or
torch: start-up time a `bench run` would otherwise spend first), and so that no domain module
depends on the CLI.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from bench.config import add_arguments
from bench.errors import BenchError

# name -> (help, "module:ConfigClass" or None, "module:function")
COMMANDS: dict[str, tuple[str, str | None, str]] = {
    "run": ("train models x datasets x seeds under the authors' protocol", "bench.runner:RunConfig",
            "bench.runner:cmd_run"),
    "eval": ("evaluate a checkpoint on a dataset's test split", "bench.config:EvalConfig",
             "bench.eval_checkpoint:cmd_eval"),
    "report": ("tables, significance tests, claim verdicts and plots from records", "bench.results.report:ReportConfig",
               "bench.results.render:cmd_report"),
    "gate": ("compare current records with a baseline; exit 1 on a significant regression",
             "bench.results.gate:GateConfig", "bench.results.gate:cmd_gate"),
    "list": ("list models, datasets, presets and profiles", None, "bench.catalog:cmd_list"),
    "perf": ("speed benchmarks of paper-settings training (epoch, clustering, whole run)",
             "bench.perf.speed:PerfConfig", "bench.perf.speed:cmd_perf"),
    "cost": ("paired per-epoch cost of models trained in alternation (ABAB...), with a CI",
             "bench.perf.cost:CostConfig", "bench.perf.cost:cmd_cost"),
    "reproduce": ("run (or resume) every run of an experiment file, then write its report",
                  "bench.reproduce:ReproduceConfig", "bench.reproduce:cmd_reproduce"),
    "fetch": ("download (or copy with --from) the authors' datasets and checkpoints, sha256-checked",
              "bench.data.fetch:FetchConfig", "bench.data.fetch:cmd_fetch"),
    "calibrate": ("Monte Carlo coverage, type-I error and power of the report's and gate's statistics",
                  "bench.results.calibrate:CalibrateConfig", "bench.results.calibrate:cmd_calibrate"),
}


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error and exit 2 for bad flags, as for every other bad input (argparse's
    own prints the whole usage first, which buries the one line that says what is wrong)."""

    commands: Mapping[str, argparse.ArgumentParser]  # the sub-commands' parsers, by name (top level only)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser(command: str | None = None) -> _Parser:
    """The CLI parser; only the given command's options module is imported (all of them for help).
    Sub-commands' parsers are `_Parser`s too (argparse makes them of the parent's class)."""
    parser = _Parser(prog="python -m bench", description="intentbench: train, evaluate, report "
                     "and gate sequential recommenders; turn a paper's claims into verdicts")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help, cfg, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if cfg is not None and (command is None or command not in COMMANDS or command == name):
            add_arguments(p, _resolve(cfg))
    parser.commands = sub.choices
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args[0] if args else None)
    ns, extra = parser.parse_known_args(args)
    if extra:  # parse_args would blame the top-level parser; the options are the command's
        parser.commands[ns.command].error(f"unrecognized arguments: {' '.join(extra)}")
    fn: Callable[[argparse.Namespace], int] = _resolve(COMMANDS[ns.command][2])
    try:
        return fn(ns)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # an output folder that cannot be created, a full disk: the user's to fix
        print(f"error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
