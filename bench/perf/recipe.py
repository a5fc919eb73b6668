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

The rest of their epoch is re-stated too (`train_batches`, `validate`):

- training data built per user in Python (their `Dataset.__getitem__`: a negative per position by
  rejection from the user's item set, two views by a uniformly chosen crop/mask/reorder on lists,
  padding, one `torch.tensor` per field) and stacked by torch's default collate, users shuffled;
- `torch.optim.Adam` with its defaults on CPU (a loop over the parameters), `backward(retain_graph=True)`;
- validation per batch of 256 users: the eval-mode forward over all 50 positions with autograd on,
  full scores to numpy, the seen items zeroed through a scipy CSR row slice made dense, top 20 by
  `argpartition` + `argsort`, results grown with `np.append`, HR/NDCG@5/20 by per-user Python loops.

Deviations: a seeded `random.Random` replaces their global `random`, and an empty training input stays
empty (their crop/reorder raise on it; Beauty has none). Same objective as `models/elcrec.py`: tests
check that the loss terms and gradients agree in eval mode, that the authors' fixture holds, and that
the validation gives our evaluator's metrics.
"""

from __future__ import annotations

import copy
import math
import random
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import csr_matrix
from torch import Tensor, nn
from torch.utils.data import default_collate

from bench.batches import BETA, GAMMA, TAO
from bench.data import MAX_LEN, SeqData
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


# --- data and validation, per sample in Python as their Dataset / DataLoader / trainer do ---


def user_lists(data: SeqData) -> list[list[int]]:
    """Every user's items as a Python list, the form their code holds the dataset in."""
    return [data.flat[a:b].tolist() for a, b in zip(data.starts, data.ends, strict=True)]


def _neg_sample(seen: set[int], item_size: int, rnd: random.Random) -> int:
    item = rnd.randint(1, item_size - 1)
    while item in seen:
        item = rnd.randint(1, item_size - 1)
    return item


def _padded(seq: list[int]) -> list[int]:
    return ([0] * (MAX_LEN - len(seq)) + seq)[-MAX_LEN:]


def _view(seq: list[int], rnd: random.Random) -> list[int]:
    """One augmented view of a list: crop, mask or reorder, drawn uniformly."""
    s = copy.deepcopy(seq)
    n, op = len(s), rnd.randint(0, 2)
    if n == 0:
        return s
    if op == 1:  # mask
        for i in rnd.sample(range(n), k=int(GAMMA * n)):
            s[i] = 0
        return s
    size = int((TAO if op == 0 else BETA) * n)
    start = rnd.randint(0, n - size - 1)
    if op == 0:  # crop, at least one item
        return s[start : start + max(size, 1)]
    part = s[start : start + size]
    rnd.shuffle(part)
    return s[:start] + part + s[start + size :]


def _rec_sample(user: int, items: list[int], stop: int, item_size: int, rnd: random.Random) -> tuple[Tensor, ...]:
    """(user, input, next items, negatives, answer) with input = items[:stop], each padded to 50."""
    inp = copy.deepcopy(items[:stop])
    seen = set(items)
    neg = [_neg_sample(seen, item_size, rnd) for _ in inp]
    answer = [items[stop]] if stop == len(items) - 2 else [0]  # validation's target; unused in training
    fields = (user, _padded(inp), _padded(items[1 : stop + 1]), _padded(neg), answer)
    return tuple(torch.tensor(f, dtype=torch.long) for f in fields)


def train_batches(users: list[list[int]], item_size: int, rnd: random.Random, size: int = 256) -> list[Batch]:
    """One epoch's training batches: users shuffled, every sample built in Python, then collated."""
    order = list(range(len(users)))
    rnd.shuffle(order)
    out = []
    for lo in range(0, len(order), size):
        samples = []
        for u in order[lo : lo + size]:
            items, stop = users[u], len(users[u]) - 3
            views = [torch.tensor(_padded(_view(items[:stop], rnd)), dtype=torch.long) for _ in range(2)]
            samples.append((_rec_sample(u, items, stop, item_size, rnd), [views], torch.tensor(items[-2])))
        rec, (views,), _ = default_collate(samples)
        out.append(Batch(input_ids=rec[1], target_pos=rec[2], target_neg=rec[3], view_1=views[0], view_2=views[1]))
    return out


def seen_matrix(users: list[list[int]], item_size: int) -> csr_matrix:
    """(U, item_size) CSR of every user's items but the last two: the items zeroed in validation."""
    rows = [u for u, items in enumerate(users) for _ in items[:-2]]
    cols = [i for items in users for i in items[:-2]]
    return csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(users), item_size))


def _hit_ndcg(answers: np.ndarray, preds: np.ndarray, k: int) -> tuple[float, float]:
    """Recall@k and NDCG@k by per-user Python loops over the top-k lists."""
    hits = ndcg = 0.0
    for actual, pred in zip(answers.tolist(), preds.tolist(), strict=True):
        hits += len(set(actual) & set(pred[:k])) / len(actual)
        idcg = sum(1.0 / math.log(i + 2, 2) for i in range(min(k, len(actual))))
        ndcg += sum(int(pred[j] in set(actual)) / math.log(j + 2, 2) for j in range(k)) / idcg
    return hits / len(preds), ndcg / len(preds)


def _top20(rating: np.ndarray) -> np.ndarray:
    """(B, I) scores -> (B, 20) item ids, best first."""
    top = np.argpartition(rating, -20)[:, -20:]
    rows = np.arange(len(rating))
    order = np.argsort(rating[rows[:, None], top])[rows, ::-1]
    return cast(np.ndarray, top[rows[:, None], order])


def validate(model: SeqEncoder, users: list[list[int]], seen: csr_matrix, rnd: random.Random,
             size: int = 256) -> dict[str, float]:
    """Validation HR/NDCG@5/20 (target: each user's second-to-last item), computed the authors' way."""
    was_training = model.training
    model.eval()
    item_size = model.item_embeddings.weight.shape[0]
    preds, answers = np.zeros((0, 20), dtype=np.int64), np.zeros((0, 1), dtype=np.int64)
    for lo in range(0, len(users), size):
        samples = [_rec_sample(u, users[u], len(users[u]) - 2, item_size, rnd)
                   for u in range(lo, min(lo + size, len(users)))]
        uid, ids, _, _, answer = default_collate(samples)
        out = encode(model, ids)[:, -1, :]  # (B, D), autograd on
        rating = (out @ model.item_embeddings.weight.T).cpu().data.numpy().copy()  # (B, I)
        rating[seen[uid.numpy()].toarray() > 0] = 0
        preds = np.append(preds, _top20(rating), axis=0)
        answers = np.append(answers, answer.numpy(), axis=0)
    model.train(was_training)
    (h5, n5), (h20, n20) = _hit_ndcg(answers, preds, 5), _hit_ndcg(answers, preds, 20)
    return {"HR@5": h5, "NDCG@5": n5, "HR@20": h20, "NDCG@20": n20}
