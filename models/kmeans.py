"""k-means as both authors' code runs it: faiss, 20 iterations, 5 restarts, seeded."""

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
