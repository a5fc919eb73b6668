"""DuoRec (Qiu et al., WSDM 2022, "Contrastive Learning for Representation Degeneration Problem in
Sequential Recommendation").

Reference: RuihongQiu/DuoRec `recbole/model/sequential_recommender/duorec.py` (contrast "us_x"),
re-hosted on the ICLRec data files by yehjin-shin/BSARec `src/model/duorec.py`: softmax CE over all
items at the last position of a prefix sample, plus lambda x InfoNCE (dot product / tau, the 2B
other rows of both views as negatives) between a second dropout pass of the same input
(unsupervised view) and a training sample with the same target item (supervised positive);
lambda 0.1, tau 1. The encoder is the SASRec one.

Deviations: the encoder is the ICLRec code base's (`models.encoder.SeqEncoder`: post-norm blocks,
dropout 0.5 by default); the three passes (input, its dropout view, the same-target sample) run as
one batched forward; the same-target sample is drawn among all of the epoch's prefix samples with
that target (itself when it is the only one), not from the reference's precomputed index; the mask
token's score is part of the softmax.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from models import fast
from models.base import full_ce
from models.encoder import EncoderConfig, info_nce, require_ranges
from models.protocol import Batch
from models.sasrec import SASRec


@dataclass(frozen=True)
class DuoRecConfig(EncoderConfig):
    lmd_sem: float = 0.1  # weight of the contrastive term
    tau: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require_ranges(self, non_negative=("lmd_sem",), positive=("tau",))


class DuoRec(SASRec):
    samples = "prefixes"
    objective = "ce-full+supervised-infonce"

    def __init__(self, item_size: int, cfg: DuoRecConfig) -> None:
        super().__init__(item_size, cfg)
        self.hp = cfg

    def sample_options(self) -> dict[str, Any]:
        return {"same_target": True}

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        ids = torch.cat([batch.input_ids, batch.input_ids, batch.view_1])  # (3B, L)
        h, aug, sem = fast.by_length(lambda x: self(x, last_only=True)[:, -1], ids).chunk(3)  # (B, D) each
        ce = full_ce(h, self.item_embeddings.weight, batch.target_pos)
        cl = info_nce(aug, sem, self.hp.tau)
        return {"loss": ce + self.hp.lmd_sem * cl, "ce": ce, "supervised_cl": cl}
