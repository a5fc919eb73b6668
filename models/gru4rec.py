"""GRU4Rec (Hidasi et al., ICLR 2016, "Session-based Recommendations with Recurrent Neural Networks")
in the variant with softmax cross-entropy over all items.

Reference: RUCAIBox/RecBole `recbole/model/sequential_recommender/gru4rec.py` (item embedding 64,
embedding dropout 0.3, one GRU layer of 128 units, a dense layer back to 64, scores against the item
embeddings, CE over all items); the author's port hidasib/GRU4Rec_PyTorch_Official
`gru4rec_pytorch.py` trains session-parallel mini-batches with a target at every step, which is what
the "sequence" regime gives here (one sequence per user, the next item at every position).

Deviations: the dense layer starts Xavier-uniform (RecBole: PyTorch's default); RecBole trains on
prefix samples with the loss at the last position; the official code
uses sampled negatives with cross-entropy or BPR-max and no dense layer. Padding is skipped: the GRU
runs over the real items only (packed sequences), so the left padding of a window never enters its
state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.base import ZooModel, full_ce
from models.encoder import require, require_ranges
from models.protocol import Batch


@dataclass(frozen=True)
class GRU4RecConfig:
    hidden: int = 64  # item embedding size
    gru_hidden: int = 128
    layers: int = 1
    dropout: float = 0.3  # on the item embeddings

    def __post_init__(self) -> None:
        require_ranges(self, at_least_1=("hidden", "gru_hidden", "layers"))
        require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


class GRU4Rec(ZooModel):
    samples = "sequence"
    objective = "ce-full"

    def __init__(self, item_size: int, cfg: GRU4RecConfig) -> None:
        super().__init__(item_size)
        self.hp = cfg
        self.item_embeddings = nn.Embedding(item_size, cfg.hidden, padding_idx=0)
        self.gru = nn.GRU(cfg.hidden, cfg.gru_hidden, cfg.layers, batch_first=True)
        self.dense = nn.Linear(cfg.gru_hidden, cfg.hidden)

    def reset_parameters(self, gen: torch.Generator) -> None:
        """RecBole's initialisation: Xavier-normal item embeddings, Xavier-uniform GRU weights (with
        N(0, 0.02) embeddings the scores start ~1e-5 and CE barely moves in a short run)."""
        super().reset_parameters(gen)
        nn.init.xavier_normal_(self.item_embeddings.weight.data, generator=gen)
        nn.init.xavier_uniform_(self.dense.weight.data, generator=gen)

    def forward(self, input_ids: Tensor, last_only: bool = False) -> Tensor:
        """(B, L) left-padded -> (B, L, D) outputs at their positions (padding positions carry no state)."""
        n = input_ids.shape[1]
        lengths = (input_ids > 0).sum(1)  # (B,)
        pads = (n - lengths)[:, None]
        cols = torch.arange(n, device=input_ids.device)[None]
        left = input_ids.gather(1, (cols + pads) % n)  # real items first: packing reads a prefix
        x = self.drop(self.item_embeddings(left), self.hp.dropout)  # (B, L, D)
        packed = pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=n)  # (B, L, H)
        out = self.dense(states).gather(1, ((cols - pads) % n)[..., None].expand(-1, -1, self.hp.hidden))
        return out[:, -1:] if last_only else out

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        ce = full_ce(self(batch.input_ids), self.item_embeddings.weight, batch.target_pos)
        return {"loss": ce, "ce": ce}

    def user_repr(self, input_ids: Tensor, users: Tensor | None = None) -> Tensor:
        return self(input_ids, last_only=True)[:, -1]

    def item_weights(self) -> Tensor:
        return self.item_embeddings.weight
