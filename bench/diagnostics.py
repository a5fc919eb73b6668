"""Cluster diagnostics: what the intent centres actually capture.

Users are assigned to centres the way the model itself assigns them (`RecModel.intent_of` on the
mean-pooled output of their training sequence). On data with planted intents the assignment is
compared with the truth (NMI, ARI); on any data we report how many centres are used, the entropy
H of their usage and the effective number of clusters exp(H) (the perplexity of the usage: k
equally used centres give k, however many others stay empty), with its share of k. The trainer
measures them at the start (after the epoch-0 hook: the initial centres) and with the
best-validation weights. Measurements, not targets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bench.data import SeqData, windows
from models.protocol import RecModel


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)
    return table


def entropy(counts: np.ndarray) -> float:
    """Shannon entropy (nats) of a vector of counts."""
    p = counts[counts > 0] / counts.sum()
    return float(0.0 - (p * np.log(p)).sum())  # 0.0, not -0.0, for a single used centre


def nmi(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information, arithmetic-mean normalisation (sklearn's default)."""
    t = _contingency(a, b)
    n = t.sum()
    pij = t / n
    pi, pj = pij.sum(1, keepdims=True), pij.sum(0, keepdims=True)
    nz = pij > 0
    mi = float((pij[nz] * np.log(pij[nz] / (pi @ pj)[nz])).sum())
    ha, hb = entropy(t.sum(1)), entropy(t.sum(0))
    if ha == 0.0 and hb == 0.0:
        return 1.0
    return mi / ((ha + hb) / 2) if ha + hb > 0 else 0.0


def _pairs(n: np.ndarray) -> np.ndarray:
    """n choose 2, elementwise (scipy.special would cost 0.3 s of import in every run process)."""
    return n * (n - 1) / 2


def ari(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index (Hubert & Arabie, 1985)."""
    t = _contingency(a, b)
    n = t.sum()
    sum_ij = _pairs(t).sum()
    sum_a, sum_b = _pairs(t.sum(1)).sum(), _pairs(t.sum(0)).sum()
    expected = sum_a * sum_b / float(_pairs(np.asarray(n)))
    top = (sum_a + sum_b) / 2
    return 1.0 if top == expected else float((sum_ij - expected) / (top - expected))


def usage(counts: np.ndarray) -> dict[str, float]:
    """Usage entropy (nats) of per-centre user counts, its maximum log(k), the effective number of
    clusters exp(entropy) and that number's share of k."""
    h, k = entropy(counts), max(len(counts), 1)
    return {"usage_entropy_nats": h, "max_usage_entropy_nats": float(np.log(k)), "effective_clusters": float(np.exp(h)),
            "effective_share": float(np.exp(h)) / k}


def _one_pass(model: RecModel, data: SeqData, device: torch.device, k: int
              ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """One encoder pass over every user's training sequence: the (U, D) means over all positions
    (as `mean_pooled_train_outputs`), and per-centre counts of the outputs at every real
    (non-padding) position and at the last position (the one that predicts), each assigned by the
    model's own rule (`intent_of` on each position's vector)."""
    starts, ends = data.train_arrays()
    inputs = torch.from_numpy(windows(data.flat, starts, np.maximum(ends, starts)))  # (U, L), left-padded
    real, last = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    means: torch.Tensor | None = None  # (U, D), filled chunk by chunk (docs/perf.md: the heap)
    with torch.inference_mode():
        for i in range(0, len(inputs), 1024):
            x = inputs[i : i + 1024].to(device)
            out = model(x)  # (C, L, D)
            if means is None:
                means = torch.empty(len(inputs), out.shape[-1], device=device)
            means[i : i + 1024] = out.mean(1)
            for counts, vectors in ((real, out[x > 0]), (last, out[:, -1])):
                idx = model.intent_of(vectors)
                if idx is not None:
                    counts += np.bincount(idx.cpu().numpy(), minlength=k)
    assert means is not None  # every dataset has users
    return means, real, last


def cluster_diagnostics(model: RecModel, data: SeqData, device: torch.device) -> dict[str, Any] | None:
    """How users spread over the model's intent centres: each user by the mean-pooled output of its
    training sequence over all positions, padding included (ICLRec's k-means input); then
    (`positions_*`, `last_*`) every real position and the last position of each sequence, one by
    one, as ELCRec's training assigns positions (by the model's own rule, `intent_of`). Where most
    positions are padding, the user-level mean is dominated by the padding's output."""
    if model.intents() == 0:
        return None  # a model without intents: skip the encoder pass
    was_training = model.training  # type: ignore[attr-defined]
    model.eval()
    reps, real, last = _one_pass(model, data, device, model.intents())
    model.train(was_training)
    with torch.no_grad():
        idx = model.intent_of(reps)
    if idx is None:
        return None
    assign = idx.cpu().numpy()
    counts = np.bincount(assign, minlength=model.intents())  # unused centres count towards the maximum
    out: dict[str, Any] = {"centres_used": int((counts > 0).sum()), **usage(counts)}
    for name, c in zip(("positions", "last"), (real, last), strict=True):
        out[f"{name}_counted"] = int(c.sum())
        out[f"{name}_centres_used"] = int((c > 0).sum())
        out[f"{name}_effective_clusters"] = usage(c)["effective_clusters"]
    if data.labels is not None:
        out["nmi"], out["ari"] = nmi(data.labels, assign), ari(data.labels, assign)
    return out
