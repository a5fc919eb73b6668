"""k-means as both authors' code runs it (faiss, 20 iterations, 5 restarts, seeded), and k-means++
seeding alone (an initialisation option of ELCRec's centres, not in the authors' code)."""

from __future__ import annotations

import faiss
import numpy as np


def kmeans(x: np.ndarray, k: int, seed: int, niter: int = 20, nredo: int = 5) -> np.ndarray:
    """(N, D) float32 points -> (k, D) raw centroids (faiss.Clustering, as the authors' KMeans)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if n < k:
        raise ValueError(f"k-means needs at least k={k} points, got {n}; lower k")
    clus = faiss.Clustering(d, k)
    clus.niter, clus.nredo, clus.seed = niter, nredo, seed
    clus.max_points_per_centroid, clus.min_points_per_centroid = 4096, 0
    clus.verbose = False
    index = faiss.IndexFlatL2(d)
    clus.train(x, index)
    return faiss.vector_to_array(clus.centroids).reshape(k, d).copy()


def kmeanspp_seeds(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(N, D) points -> (k, D): k of the points chosen by k-means++ seeding (Arthur & Vassilvitskii,
    2007), without Lloyd iterations. The first uniformly at random; each next one with probability
    proportional to its squared L2 distance to the nearest point chosen so far (D^2 sampling; the
    plain rule, not scikit-learn's greedy variant that keeps the best of several draws). Once every
    point coincides with a chosen one (fewer than k distinct points), the rest are drawn uniformly
    from the points not yet chosen. Deterministic for a given seed."""
    pts = np.asarray(x, dtype=np.float64)  # float64: distances of nearby points must not round to 0
    n = len(pts)
    if n < k:
        raise ValueError(f"k-means++ needs at least k={k} points, got {n}; lower k")
    rng = np.random.default_rng(seed)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = rng.integers(n)
    d2 = ((pts - pts[chosen[0]]) ** 2).sum(1)  # (N,) squared distance to the nearest chosen point
    for i in range(1, k):
        cum = np.cumsum(d2)
        if cum[-1] > 0:
            # inverse-CDF draw below the total: searchsorted never lands on a zero-weight point
            chosen[i] = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
        else:
            rest = np.setdiff1d(np.arange(n), chosen[:i])
            chosen[i] = rest[rng.integers(len(rest))]
        d2 = np.minimum(d2, ((pts - pts[chosen[i]]) ** 2).sum(1))
    return np.asarray(x, dtype=np.float32)[chosen].copy()
