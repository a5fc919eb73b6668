"""Adam (Kingma & Ba, 2015) on torch's fused kernel, without constructing a `torch.optim` optimizer.

`torch.optim.Adam(fused=True)` runs the same kernel (`torch._fused_adam_`), but building any
`torch.optim` optimizer imports `torch._dynamo` (about 1.1 s on the 2-core CPU), which every run
process paid at start-up. This is the update the runs need: one parameter group, no amsgrad, no
maximize, optional L2 weight decay as in `torch.optim.Adam`. Its steps are bit-identical to
`torch.optim.Adam(fused=True)` (tests/test_optim.py checks it), and its state saves and loads
for resumable runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


class Adam:
    def __init__(self, params: Iterable[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 weight_decay: float = 0.0, eps: float = 1e-8) -> None:
        # the checks of torch.optim.Adam: a bad setting crashes the run before its first step
        if lr < 0.0 or eps < 0.0 or weight_decay < 0.0:
            raise ValueError(f"Invalid learning rate, eps or weight decay: {lr}, {eps}, {weight_decay}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Invalid beta parameters: {betas}")
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.weight_decay, self.eps = lr, betas, weight_decay, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        # per-parameter step counts as float32 tensors on the parameter's device, as the kernel wants
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient (the others keep their step count)."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        steps = [self.steps[i] for i in live]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            [self.params[i] for i in live], [self.params[i].grad for i in live],  # type: ignore[misc]
            [self.exp_avg[i] for i in live], [self.exp_avg_sq[i] for i in live], [], steps,
            lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=self.weight_decay, eps=self.eps,
            amsgrad=False, maximize=False)

    def state_dict(self) -> dict[str, Any]:
        return {"exp_avg": [t.clone() for t in self.exp_avg], "exp_avg_sq": [t.clone() for t in self.exp_avg_sq],
                "steps": [t.clone() for t in self.steps],
                "hp": {"lr": self.lr, "betas": self.betas, "weight_decay": self.weight_decay, "eps": self.eps}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["steps"]) != len(self.params):
            raise ValueError(f"optimizer state holds {len(state['steps'])} parameters, the model {len(self.params)}")
        for name in ("exp_avg", "exp_avg_sq", "steps"):
            for dst, src in zip(getattr(self, name), state[name], strict=True):
                dst.copy_(src)
