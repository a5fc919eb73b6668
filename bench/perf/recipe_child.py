"""A child process of `bench perf` (`bench.perf.speed.time_recipe_process`): times ELCRec's epoch the
authors' way (`bench.perf.speed.time_recipe`) in the environment it was started with, and prints the
timings as one JSON line. Its argument is a JSON object: dataset, data_dir, recipe_batches."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.perf.speed import PerfConfig, time_recipe


def main(arg: str) -> None:
    args = json.loads(arg)
    data_dir = Path(args["data_dir"]) if args["data_dir"] else None
    cfg = PerfConfig(dataset=args["dataset"], models=("elcrec",), data_dir=data_dir,
                     recipe_batches=int(args["recipe_batches"]))
    print(json.dumps(time_recipe(cfg)))


if __name__ == "__main__":
    main(sys.argv[1])
