"""CPU-efficiency helpers for DKGR-DR training: cheaper dropout, normalisation and cross-entropy,
and shape-bucketed matmuls. Each computes the same function as the torch op it replaces.

ByteDropout -- `nn.Dropout` draws one float per element; on CPU that RNG costs more than the R-GCN
matmul it follows (measured ~19 ms vs ~11 ms on a 7128 x 200 entity matrix, fwd+bwd, one thread) and
was a quarter of a training step. Here one 64-bit draw gives 8 random bytes and an element is kept
when its byte >= round(256 p): the drop probability is p rounded to a multiple of 1/256
(0.2 -> 0.199), at ~2.5x less cost. Kept elements are scaled by 1 / (1 - p_eff). The mask is kept as
bools (1 byte per element instead of a 4-byte float mask) and applied in one pass each way.

l2_normalize -- F.normalize(x, dim=1) with a hand-written backward (g - y (g.y)) / |x|: autograd's
chain through norm, clamp and a broadcast division makes ~3x as many passes over an [N, d] matrix.

cross_entropy -- F.cross_entropy on [B, C] logits, computed over blocks of rows: under autocast the
stock op first copies all bf16 logits to fp32 and keeps the fp32 log-softmax for backward (on ICEWS18
~0.4 GB each, the largest cost of a training step). Here each block is promoted to fp32 in turn, the
forward keeps only the per-row logsumexp, and backward rebuilds softmax - onehot block by block,
written straight into the logits' dtype. Same math as F.cross_entropy (fp32 softmax).

bucketed_matmul -- with bf16 autocast on CPU, oneDNN builds and keeps a kernel per distinct matmul
shape (~1-2 MB each, not released even with ONEDNN_PRIMITIVE_CACHE_CAPACITY=0; measured). A training
step's query count changes with every timestamp, so memory grew ~40 MB per step (6.7 GB after two
ICEWS14 epochs, when the R-GCN also ran in bf16; only the decoders do now). Padding the varying row
count up to one of 8 sizes per octave bounds the number of shapes (<= 12.5% extra rows); results
are sliced back, so the math is unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _MaskedScale(torch.autograd.Function):
    """x * keep * scale with a bool mask; backward applies the same mask to the gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.mul(x, keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return torch.mul(grad, keep).mul_(ctx.scale), None, None


class ByteDropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.threshold = round(256 * p)
        self.scale = 256.0 / (256 - self.threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        n = x.numel()
        words = torch.randint(-2**63, 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, device=x.device)
        keep = words.view(torch.uint8)[:n].view(x.shape) >= self.threshold
        return _MaskedScale.apply(x, keep, self.scale)

    def extra_repr(self) -> str:
        return f"p={self.threshold / 256:.4f}"


class _L2Normalize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        clamped = norm.clamp_min(eps)
        y = x / clamped
        ctx.save_for_backward(y, clamped, norm > eps)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        y, clamped, above = ctx.saved_tensors
        # Where the norm was clamped to eps, F.normalize divides by a constant: no projection term.
        dot = (grad * y).sum(1, keepdim=True) * above
        return torch.addcmul(grad, y, dot, value=-1).div_(clamped), None


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """F.normalize(x, p=2, dim=1, eps) for a 2-D x, cheaper in backward."""
    return _L2Normalize.apply(x, eps)


def _block_rows(cols: int) -> int:
    return max(1, (1 << 20) // max(cols, 1))   # ~1M fp32 elements (4 MB) per block: stays in cache


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n, step = logits.shape[0], _block_rows(logits.shape[1])
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        for i in range(0, n, step):   # a loop over row blocks, for cache locality
            lse[i:i + step] = torch.logsumexp(logits[i:i + step].float(), dim=1)
        ctx.save_for_backward(logits, target, lse)
        return lse - logits.gather(1, target[:, None]).squeeze(1).float()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, target, lse = ctx.saved_tensors
        n, step = logits.shape[0], _block_rows(logits.shape[1])
        out = torch.empty_like(logits)
        grad = grad.float()
        for i in range(0, n, step):
            # a copy: on fp32 logits .float() is the saved tensor itself, and sub_ would overwrite it
            p = logits[i:i + step].to(torch.float32, copy=True).sub_(lse[i:i + step, None]).exp_()
            p.scatter_add_(1, target[i:i + step, None], p.new_full((p.shape[0], 1), -1.0))
            out[i:i + step] = p.mul_(grad[i:i + step, None])
        return out, None


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """F.cross_entropy(logits.float(), target, reduction=...) over blocks of rows (module docstring);
    reduction "mean", "sum" or "none" (the per-row losses, fp32)."""
    with torch.autocast(logits.device.type, enabled=False):
        per_row = _CrossEntropy.apply(logits, target)
        if reduction == "none":
            return per_row
        return per_row.mean() if reduction == "mean" else per_row.sum()


def row_bucket(n: int) -> int:
    """Smallest size >= n of the form k * 2^(e-3) with 8 <= k < 16: 8 sizes per octave."""
    if n <= 16:
        return n
    step = 1 << (n.bit_length() - 4)
    return -(-n // step) * step


def bucketed_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                    transpose: bool = False) -> torch.Tensor:
    """x [n, k] @ weight (+ bias), with n padded to `row_bucket(n)` (weight.T when `transpose`)."""
    n = x.shape[0]
    padded = row_bucket(n)
    if padded != n:
        x = F.pad(x, (0, 0, 0, padded - n))
    out = F.linear(x, weight, bias) if transpose else (x @ weight if bias is None else torch.addmm(bias, x, weight))
    return out[:n]
