"""gSASRec (Petrov & Macdonald, RecSys 2023, "gSASRec: Reducing Overconfidence in Sequential
Recommendation Trained with Negative Sampling").

Reference: asash/gSASRec-pytorch `gsasrec.py`, `train_gsasrec.py`: per position the positive and N
uniformly sampled negatives are scored against the sequence output; gBCE raises the positive's
probability to the power beta = alpha (t (1 - 1/alpha) + 1/alpha), alpha = N / (items - 1), and the
binary cross-entropy of those N + 1 logits is averaged over logits and real positions. t = 0.75 and
N = 256 are the reference's settings. `loss="sampled-softmax"` is the plain sampled softmax
(RecTools' `blondered/transformer_benchmark`): cross-entropy over [positive, negatives].

Training samples: one sequence per user, a target at every position (the reference trains on
sequences the same way).

Deviations: the encoder is the ICLRec code base's (`models.encoder.SeqEncoder`, post-norm) rather
than the reference's pre-norm SASRec; negatives are drawn from the run's generator, uniformly over
item ids 1..item_size-2 (a negative may equal the positive, as in the reference); the gBCE positive
term is written in closed form, -beta log sigmoid(s), instead of the reference's clamped
log(1 / (sigmoid(s)^-beta - 1)) logit (equal away from the 1e-10 clamps).

Known behaviour on Beauty (issue 16; figures from `scripts/probes/gsasrec_collapse.py`, seed 1):
with 256 negatives the model first learns a user-independent representation. Early on every logit's
gradient is sigmoid(s) ~ 1/2, so the 256 negatives' push of all scores down outweighs the positive's
pull about 500 to 1 (beta ~ 0.27), and the cheapest descent makes every user's output the same
vector (mean cosine between distinct users' outputs 0.46 at start, 0.999 after 25 batches, 0.998
after 50; with the reference's initialisation 0.46 -> 0.99 after 25; with that initialisation and
one negative instead of 256, 0.47 after 25 and 0.70 after 75). The quick profile (20 epochs) climbs
out slowly and flattens at validation NDCG@20 0.005-0.006 (sasrec_ce: 0.079). The reference's
initialisation (N(0, 1) embeddings, torch's default Linear) on this encoder did not change that in a
3-epoch check (validation NDCG@20 0.0003, 0.0004, 0.0004; N(0, 1) embeddings alone: 0.0006 each
epoch); N(0, 1) for every weight did (0.0013, 0.0027, 0.0044 against 0.0003, 0.0002, 0.0002 with the
model's own N(0, 0.02)), which no reference does. `loss="sampled-softmax"`, invariant to a shift of
all scores, rises the same way at first (0.93 after 25 batches, 0.99 after 50) but leaves the
collapse within the first epoch (0.72 after 75) and learns (validation NDCG@20 0.011, 0.016, 0.026
in 3 epochs). The reference's own encoder (pre-norm blocks, final LayerNorm, torch's default
initialisation) collapses like this one (0.44 -> 0.92 after 25 batches, 0.999 after 75; the port
lives in the probe, not in the registry), so the objective, not this encoder, is the cause; the
reference trains for far longer (`config.py`: at most 10,000 epochs, patience 200 epochs; its ML-1M
config: 100 batches an epoch). The zoo keeps the shared encoder, so that gSASRec differs from
SASRec-CE by its loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from models import fast
from models.encoder import EncoderConfig, require, require_ranges
from models.protocol import Batch
from models.sasrec import SASRec

LOSSES = ("gbce", "sampled-softmax")


@dataclass(frozen=True)
class GSASRecConfig(EncoderConfig):
    negatives: int = 256
    t: float = 0.75  # gBCE calibration: 0 = plain BCE, 1 = fully calibrated
    loss: str = "gbce"

    def __post_init__(self) -> None:
        super().__post_init__()
        require_ranges(self, at_least_1=("negatives",))
        require(0.0 <= self.t <= 1.0, f"t must be in [0, 1], got {self.t}")
        require(self.loss in LOSSES, f"loss must be one of {LOSSES}, got {self.loss!r}")


def gbce_beta(negatives: int, items: int, t: float) -> float:
    alpha = negatives / (items - 1)
    return alpha * (t * (1 - 1 / alpha) + 1 / alpha)


def gbce(pos: Tensor, neg: Tensor, beta: float) -> Tensor:
    """pos (P,), neg (P, N) logits of the real positions -> gBCE averaged over the N + 1 logits."""
    per_position = -beta * F.logsigmoid(pos) + F.softplus(neg).sum(-1)  # -log(1 - sigmoid(x)) = softplus(x)
    return (per_position / (neg.shape[1] + 1)).mean()


def sampled_softmax(pos: Tensor, neg: Tensor) -> Tensor:
    """Cross-entropy of the positive among [positive, negatives]: pos (P,), neg (P, N)."""
    return (torch.logsumexp(torch.cat([pos[:, None], neg], 1), 1) - pos).mean()


class GSASRec(SASRec):
    def __init__(self, item_size: int, cfg: GSASRecConfig) -> None:
        super().__init__(item_size, cfg)
        self.hp = cfg
        self.objective = cfg.loss

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        h, target = fast.at_targets(self, batch.input_ids, batch.target_pos)  # (P, D), (P,): positions with a target
        neg_ids = torch.randint(1, self.item_size - 1, (h.shape[0], self.hp.negatives), generator=self.generator,
                                device=h.device)
        emb = self.item_embeddings
        pos = (h * emb(target)).sum(-1)  # (P,)
        neg = torch.einsum("pd,pnd->pn", h, emb(neg_ids))  # (P, N)
        if self.hp.loss == "gbce":
            loss = gbce(pos, neg, gbce_beta(self.hp.negatives, self.item_size - 2, self.hp.t))
        else:
            loss = sampled_softmax(pos, neg)
        return {"loss": loss, self.hp.loss: loss}
