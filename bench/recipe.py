"""The authors' computational recipe of one ELCRec training step, in plain torch: a same-machine
speed baseline for `bench perf`.

The issue's speed-up targets compare against the authors' code timed on another machine (see
shared/reference/README.md); a speed-up is only meaningful on one machine. Their code is not run here,
so this module re-states how it computes (facts from the reference and from the public code,
yueliu1999/ELCRec and salesforce/ICLRec `src/modules.py`, `src/trainers.py`; our own code) and
`bench perf` times it next to ours on the same data, weights and machine:

- five encoder passes per batch: the rec pass (B), then the two views (2B) once for the instance
  InfoNCE and once more for the intent InfoNCE;
- separate q/k/v linears through `F.linear`, heads by reshape and permute, scores scaled after the
  product, the additive -10000 mask, `F.dropout` (global RNG) for every dropout;
- LayerNorm written by hand (mean, variance, square root: TF style) and the exact GELU from `erf`;
- InfoNCE built from three products (z1 z1^T, z2 z2^T, z1 z2^T) and concatenations;
- squared distances as ||x||^2 and ||c||^2 repeated to full (N, K) size plus -2 x.c, for the nearest
  centre of every view position and of every user.

Where the authors' code is slower in other ways, this recipe takes the faster choice, so the speed-up
it yields is a lower bound: our fused Adam, our vectorised batches (their per-sample Python loading is
~3% of their epoch) and our validation (theirs takes ~10 s per epoch here, with autograd on), and no
`retain_graph=True` (memory, not time). Same objective as `models/elcrec.py`: tests check that the
loss terms and gradients agree in eval mode and that the authors' fixture holds.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.elcrec import ELCRec
from models.encoder import SeqEncoder, _Layer, rec_loss
from models.protocol import Batch


def _layer_norm(x: Tensor, ln: nn.LayerNorm) -> Tensor:
    u = x.mean(-1, keepdim=True)
    var = (x - u).pow(2).mean(-1, keepdim=True)
    return ln.weight * ((x - u) / torch.sqrt(var + ln.eps)) + ln.bias


def _gelu(x: Tensor) -> Tensor:
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _layer(model: SeqEncoder, i: int) -> _Layer:
    return cast(_Layer, model.item_encoder.layer[i])


def _attention(model: SeqEncoder, i: int, x: Tensor, mask: Tensor) -> Tensor:
    """One self-attention sublayer, (B, L, D) -> (B, L, D), post-norm with its residual."""
    att = _layer(model, i).attention
    b, n, d = x.shape
    h = att.heads
    q, k, v = (F.linear(x, m.weight, m.bias).view(b, n, h, d // h).permute(0, 2, 1, 3)  # (B, h, L, dh)
               for m in (att.query, att.key, att.value))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // h) + mask  # (B, h, L, L)
    probs = F.dropout(torch.softmax(scores, dim=-1), model.cfg.attn_dropout, model.training)
    ctx = (probs @ v).permute(0, 2, 1, 3).contiguous().view(b, n, d)
    out = F.dropout(F.linear(ctx, att.dense.weight, att.dense.bias), model.cfg.dropout, model.training)
    return _layer_norm(out + x, att.LayerNorm)


def _feed_forward(model: SeqEncoder, i: int, x: Tensor) -> Tensor:
    ff = _layer(model, i).intermediate
    inner = _gelu(F.linear(x, ff.dense_1.weight, ff.dense_1.bias))  # (B, L, 4D)
    out = F.dropout(F.linear(inner, ff.dense_2.weight, ff.dense_2.bias), model.cfg.dropout, model.training)
    return _layer_norm(out + x, ff.LayerNorm)


def encode(model: SeqEncoder, ids: Tensor) -> Tensor:
    """(B, L) item ids -> (B, L, D), the model's own weights run the plain way."""
    n = ids.shape[1]
    x = model.item_embeddings(ids) + model.position_embeddings.weight[model.cfg.max_len - n:]
    x = F.dropout(_layer_norm(x, model.LayerNorm), model.cfg.dropout, model.training)
    keep = (ids > 0)[:, None, None, :] & torch.tril(torch.ones(n, n, dtype=torch.bool, device=ids.device))
    mask = (1.0 - keep.float()) * -10000.0  # (B, 1, L, L)
    for i in range(len(model.item_encoder.layer)):
        x = _feed_forward(model, i, _attention(model, i, x, mask))
    return x


def info_nce(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """InfoNCE of (B, F) pairs from three products, as the authors assemble it."""
    s11, s22, s12 = z1 @ z1.T / temperature, z2 @ z2.T / temperature, z1 @ z2.T / temperature
    eye = torch.eye(z1.shape[0], dtype=torch.bool, device=z1.device)
    s11, s22 = s11.masked_fill(eye, float("-inf")), s22.masked_fill(eye, float("-inf"))
    logits = torch.cat([torch.cat([s12, s11], -1), torch.cat([s22, s12.T], -1)])  # (2B, 2B)
    return F.cross_entropy(logits, torch.arange(2 * z1.shape[0], device=z1.device))


def _sq_dist(x: Tensor, c: Tensor) -> Tensor:
    """(N, D), (K, D) -> (N, K), both squared norms repeated to full size first."""
    n, k = x.shape[0], c.shape[0]
    return (x * x).sum(-1).reshape(-1, 1).repeat(1, k) + (c * c).sum(-1).reshape(1, -1).repeat(n, 1) - 2 * x @ c.T


def elcrec_losses(model: ELCRec, batch: Batch) -> dict[str, Tensor]:
    """ELCRec's loss terms of one batch, computed with five plain encoder passes."""
    hp, c = model.hp, model.cluster_centers
    out = encode(model, batch.input_ids)  # (B, L, D)
    rec = rec_loss(model, out, batch.target_pos, batch.target_neg)
    views = torch.cat([batch.view_1, batch.view_2])  # (2B, L)
    inst = encode(model, views)  # (2B, L, D)
    if hp.intent_infonce:  # the distances are built inside the autograd graph, as the authors do
        idx = _sq_dist(inst.reshape(-1, inst.shape[-1]), c).argmin(-1)
        near = c[idx].view(inst.shape)
        inst = inst + near if hp.fusion == "shift" else torch.cat([inst, near], -1)
    z1, z2 = inst.flatten(1).chunk(2)
    cl = info_nce(z1, z2, hp.temperature)
    with torch.no_grad():
        c.copy_(F.normalize(c, p=2, dim=1))
    x = F.normalize(out.mean(1), p=2, dim=1)  # (B, D)
    d_xc = _sq_dist(x, c)
    align, sep = d_xc.mean(), -_sq_dist(c, c).mean()
    proto = c[d_xc.argmin(-1)]
    m1, m2 = encode(model, views).mean(1).chunk(2)  # the views' second pass
    icl = (info_nce(m1, proto, hp.temperature) + info_nce(m2, proto, hp.temperature)) / 2
    loss = rec + hp.cf_weight * cl + hp.intent_weight * icl
    if hp.cluster_loss:
        loss = loss + hp.alpha * (align + sep)
    return {"loss": loss, "rec": rec, "instance_cl": cl, "intent_cl": icl, "alignment": align, "separation": sep}
