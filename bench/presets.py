"""Per-dataset settings of the authors (ELCRec `main.py`, ICLRec `scripts/`), as data.

Models never know about datasets: the runner looks a (dataset, model) pair up here and passes the
values as hyper-parameter overrides. "*" applies to every model. Training settings (lr, batch size)
are no hyper-parameters: where a source names its own, the comment says so and a run passes them
with `--set MODEL.lr=...`.
"""

from __future__ import annotations

from typing import Any

ICL_FAMILY = ("sasrec", "cl4srec", "iclrec", "elcrec")  # the one encoder of ICLRec's code, its depth per dataset


def _layers(n: int) -> dict[str, dict[str, Any]]:
    return {m: {"layers": n} for m in ICL_FAMILY}


# Beauty settings of the zoo, from shared/reference/baselines.md and the code it names:
BEAUTY_ZOO: dict[str, dict[str, Any]] = {
    # antklen/sasrec-bert4rec-recsys23 config: hidden 64, 2 blocks, 1 head, dropout 0.1 (the config's
    # defaults; their lr 1e-3, batch 128, patience 10 are training settings)
    "sasrec_ce": {"layers": 2},
    # RecBole bpr.py: embedding 64
    "bprmf": {"hidden": 64},
    # RecBole gru4rec.py: embedding 64, hidden 128, dropout 0.3
    "gru4rec": {"hidden": 64, "gru_hidden": 128, "dropout": 0.3},
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "beauty": {**_layers(1), "iclrec": {"k": 256, "layers": 1},
               "elcrec": {"k": 256, "alpha": 10.0, "fusion": "shift", "layers": 1}, **BEAUTY_ZOO},
    "sports": {**_layers(2), "iclrec": {"k": 256, "layers": 2},
               "elcrec": {"k": 512, "alpha": 1.0, "fusion": "concat", "layers": 2}},
    "toys": {**_layers(3), "iclrec": {"k": 256, "layers": 3},
             "elcrec": {"k": 512, "alpha": 1.0, "fusion": "concat", "layers": 3}},
    "yelp": {**_layers(2), "iclrec": {"k": 256, "layers": 2},
             "elcrec": {"k": 256, "alpha": 0.1, "fusion": "concat", "layers": 2}},
    # the built-in data: as many centres as planted intents (8 by default), a 1-layer encoder
    "synthetic": {**_layers(1), "iclrec": {"k": 8, "layers": 1},
                  "elcrec": {"k": 8, "alpha": 1.0, "fusion": "shift", "layers": 1}},
}


def preset(dataset: str, model: str) -> dict[str, Any]:
    table = PRESETS.get(dataset.split(":")[0], {})
    return {**table.get("*", {}), **table.get(model, {})}
