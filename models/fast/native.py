"""The native CPU kernels of `models/fast/native.c`: built with the system C compiler on first use, loaded
through ctypes, and wrapped here as autograd Functions.

The build is cached per source, flags, compiler and CPU (`-march=native`) under `$INTENTBENCH_CACHE`
(default `~/.cache/intentbench`); concurrent runs build into their own temporary file and rename it
into place. Without a C compiler, or with `INTENTBENCH_NATIVE=0`, `library()` is None and the fast
path runs torch ops in their place: the same function, with float32 sums in another order.
The kernels are single-threaded: `models.fast.select` picks them where torch runs one thread, as in
each block of rows of a large training pass (`kernels.row_blocks`, one block per core; ctypes releases
the GIL, so the blocks run side by side) or in a one-thread run. With more torch threads a pass takes
the torch ops: calling native code from extra threads while torch's OpenMP workers spin-wait for their
next region was slower (docs/perf.md).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("native.c")
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC")
_P, _N = ctypes.c_void_p, ctypes.c_int64
_SIGNATURES = {
    "attn_fwd": [_P, _P, _P, _N, _P, _P, _N, _N, _N, _N],
    "attn_bwd": [_P, _P, _N, _P, _P, _P, _N, _N, _N, _N],
    "drop_mul": [_P, _P, _P, _N],
    "drop_add": [_P, _P, _P, _P, _N],
    "linear_wgrad": [_P, _P, _P, _P, _N, _N, _N],
    "ln_bwd": [_P, _P, _P, _P, _P, _P, _P, _P, _N, _N],
}
_STATE: dict[str, Any] = {}  # "lib": the loaded library or None, once tried


def _compiler() -> tuple[str, str]:
    cc = os.environ.get("CC", "cc")
    out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30, check=True)
    return cc, out.stdout.splitlines()[0] if out.stdout else cc


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    return next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")


def _build() -> Path:
    """The compiled library's path, compiling it first unless the cache has it."""
    cc, version = _compiler()
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), version.encode(),
                                      platform.machine().encode(), _cpu_flags().encode()])).hexdigest()[:16]
    cache = Path(os.environ.get("INTENTBENCH_CACHE", Path.home() / ".cache" / "intentbench"))
    target = cache / f"native-{key}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
    os.close(fd)
    try:
        done = subprocess.run([cc, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "compiler failed")
        os.replace(tmp, target)  # atomic: a concurrent build of the same key writes the same file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def library() -> ctypes.CDLL | None:
    """The native kernels, or None (disabled by INTENTBENCH_NATIVE=0, or the build failed: said once)."""
    if os.environ.get("INTENTBENCH_NATIVE", "1") == "0":
        return None
    if "lib" not in _STATE:
        try:
            lib = ctypes.CDLL(str(_build()))
            for name, args in _SIGNATURES.items():
                getattr(lib, name).argtypes = args
            _STATE["lib"] = lib
        except (OSError, RuntimeError, subprocess.SubprocessError) as err:
            print(f"intentbench: native kernels unavailable ({err}); using the torch path", file=sys.stderr)
            _STATE["lib"] = None
    return _STATE["lib"]  # type: ignore[no-any-return]


def _lib() -> ctypes.CDLL:
    lib = library()
    assert lib is not None, "the native kernels are not built"
    return lib


def _ptr(t: Tensor | None) -> int | None:
    return t.data_ptr() if t is not None else None


def drop_mul(x: Tensor, bits: Tensor) -> Tensor:
    """x * keep: keep = 2 where the element's bit is set, else 0 (p = 0.5 inverted dropout)."""
    x = x.contiguous()
    out = torch.empty_like(x)
    _lib().drop_mul(x.data_ptr(), bits.data_ptr(), out.data_ptr(), x.numel())
    return out


def drop_add(x: Tensor, y: Tensor, bits: Tensor) -> Tensor:
    """x + y * keep (a residual connection with dropout on y)."""
    x, y = x.contiguous(), y.contiguous()
    out = torch.empty_like(y)
    _lib().drop_add(x.data_ptr(), y.data_ptr(), bits.data_ptr(), out.data_ptr(), y.numel())
    return out


def wgrad_fits(n_out: int, n_in: int) -> bool:
    """Whether `linear_wgrad` takes a linear layer of these sizes (in: a multiple of 64, out: of 16)."""
    return n_in % 64 == 0 and n_out % 16 == 0


def linear_wgrad(g: Tensor, x: Tensor, bias: bool) -> tuple[Tensor, Tensor | None]:
    """g (T, out), x (T, in) -> (g^T x (out, in), the column sums of g (out,) if bias else None): the
    weight and bias gradients of a linear layer over T tokens."""
    g, x = g.contiguous(), x.contiguous()
    (t, n_out), n_in = g.shape, x.shape[1]
    gw = g.new_empty(n_out, n_in)
    gb = g.new_empty(n_out) if bias else None
    _lib().linear_wgrad(g.data_ptr(), x.data_ptr(), gw.data_ptr(), _ptr(gb), t, n_out, n_in)
    return gw, gb


class _LayerNorm(torch.autograd.Function):
    """ATen's LayerNorm forward; the backward is `ln_bwd`, whose affine gradients are summed in blocks."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor, eps: float) -> Tensor:
        x = x.contiguous()
        out, mean, rstd = torch.native_layer_norm(x, [x.shape[-1]], w, b, eps)
        ctx.save_for_backward(x, w, mean, rstd)
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x, w, mean, rstd = ctx.saved_tensors
        d = x.shape[-1]
        g = g.contiguous()
        dx, dw, db = torch.empty_like(x), w.new_empty(d), w.new_empty(d)
        _lib().ln_bwd(*(t.data_ptr() for t in (g, x, mean, rstd, w.contiguous(), dx, dw, db)), x.numel() // d, d)
        return dx, dw, db, None


def layer_norm_fits(width: int) -> bool:
    """Whether `ln_bwd` takes LayerNorms of this width (a multiple of 16 floats)."""
    return width % 16 == 0


def layer_norm(x: Tensor, ln: torch.nn.LayerNorm) -> Tensor:
    """ln(x) (an affine LayerNorm of a `layer_norm_fits` width) whose backward is `ln_bwd`: the same dx;
    the weight and bias gradients summed in blocks of rows, so a one-thread pass sums them as
    accurately as a multi-threaded one."""
    return _LayerNorm.apply(x, ln.weight, ln.bias, ln.eps)  # type: ignore[no-any-return]


class _Attention(torch.autograd.Function):
    """softmax(q.k^T + mask) * keep @ v per (sequence, head) from the fused q/k/v projection."""

    @staticmethod
    def forward(ctx: Any, qkv: Tensor, valid: Tensor, bits: Tensor | None, heads: int) -> Tensor:
        b, n, d3 = qkv.shape
        dh = d3 // (3 * heads)
        qkv = qkv.contiguous()
        out = qkv.new_empty(b, n, heads * dh)
        probs = qkv.new_empty(b, heads, n, n)  # the softmax before dropout, for the backward
        nbytes = bits.shape[1] * 8 if bits is not None else 0
        _lib().attn_fwd(qkv.data_ptr(), valid.data_ptr(), _ptr(bits), nbytes, out.data_ptr(), probs.data_ptr(),
                        b, n, heads, dh)
        ctx.save_for_backward(qkv, probs, *([] if bits is None else [bits]))
        ctx.heads = heads
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        qkv, probs, *rest = ctx.saved_tensors
        bits = rest[0] if rest else None
        b, n, d3 = qkv.shape
        heads = ctx.heads
        g = g.contiguous()
        gqkv = torch.empty_like(qkv)
        nbytes = bits.shape[1] * 8 if bits is not None else 0
        _lib().attn_bwd(qkv.data_ptr(), _ptr(bits), nbytes, probs.data_ptr(), g.data_ptr(), gqkv.data_ptr(),
                        b, n, heads, d3 // (3 * heads))
        return gqkv, None, None, None


def attention(qkv: Tensor, valid: Tensor, heads: int, bits: Tensor | None) -> Tensor:
    """(B, L, 3*H*dh) q/k/v projection (scale folded into q), (B, L) bool real-item keys, (H, words)
    int64 dropout bits or None (no dropout) -> (B, L, H*dh) context. The kernel adds the additive mask
    of `SeqEncoder.attention_mask`, -10000 at padding and future keys, built from valid."""
    return _Attention.apply(qkv, valid.to(torch.uint8).contiguous(), bits, heads)  # type: ignore[no-any-return]


def attention_fits(qkv_width: int, heads: int) -> bool:
    """Whether the kernel handles this head size (a multiple of 16 floats)."""
    return qkv_width % (3 * heads) == 0 and (qkv_width // (3 * heads)) % 16 == 0
