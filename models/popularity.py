"""Most-popular ranking: every user gets the items ordered by training-interaction count.

Not trainable and not in the registry; it is the floor a sequential model must clear. It plugs
into the same evaluator: user representation 1, item "embedding" = its count. The counts come
from the caller (`bench.data.train_counts`): models never import the harness.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


class Popularity(nn.Module):
    def __init__(self, item_counts: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("counts", torch.as_tensor(item_counts, dtype=torch.float32)[:, None])  # (I, 1)

    def user_repr(self, input_ids: Tensor, users: Tensor | None = None) -> Tensor:
        return torch.ones(input_ids.shape[0], 1)

    def item_weights(self) -> Tensor:
        return self.counts  # type: ignore[return-value]

