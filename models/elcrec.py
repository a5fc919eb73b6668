"""ELCRec (Liu et al., NeurIPS 2024, "End-to-end Learnable Clustering for Intent Learning in
Recommendation").

Reference: yueliu1999/ELCRec `src/trainers.py` (ELCRecTrainer, contrast_type "Hybrid") and
`src/models.py`. Objective per batch, c = the learnable centres (k, D):

    rec + cf_weight * InfoNCE(flat(view_1 + c[nearest]), flat(view_2 + c[nearest]))     ("shift")
        + intent_weight * (InfoNCE(mean(view_1), p) + InfoNCE(mean(view_2), p)) / 2
        + alpha * (alignment + separation)

- fusion: at every position of both views the nearest centre (squared L2 to the centres as
  stored) is added ("shift") or concatenated ("concat"); gradients reach the centres through it;
- before the clustering terms the centres are L2-normalised *in place* (not through autograd);
  x = normalise(mean-pooled rec output) keeps its gradient; alignment = mean over all (user,
  centre) pairs of ||x - c||^2; separation = -mean over all k*k centre pairs, diagonal included;
- p = c[argmin ||x - c||^2], with gradient to the centres;
- centres (`init`): k-means over all users' mean-pooled output at epoch 0 ("kmeans", the authors'
  code); then trained by the optimiser.

Additions to the reference (not in the authors' code), for the sensitivity study of issue 17:
`init = "random"`: k independent N(0, I) vectors, L2-normalised, i.e. uniform on the unit sphere,
drawn from the run's parameter generator right after the encoder's weights (so the encoder starts
the same under every `init` of a seed); no pass over the data. It is the data-free baseline: what
an end-to-end learnable clustering would start from without the full-data k-means it claims to do
without. `init = "kmeanspp"`: k-means++ seeding (D^2 sampling, `models.kmeans.kmeanspp_seeds`,
seeded with the run's seed) on the same epoch-0 mean-pooled user outputs the k-means gets, without
Lloyd iterations, the chosen users' outputs L2-normalised: the data-driven seeding of k-means with
no iterations. (k users drawn uniformly, Forgy's initialisation, would sit between the two: it
uses the data, so it is no data-free baseline; not offered.)

Ablations (paper Sec. 4.4): `cluster_loss=False` drops alpha * (alignment + separation);
`intent_infonce=False` replaces the intent-assisted InfoNCE by the plain instance InfoNCE.

Deviations from the authors' code: the rec pass and both view passes run as one batched forward;
no `retain_graph=True` (nothing is backpropagated twice, so the gradients are the same); the
nearest centre of every view position is the argmax of 2 x.c - ||c||^2 (one GEMM; ||x||^2 is the
same for every centre), which picks the authors' argmin of ||x||^2 + ||c||^2 - 2 x.c except where
two centres are within float32 rounding of each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.encoder import EncoderConfig, info_nce_stacked, rec_loss, require, require_ranges
from models.iclrec import intent_loss, nearest, sq_dist
from models.kmeans import kmeans, kmeanspp_seeds
from models.protocol import Batch, EmbedUsers
from models.sasrec import SASRec, encode_views

INITS = ("kmeans", "random", "kmeanspp")


@dataclass(frozen=True)
class ELCRecConfig(EncoderConfig):
    k: int = 256  # number of learnable intent centres
    alpha: float = 1.0  # weight of the clustering loss ("trade_off" in the authors' code)
    fusion: str = "shift"  # "shift" (add nearest centre) or "concat"
    init: str = "kmeans"  # centre initialisation: "kmeans" or "kmeanspp" at epoch 0, or "random" (docstring)
    cf_weight: float = 0.1
    intent_weight: float = 0.1
    temperature: float = 1.0
    cluster_loss: bool = True  # ablation switch
    intent_infonce: bool = True  # ablation switch: fuse centres into the instance InfoNCE

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.fusion in ("shift", "concat"), f"fusion must be shift or concat, got {self.fusion!r}")
        require(self.init in INITS, f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        require_ranges(self, at_least_1=("k",), non_negative=("alpha", "cf_weight", "intent_weight"),
                       positive=("temperature",))


class ELCRec(SASRec):
    objective = "bce-1neg+instance-infonce+intent-clustering"

    def __init__(self, item_size: int, cfg: ELCRecConfig) -> None:
        super().__init__(item_size, cfg)
        self.hp = cfg
        self.cluster_centers = nn.Parameter(torch.zeros(cfg.k, cfg.hidden))

    def reset_parameters(self, gen: torch.Generator) -> None:
        super().reset_parameters(gen)
        with torch.no_grad():  # the "random" init, drawn under every init so that the encoder's stays the same
            rnd = torch.randn(self.cluster_centers.shape, generator=gen)
            self.cluster_centers.copy_(F.normalize(rnd, p=2, dim=1))

    def epoch_start(self, epoch: int, embed_users: EmbedUsers, seed: int) -> None:
        if epoch != 0 or self.hp.init == "random":  # "random" centres were drawn by reset_parameters
            return
        seeding = kmeans if self.hp.init == "kmeans" else kmeanspp_seeds
        raw = seeding(embed_users(), self.hp.k, seed)  # (k, D) in the space of the raw user outputs
        with torch.no_grad():
            self.cluster_centers.copy_(F.normalize(torch.from_numpy(raw), p=2, dim=1))

    def intents(self) -> int:
        return self.hp.k

    def intent_of(self, user_repr_mean: Tensor) -> Tensor | None:
        c = F.normalize(self.cluster_centers.detach(), p=2, dim=1)
        return nearest(F.normalize(user_repr_mean, p=2, dim=1), c)

    def fused_instance_cl(self, views: Tensor) -> Tensor:
        """Views (2B, L, D) + their nearest centres, flattened, contrasted with InfoNCE."""
        c = self.cluster_centers
        if self.hp.intent_infonce:
            n, length, d = views.shape
            idx = nearest(views.reshape(-1, d), c)  # (2B*L,); the choice of centre carries no gradient
            near = F.embedding(idx, c).view(n, length, d)  # c[idx]; its backward is a fast index_add
            views = views + near if self.hp.fusion == "shift" else torch.cat([views, near], -1)
        return info_nce_stacked(views.flatten(1), self.hp.temperature)  # (2B, L*D)

    def cluster_terms(self, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalises the centres in place, then returns alignment, separation, nearest index."""
        with torch.no_grad():
            self.cluster_centers.copy_(F.normalize(self.cluster_centers, p=2, dim=1))
        c = self.cluster_centers
        x = F.normalize(out.mean(1), p=2, dim=1)  # (B, D), keeps its gradient
        d_xc = sq_dist(x, c)  # (B, k)
        return d_xc.mean(), -sq_dist(c, c).mean(), d_xc.argmin(-1)

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        out, (inst, pcl) = encode_views(self, batch, copies=2)
        rec = rec_loss(self, out, batch.target_pos, batch.target_neg)
        cl = self.fused_instance_cl(inst)
        align, sep, idx = self.cluster_terms(out)
        icl = intent_loss(pcl, F.embedding(idx, self.cluster_centers), self.hp.temperature)
        loss = rec + self.hp.cf_weight * cl + self.hp.intent_weight * icl
        if self.hp.cluster_loss:
            loss = loss + self.hp.alpha * (align + sep)
        return {"loss": loss, "rec": rec, "instance_cl": cl, "intent_cl": icl,
                "alignment": align, "separation": sep}
