"""Per-dataset settings of the authors (ELCRec `main.py`, ICLRec `scripts/`), as data.

Models never know about datasets: the runner looks a (dataset, model) pair up here and passes the
values as hyper-parameter overrides. "*" applies to every model.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "beauty": {"*": {"layers": 1}, "iclrec": {"k": 256}, "elcrec": {"k": 256, "alpha": 10.0, "fusion": "shift"}},
    "sports": {"*": {"layers": 2}, "iclrec": {"k": 256}, "elcrec": {"k": 512, "alpha": 1.0, "fusion": "concat"}},
    "toys": {"*": {"layers": 3}, "iclrec": {"k": 256}, "elcrec": {"k": 512, "alpha": 1.0, "fusion": "concat"}},
    "yelp": {"*": {"layers": 2}, "iclrec": {"k": 256}, "elcrec": {"k": 256, "alpha": 0.1, "fusion": "concat"}},
    # the built-in data: as many centres as planted intents (8 by default), a 1-layer encoder
    "synthetic": {"*": {"layers": 1}, "iclrec": {"k": 8}, "elcrec": {"k": 8, "alpha": 1.0, "fusion": "shift"}},
}


def preset(dataset: str, model: str) -> dict[str, Any]:
    table = PRESETS.get(dataset.split(":")[0], {})
    return {**table.get("*", {}), **table.get(model, {})}
