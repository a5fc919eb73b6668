"""SASRec (Kang & McAuley, ICDM 2018) as implemented in the ICLRec code base, and CL4SRec.

SASRec: next-item binary cross-entropy with one sampled negative per position.
CL4SRec (Xie et al., ICDE 2022), in ICLRec's "InstanceCL" form: SASRec + cf_weight x InfoNCE of the
flattened encoder outputs of two augmented views.

Deviation from the authors' code: the rec pass and the two view passes run as one batched forward
pass (same objective, fewer kernel launches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from models.encoder import EncoderConfig, SeqEncoder, info_nce_stacked, rec_loss, require_ranges
from models.protocol import Batch, EmbedUsers, Pretraining


@dataclass(frozen=True)
class SASRecConfig(EncoderConfig):
    pass


@dataclass(frozen=True)
class CL4SRecConfig(EncoderConfig):
    cf_weight: float = 0.1  # weight of the instance InfoNCE
    temperature: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require_ranges(self, non_negative=("cf_weight",), positive=("temperature",))


class SASRec(SeqEncoder):
    samples = "sequence"
    objective = "bce-1neg"

    def __init__(self, item_size: int, cfg: EncoderConfig) -> None:
        super().__init__(item_size, cfg)

    def sample_options(self) -> dict[str, Any]:
        return {}

    def pretraining(self) -> Pretraining | None:
        return None

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        out = self(batch.input_ids)  # (B, L, D)
        rec = rec_loss(self, out, batch.target_pos, batch.target_neg)
        return {"loss": rec, "rec": rec}

    def epoch_start(self, epoch: int, embed_users: EmbedUsers, seed: int) -> None:
        return None

    def after_step(self) -> None:
        return None

    def item_weights(self) -> Tensor:
        return self.item_embeddings.weight

    def intent_of(self, user_repr_mean: Tensor) -> Tensor | None:
        return None

    def intents(self) -> int:
        return 0


def encode_views(model: SeqEncoder, batch: Batch, copies: int) -> tuple[Tensor, list[Tensor]]:
    """One forward pass over [input_ids, (view_1, view_2) x copies].

    Returns the rec output (B, L, D) and `copies` tensors of (2B, L, D), each an independent
    dropout draw of the two views, as the authors' separate passes are.
    """
    views = torch.cat([batch.view_1, batch.view_2])  # (2B, L)
    out = model(torch.cat([batch.input_ids, *([views] * copies)]))
    b = batch.input_ids.shape[0]
    rec, *views_out = out.split([b, *[2 * b] * copies])  # one split: its backward is one concatenation
    return rec, views_out


class CL4SRec(SASRec):
    objective = "bce-1neg+instance-infonce"

    def __init__(self, item_size: int, cfg: CL4SRecConfig) -> None:
        super().__init__(item_size, cfg)
        self.hp = cfg

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        out, (views,) = encode_views(self, batch, copies=1)
        rec = rec_loss(self, out, batch.target_pos, batch.target_neg)
        cl = info_nce_stacked(views.flatten(1), self.hp.temperature)  # (2B, L*D)
        return {"loss": rec + self.hp.cf_weight * cl, "rec": rec, "instance_cl": cl}
