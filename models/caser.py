"""Caser (Tang & Wang, WSDM 2018, "Personalized Top-N Sequential Recommendation via Convolutional
Sequence Embedding").

Reference: graytowne/caser_pytorch `caser.py` (the last L item embeddings as an L x d image;
vertical convolution with nv filters of height L, horizontal convolutions with nh filters of every
height 1..L, ReLU and max-pooling over time; concatenated, dropout, a dense layer with ReLU, joined
with the user embedding; scores W2 [z; u] + b2 with per-item output weights; L 5, d 50, nv 4, nh 16,
dropout 0.5, embeddings N(0, 1/d)). Objective and samples as RUCAIBox/RecBole
`recbole/model/sequential_recommender/caser.py`: prefix samples (one target, T = 1) and softmax
cross-entropy over all items.

Deviations from graytowne's training: no sliding windows with T = 3 targets and 3 sampled negatives
under BCE (RecBole's CE variant is used, as stated); dense/conv weights start N(0, 0.02) (the
reference: PyTorch's default uniform); dropout masks come from the run's generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import ZooModel, full_ce, pad_left
from models.encoder import require, require_ranges
from models.protocol import Batch


@dataclass(frozen=True)
class CaserConfig:
    L: int = 5  # the last L items form the "image"
    hidden: int = 50  # d
    nv: int = 4  # vertical filters
    nh: int = 16  # horizontal filters per height
    dropout: float = 0.5

    def __post_init__(self) -> None:
        require_ranges(self, at_least_1=("L", "hidden", "nv", "nh"))
        require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


class Caser(ZooModel):
    samples = "prefixes"
    objective = "ce-full"
    needs_users = True

    def __init__(self, item_size: int, cfg: CaserConfig, n_users: int) -> None:
        super().__init__(item_size)
        self.hp = cfg
        d = cfg.hidden
        self.user_embeddings = nn.Embedding(max(n_users, 1), d)
        self.item_embeddings = nn.Embedding(item_size, d, padding_idx=0)
        self.conv_v = nn.Conv2d(1, cfg.nv, (cfg.L, 1))
        self.conv_h = nn.ModuleList(nn.Conv2d(1, cfg.nh, (i, d)) for i in range(1, cfg.L + 1))
        self.fc1 = nn.Linear(cfg.nv * d + cfg.nh * cfg.L, d)
        self.W2 = nn.Embedding(item_size, 2 * d)
        self.b2 = nn.Embedding(item_size, 1)

    def reset_parameters(self, gen: torch.Generator) -> None:
        super().reset_parameters(gen)
        d = self.hp.hidden
        for emb, std in ((self.user_embeddings, 1 / d), (self.item_embeddings, 1 / d), (self.W2, 1 / (2 * d))):
            emb.weight.data.normal_(0.0, std, generator=gen)
        self.b2.weight.data.zero_()

    def forward(self, input_ids: Tensor, last_only: bool = False) -> Tensor:
        """(B, L) -> (B, 1, d): the sequence part of the representation (one per sequence, no user)."""
        return self._features(input_ids)[:, None]

    def _features(self, input_ids: Tensor) -> Tensor:
        """(B, L) -> (B, d): convolutional features of the last L items."""
        img = self.item_embeddings(pad_left(input_ids, self.hp.L))[:, None]  # (B, 1, L, d)
        vert = self.conv_v(img).flatten(1)  # (B, nv * d)
        horiz = [F.relu(conv(img)).squeeze(3).amax(2) for conv in self.conv_h]  # L x (B, nh)
        z = self.drop(torch.cat([vert, *horiz], 1), self.hp.dropout)
        return F.relu(self.fc1(z))

    def user_repr(self, input_ids: Tensor, users: Tensor | None = None) -> Tensor:
        """(B, 2d + 1): [z; u; 1], scored against [W2, b2]."""
        if users is None:
            raise ValueError("Caser joins the user embedding: user_repr needs `users`")
        z = self._features(input_ids)
        return torch.cat([z, self.user_embeddings(users), torch.ones_like(z[:, :1])], 1)

    def item_weights(self) -> Tensor:
        return torch.cat([self.W2.weight, self.b2.weight], 1)  # (I, 2d + 1)

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        ce = full_ce(self.user_repr(batch.input_ids, batch.users), self.item_weights(), batch.target_pos)
        return {"loss": ce, "ce": ce}
