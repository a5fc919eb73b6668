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
    # yehjin-shin/BSARec src/scripts (Beauty): alpha 0.7, c 5, 1 head, 2 layers (lr 5e-4: training setting)
    "bsarec": {"alpha": 0.7, "c": 5, "heads": 1, "layers": 2},
    # Woeee/FMLP-Rec: 2 layers, hidden 64, dropout 0.5
    "fmlprec": {"layers": 2, "hidden": 64, "dropout": 0.5},
    # asash/gSASRec-pytorch: 256 negatives, t 0.75
    "gsasrec": {"negatives": 256, "t": 0.75},
    # FeiSun/BERT4Rec Beauty: 2 layers, 2 heads, hidden 64, mask 0.6, dropout 0.5, attention dropout 0.2
    "bert4rec": {"layers": 2, "heads": 2, "hidden": 64, "mask_prob": 0.6, "dropout": 0.5, "attn_dropout": 0.2},
    # graytowne/caser_pytorch: L 5, d 50, nv 4, nh 16, dropout 0.5
    "caser": {"L": 5, "hidden": 50, "nv": 4, "nh": 16, "dropout": 0.5},
    # RuihongQiu/DuoRec: lambda 0.1, tau 1
    "duorec": {"lmd_sem": 0.1, "tau": 1.0},
    # aHuiWang/CIKM2020-S3Rec: fine-tuning from the epoch-150 pre-training checkpoint (Beauty)
    "s3rec": {"pretrain_epochs": 150},
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
    # Cross-domain sets (issue 17): the ELCRec authors give no settings for them, so each value is
    # chosen from the paper's own presets, never tuned on these data:
    # - LastFM (music, 1,090 users, 48 items per user): 2 layers, the paper's depth on two of its four
    #   sets (Sports, Yelp), the middle of its 1-3; k = 64: the paper's 256-512 would leave 2-4 users per
    #   centre here, 64 leaves about 17 and lies in the paper's k grid (32-512); alpha 1 and concat
    #   fusion, the paper's values on two (alpha) and three (fusion) of its four sets, alpha inside its
    #   recommended range [0.1, 10].
    "lastfm": {**_layers(2), "iclrec": {"k": 64, "layers": 2},
               "elcrec": {"k": 64, "alpha": 1.0, "fusion": "concat", "layers": 2}},
    # - Video (Amazon video games, 31,013 users, 23,715 items, 9.3 items per user): closest in size
    #   and density to Sports (35,598 users, 18,357 items, 8.3), so Sports' preset as it stands.
    "video": {**_layers(2), "iclrec": {"k": 256, "layers": 2},
              "elcrec": {"k": 512, "alpha": 1.0, "fusion": "concat", "layers": 2}},
    # the built-in data: as many centres as planted intents (8 by default), a 1-layer encoder
    "synthetic": {**_layers(1), "iclrec": {"k": 8, "layers": 1},
                  "elcrec": {"k": 8, "alpha": 1.0, "fusion": "shift", "layers": 1},
                  # the zoo: 1-layer encoders as the family's; a short pre-training; fewer negatives than
                  # the tiny catalogue has items
                  **{m: {"layers": 1} for m in ("sasrec_ce", "duorec", "bert4rec", "bsarec", "fmlprec")},
                  "s3rec": {"pretrain_epochs": 2, "layers": 1}, "gsasrec": {"negatives": 16, "layers": 1}},
}

# Beauty-shaped synthetic data at a scale (bench/data/beautylike.py, the scaling study): Beauty's settings,
# since the data has Beauty's lengths, items and popularity
PRESETS["beauty-like"] = PRESETS["beauty"]


def preset(dataset: str, model: str) -> dict[str, Any]:
    table = PRESETS.get(dataset.split(":")[0], {})
    return {**table.get("*", {}), **table.get(model, {})}
