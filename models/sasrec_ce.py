"""SASRec trained with softmax cross-entropy over all items ("SASRec+", Klenitskiy & Vasilev,
RecSys 2023, "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?").

Reference: antklen/sasrec-bert4rec-recsys23 `src/modules.py` (`SeqRec.compute_loss`: the logits of
every position against every item embedding, cross-entropy over the real positions); settings
hidden 64, 2 blocks, 1 head, dropout 0.1 (their config), the config defaults here.

Training samples: one sequence per user with a target at every position (the default, as the
reference), or with `prefixes=True` every prefix of the training sequence with the loss at its last
position only (FMLP-Rec/BSARec code).

Deviations: the encoder is the ICLRec code base's (`models.encoder.SeqEncoder`: post-norm blocks,
learned positions, shared item embeddings for input and output) instead of the reference's
pre-norm SASRec blocks; the scores of padding id 0 and of the mask token are part of the softmax
(the reference scores its item ids only); batches are cut to their longest sequence (padding
keys are masked, so the outputs at real positions are unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from models import fast
from models.base import full_ce
from models.encoder import EncoderConfig
from models.protocol import Batch
from models.sasrec import SASRec


@dataclass(frozen=True)
class SASRecCEConfig(EncoderConfig):
    heads: int = 1
    dropout: float = 0.1
    attn_dropout: float = 0.1
    prefixes: bool = False  # every prefix as a sample, loss at the last position


class SASRecCE(SASRec):
    objective = "ce-full"

    def __init__(self, item_size: int, cfg: SASRecCEConfig) -> None:
        super().__init__(item_size, cfg)
        self.hp = cfg
        self.samples = "prefixes" if cfg.prefixes else "sequence"

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        items = self.item_embeddings.weight  # (I, D)
        if self.samples == "prefixes":
            h = fast.by_length(lambda ids: self(ids, last_only=True)[:, -1], batch.input_ids)  # (B, D)
            ce = full_ce(h, items, batch.target_pos)  # target (B,)
        else:
            out, target = fast.at_targets(self, batch.input_ids, batch.target_pos)  # (P, D), (P,)
            ce = full_ce(out, items, target)
        return {"loss": ce, "ce": ce}
