"""BPR-MF (Rendle et al., UAI 2009, "BPR: Bayesian Personalized Ranking from Implicit Feedback").

Reference: RUCAIBox/RecBole `recbole/model/general_recommender/bpr.py` (score <e_u, e_i>, loss
-log sigmoid(x_ui - x_uj) averaged over the batch, one uniform negative per pair, dim 64); ELCRec
cites xiangwang1223/neural_graph_collaborative_filtering `NGCF/BPRMF.py`.

Not sequential: trained on (user, item) pairs of each user's training items (all but the last two)
with a negative the user never interacted with, and scored by full ranking like every model (the
history is ignored, the user's row gives the representation).

Deviations: embeddings start N(0, 0.01) (RecBole: Xavier-normal, whose scale depends on the number
of users; a small start lets the first epochs' signal dominate the random scores); the L2 term
(`reg`, NGCF's decay on the batch's embeddings, divided by the batch size) defaults to 0 as in
RecBole.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from models.base import ZooModel
from models.encoder import require_ranges
from models.protocol import Batch


@dataclass(frozen=True)
class BPRMFConfig:
    hidden: int = 64
    reg: float = 0.0  # L2 weight on the batch's embeddings

    def __post_init__(self) -> None:
        require_ranges(self, at_least_1=("hidden",), non_negative=("reg",))


class BPRMF(ZooModel):
    samples = "pairs"
    objective = "bpr"
    needs_users = True
    init_std = 0.01

    def __init__(self, item_size: int, cfg: BPRMFConfig, n_users: int) -> None:
        super().__init__(item_size)
        self.hp = cfg
        self.user_embeddings = nn.Embedding(max(n_users, 1), cfg.hidden)
        self.item_embeddings = nn.Embedding(item_size, cfg.hidden)

    def forward(self, input_ids: Tensor, last_only: bool = False) -> Tensor:
        """(B, L) -> (B, L, D) item embeddings (BPR-MF has no sequence encoder)."""
        out = self.item_embeddings(input_ids)
        return out[:, -1:] if last_only else out

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        u = self.user_embeddings(batch.users)  # (B, D)
        pos, neg = self.item_embeddings(batch.target_pos), self.item_embeddings(batch.target_neg)
        bpr = -F.logsigmoid((u * pos).sum(-1) - (u * neg).sum(-1)).mean()
        if self.hp.reg == 0.0:
            return {"loss": bpr, "bpr": bpr}
        l2 = (u.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / (2 * len(u))
        return {"loss": bpr + self.hp.reg * l2, "bpr": bpr, "l2": l2}

    def user_repr(self, input_ids: Tensor, users: Tensor | None = None) -> Tensor:
        if users is None:
            raise ValueError("BPR-MF scores users by their row: user_repr needs `users`")
        return self.user_embeddings(users)

    def item_weights(self) -> Tensor:
        return self.item_embeddings.weight

    def extra_repr(self) -> str:
        return f"users={self.user_embeddings.num_embeddings}, items={self.item_size}"

