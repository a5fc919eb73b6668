"""ICLRec (Chen et al., WWW 2022, "Intent Contrastive Learning for Sequential Recommendation").

Reference: salesforce/ICLRec `src/trainers.py` (ICLRecTrainer, contrast_type "Hybrid"),
`src/modules.py` (NCELoss, PCLoss), `src/models.py` (KMeans). Objective per batch:

    rec + cf_weight * InfoNCE(flat(view_1), flat(view_2))
        + intent_weight * (InfoNCE(mean(view_1), p) + InfoNCE(mean(view_2), p)) / 2

where p is the L2-normalised nearest raw k-means centroid of the user's detached, mean-pooled rec
output. k-means (faiss, k, 20 iterations, 5 restarts, seed = run seed) runs over every training
sequence at the start of every epoch (`epoch_start`).

Deviations: the three encoder passes (rec, instance views, intent views) run as one batched
forward; the centroid search is a torch argmin instead of a faiss IndexFlatL2 query (same nearest
centroid). Centroids are not part of the state dict, so the authors' checkpoints load strictly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from models.encoder import EncoderConfig, info_nce, info_nce_stacked, rec_loss, require_ranges
from models.fast import linear
from models.kmeans import kmeans
from models.protocol import Batch, EmbedUsers
from models.sasrec import SASRec, encode_views


@dataclass(frozen=True)
class ICLRecConfig(EncoderConfig):
    k: int = 256  # number of intents (k-means clusters)
    cf_weight: float = 0.1  # instance InfoNCE
    intent_weight: float = 0.1  # intent InfoNCE
    temperature: float = 1.0
    kmeans_iters: int = 20
    kmeans_redo: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        require_ranges(self, at_least_1=("k", "kmeans_iters", "kmeans_redo"),
                       non_negative=("cf_weight", "intent_weight"), positive=("temperature",))


def sq_dist(x: Tensor, c: Tensor) -> Tensor:
    """(N, D), (K, D) -> (N, K) squared L2 distances, expanded as the authors do (xx + cc - 2xc)."""
    return (x * x).sum(-1, keepdim=True) + (c * c).sum(-1)[None] - 2 * x @ c.T


def nearest(x: Tensor, c: Tensor) -> Tensor:
    """(N, D), (K, D) -> (N,) index of the nearest row of c in squared L2, without grad.

    argmin_j ||x - c_j||^2 = argmax_j (2 x.c_j - ||c_j||^2): ||x||^2 is the same for every j, so it
    is left out, and the rest is one GEMM with the bias added inside it (oneDNN on CPU); `max` over
    the last dimension is faster than `argmin` on CPU. Equal to `sq_dist(x, c).argmin(-1)` except
    where two centres are within float32 rounding of each other.
    """
    with torch.no_grad():
        return linear(x, 2 * c, -(c * c).sum(-1)).max(-1).indices


def intent_loss(views_out: Tensor, proto: Tensor, temperature: float) -> Tensor:
    """Views (2B, L, D) are mean-pooled and contrasted with their prototypes (B, D)."""
    m1, m2 = views_out.mean(1).chunk(2)
    return (info_nce(m1, proto, temperature) + info_nce(m2, proto, temperature)) / 2


class ICLRec(SASRec):
    objective = "bce-1neg+instance-infonce+intent-infonce"

    def __init__(self, item_size: int, cfg: ICLRecConfig) -> None:
        super().__init__(item_size, cfg)
        self.hp = cfg
        self.register_buffer("centroids", torch.zeros(0, cfg.hidden), persistent=False)

    def set_centroids(self, raw: Tensor) -> None:
        """Raw k-means centroids (k, D); prototypes are their normalised rows."""
        self.centroids = raw.detach().to(self.item_embeddings.weight.device).float()

    def epoch_start(self, epoch: int, embed_users: EmbedUsers, seed: int) -> None:
        x = embed_users()
        self.set_centroids(torch.from_numpy(kmeans(x, self.hp.k, seed, self.hp.kmeans_iters, self.hp.kmeans_redo)))

    def intents(self) -> int:
        return self.hp.k

    def intent_of(self, user_repr_mean: Tensor) -> Tensor | None:
        if self.centroids.numel() == 0:
            return None
        return sq_dist(user_repr_mean, self.centroids).argmin(-1)

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        if self.centroids.numel() == 0:
            raise RuntimeError("ICLRec needs centroids: epoch_start() runs k-means before training")
        out, (inst, pcl) = encode_views(self, batch, copies=2)
        rec = rec_loss(self, out, batch.target_pos, batch.target_neg)
        cl = info_nce_stacked(inst.flatten(1), self.hp.temperature)  # (2B, L*D)
        idx = sq_dist(out.detach().mean(1), self.centroids).argmin(-1)  # (B,)
        proto = F.normalize(self.centroids, p=2, dim=1)[idx]  # (B, D)
        icl = intent_loss(pcl, proto, self.hp.temperature)
        loss = rec + self.hp.cf_weight * cl + self.hp.intent_weight * icl
        return {"loss": loss, "rec": rec, "instance_cl": cl, "intent_cl": icl}

