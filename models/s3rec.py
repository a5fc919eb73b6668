"""S3-Rec (Zhou et al., CIKM 2020, "S3-Rec: Self-Supervised Learning for Sequential Recommendation
with Mutual Information Maximization").

Reference: aHuiWang/CIKM2020-S3Rec `models.py` (S3RecModel.pretrain and its four heads),
`datasets.py` (PretrainDataset), `run_pretrain.py`, `run_finetune_full.py`. Pre-training on every
prefix of the training items with four self-supervised objectives, each a sum over its positions:
- AAP, associated attribute prediction: sigmoid(attr_emb . W_aap h_t) against the attributes of the
  item at t, binary cross-entropy at the unmasked positions;
- MIP, masked item prediction: -log sigmoid(s(pos) - s(neg)) with s = sigmoid(e_item . W_mip h_t), at
  the masked positions (mask probability 0.2, one negative per position);
- MAP, masked attribute prediction: as AAP with its own W_map, at the masked positions;
- SP, segment prediction: -log sigmoid(s(true segment) - s(random segment)), s = sigmoid of the
  dot product of W_sp (context with the segment masked) with the segment's encoding (last position);
weights 0.2, 1, 1, 0.5. Fine-tuning is SASRec's (BCE with one negative, one sequence per user) from
the pre-trained weights, with a fresh optimiser. The encoder is the SASRec one the ICLRec code base
took from this code. Beauty: pre-training 300 epochs, fine-tuning from the epoch-150 checkpoint,
so `pretrain_epochs` 150 there.

Item attributes come from the harness as a (item_size, attributes) 0/1 matrix (a buffer, not in the
state dict). Deviations: the four encoder passes (masked items, masked segment, true and random
segment) run as one batched forward; negatives are never items of the user (the reference: of the
sequence); all randomness comes from the run's generators.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models import fast
from models.encoder import EncoderConfig, require, require_ranges
from models.protocol import Batch, Pretraining
from models.sasrec import SASRec


@dataclass(frozen=True)
class S3RecConfig(EncoderConfig):
    pretrain_epochs: int = 150
    mask_p: float = 0.2
    aap_weight: float = 0.2
    mip_weight: float = 1.0
    map_weight: float = 1.0
    sp_weight: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        require_ranges(self, non_negative=("pretrain_epochs", "aap_weight", "mip_weight", "map_weight", "sp_weight"))
        require(0.0 < self.mask_p < 1.0, f"mask_p must be in (0, 1), got {self.mask_p}")


def bce_sum(prob: Tensor, target: Tensor) -> Tensor:
    """Summed binary cross-entropy of probabilities (torch's BCELoss, its log clamped at -100)."""
    return F.binary_cross_entropy(prob, target, reduction="none")


class S3Rec(SASRec):
    needs_attributes = True

    def __init__(self, item_size: int, cfg: S3RecConfig, attributes: np.ndarray) -> None:
        super().__init__(item_size, cfg)
        self.hp = cfg
        attrs = torch.as_tensor(attributes, dtype=torch.float32)  # (item_size, A)
        self.register_buffer("item_attributes", attrs, persistent=False)
        d = cfg.hidden
        self.attribute_embeddings = nn.Embedding(attrs.shape[1], d, padding_idx=0)
        self.aap_norm, self.mip_norm, self.map_norm, self.sp_norm = (nn.Linear(d, d) for _ in range(4))

    def pretraining(self) -> Pretraining | None:
        if self.hp.pretrain_epochs == 0:
            return None
        return Pretraining("segments", {"mask_prob": self.hp.mask_p}, self.hp.pretrain_epochs, self.pretrain_losses)

    def _attribute_bce(self, h: Tensor, norm: nn.Linear, items: Tensor, where: Tensor) -> Tensor:
        """h (B, L, D), items (B, L) -> BCE of predicted attributes, summed over `where` (B, L, 0/1).

        Only the positions in `where` are scored (the reference scores all and multiplies by the
        mask: the same sum). Most positions of a pre-training batch are padding, or not masked, and
        each scored position costs a (D x A) product and A BCE terms."""
        sel = where > 0
        prob = torch.sigmoid(norm(h[sel]) @ self.attribute_embeddings.weight.T)  # (P, A)
        return bce_sum(prob, self.item_attributes[items[sel]]).sum()  # type: ignore[index]

    def pretrain_losses(self, batch: Batch) -> dict[str, Tensor]:
        """The four pre-training losses, sums over the batch: computed on rows of similar length at a
        time (`fast.length_groups`; four fifths of a Beauty batch's positions are padding), added."""
        views = ("input_ids", "target_pos", "target_neg", "view_1", "view_2", "view_neg")
        real = torch.stack([getattr(batch, k) > 0 for k in views]).any(0)  # (B, L): a real item in any view
        parts = [self._pretrain_terms(Batch(**{k: getattr(batch, k)[rows, -width:] for k in views}))
                 for rows, width in fast.length_groups(real.long())]
        return {k: torch.stack([p[k] for p in parts]).sum() for k in parts[0]}

    def _pretrain_terms(self, batch: Batch) -> dict[str, Tensor]:
        b = batch.input_ids.shape[0]
        ids = torch.cat([batch.input_ids, batch.view_1, batch.view_2, batch.view_neg])  # (4B, L)
        h, ctx, pos_seg, neg_seg = self(ids).split(b)  # (B, L, D) each
        masked = (batch.input_ids == self.item_size - 1).float()
        unmasked = (batch.input_ids > 0).float() - masked
        emb = self.item_embeddings
        aap = self._attribute_bce(h, self.aap_norm, batch.target_pos, unmasked)
        mh = self.mip_norm(h)
        s_pos = torch.sigmoid((mh * emb(batch.target_pos)).sum(-1))
        s_neg = torch.sigmoid((mh * emb(batch.target_neg)).sum(-1))
        mip = (bce_sum(torch.sigmoid(s_pos - s_neg), torch.ones_like(s_pos)) * masked).sum()
        map_ = self._attribute_bce(h, self.map_norm, batch.target_pos, masked)
        c = self.sp_norm(ctx[:, -1])  # (B, D)
        sp_pos, sp_neg = torch.sigmoid((c * pos_seg[:, -1]).sum(-1)), torch.sigmoid((c * neg_seg[:, -1]).sum(-1))
        sp = bce_sum(torch.sigmoid(sp_pos - sp_neg), torch.ones_like(sp_pos)).sum()
        hp = self.hp
        loss = hp.aap_weight * aap + hp.mip_weight * mip + hp.map_weight * map_ + hp.sp_weight * sp
        return {"loss": loss, "aap": aap, "mip": mip, "map": map_, "sp": sp}
