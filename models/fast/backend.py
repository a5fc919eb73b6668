"""The one decision of the fence: `select`, which picks how a pass runs, from explicit inputs only.

Inputs: the pass's device and dtype, the encoder's config (sizes, dropout rates), whether it trains,
whether autograd records it, how many tokens it has and whether only the last position is needed;
from the process: torch's thread count, whether the native kernels are built (`native.library()`,
off with INTENTBENCH_NATIVE=0), whether torch has oneDNN, and $INTENTBENCH_BACKEND ("reference"
forces the plain code of `models/encoder.py` everywhere; "fast", the default, this package). Nothing
is inferred from how a tensor is represented: the result is a `Backend`, whose fields the fast path
reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from models.fast.encoder import encode as fast_encode
from models.fast.kernels import ONEDNN, block_threads
from models.fast.native import attention_fits, layer_norm_fits, library

if TYPE_CHECKING:
    from models.encoder import EncoderConfig, SeqEncoder

ENV = "INTENTBENCH_BACKEND"
BACKENDS = ("fast", "reference")
# Below this many input tokens per training pass, the two row blocks' per-op overhead outweighs their
# gain (docs/perf.md). It depends on the input only, so the dropout masks do not depend on threads
# (the float sums of some reductions do, in passes below it: see bench/train.py, _keep_threads).
ROW_BLOCK_MIN_TOKENS = 48_000
ATTENTION = ("native", "explicit", "sdpa")


@dataclass(frozen=True)
class Backend:
    """How one pass runs. name "reference": `SeqEncoder.reference`, plain torch, every flag off.
    name "fast": `models.fast.encoder`, with these pieces:

    - attention: "native" (the C kernel per sequence and head, with autograd), "explicit" (per-head
      baddbmm, softmax, dropout, bmm) or "sdpa" (torch's fused attention: no autograd, no dropout);
    - onednn: linear layers, and the InfoNCE Gram's backward, through oneDNN (CPU float32);
    - native: the C kernels for p = 0.5 dropout and for the linear layers' weight gradients;
    - native_layer_norm: the C LayerNorm backward;
    - fused_epilogues: GELU and residual adds inside oneDNN's GEMMs (no autograd, no dropout);
    - row_blocks: a training pass on blocks of rows side by side, each with its own generator.
    """

    name: str = "reference"
    attention: str = "explicit"
    onednn: bool = False
    native: bool = False
    native_layer_norm: bool = False
    fused_epilogues: bool = False
    row_blocks: bool = False

    def __post_init__(self) -> None:
        if self.name not in BACKENDS or self.attention not in ATTENTION:
            raise ValueError(f"no backend {self.name!r} with attention {self.attention!r}")

    def encode(self, encoder: SeqEncoder, input_ids: Tensor, last_only: bool) -> Tensor:
        """The encoder's output for (B, L) input_ids, computed on this backend."""
        if self.name == "reference":
            return encoder.reference(input_ids, last_only)
        return fast_encode(encoder, input_ids, last_only, self)


REFERENCE = Backend()


def requested() -> str:
    """The backend $INTENTBENCH_BACKEND asks for: "fast" (unset or empty) or "reference"."""
    name = os.environ.get(ENV) or "fast"
    if name not in BACKENDS:
        raise ValueError(f"${ENV} must be one of {', '.join(BACKENDS)}, got {name!r}")
    return name


def select(device: torch.device, dtype: torch.dtype, cfg: EncoderConfig | None = None, *, training: bool = False,
           grad: bool = False, tokens: int = 0, last_only: bool = False) -> Backend:
    """The backend of one pass of the encoder of config `cfg`, or, without cfg, of a fast op outside the
    encoder (then only onednn and native count). The C kernels are single-threaded: they run where the
    pass, or each of its row blocks, has one torch thread."""
    if requested() == "reference":
        return REFERENCE
    cpu32 = device.type == "cpu" and dtype == torch.float32
    blocks = cfg is not None and device.type == "cpu" and training and grad and not last_only and (
        tokens >= ROW_BLOCK_MIN_TOKENS)
    threads = torch.get_num_threads()
    native = cpu32 and (block_threads(threads) if blocks else threads) == 1 and library() is not None
    onednn = cpu32 and ONEDNN
    if cfg is None:
        return Backend("fast", onednn=onednn, native=native)
    return Backend("fast", attention=_attention(cfg, native, training, grad, last_only), onednn=onednn,
                   native=native, native_layer_norm=native and grad and layer_norm_fits(cfg.hidden),
                   fused_epilogues=onednn and not training and not grad, row_blocks=blocks)


def _attention(cfg: EncoderConfig, native: bool, training: bool, grad: bool, last_only: bool) -> str:
    """Which attention a fast pass runs (see `Backend`)."""
    if not training and not grad:  # scoring and k-means input: no dropout, no autograd
        return "sdpa"
    # sdpa's backward is further from the authors' gradients (1.2e-5 relative on the loss fixture), so
    # autograd passes run the explicit form or the C kernel; the kernel has dropout for p = 0.5 only
    p = cfg.attn_dropout if training else 0.0
    if native and grad and not last_only and p in (0.0, 0.5) and attention_fits(3 * cfg.hidden, cfg.heads):
        return "native"
    return "explicit"


def describe() -> str:
    """What computes the training passes, as run records say it: "reference" (forced), "native" (the
    C kernels are built, used where a pass has one torch thread) or "torch"."""
    if requested() == "reference":
        return "reference"
    return "native" if library() is not None else "torch"
