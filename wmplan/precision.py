"""Training precision: fp32, or bfloat16 autocast for the matrix products.

Under bf16 autocast the weights, optimizer state and checkpoints stay fp32; matmuls and
convolutions run in bfloat16 and the losses are computed in fp32. On CPUs with AVX512-BF16
(AMD Zen 4, Intel Sapphire Rapids) it speeds up training of wmplan's small transformers by
1.2-1.5x; on a GPU by more. Planning and evaluation always run in fp32.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["PRECISIONS", "check_precision", "autocast", "short_sequence_attention"]

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> None:
    """Raise a clear error for an unknown precision name."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def autocast(device, precision: str):
    """The context that runs a training forward pass at `precision` on `device` (a no-op for fp32)."""
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"bf16 training needs a cpu or cuda device, got {device!r}; use precision fp32")
    return torch.autocast(kind, dtype=torch.bfloat16)


def short_sequence_attention(device, precision: str):
    """The attention kernel for a bf16 ViT training step on a CPU: the plain math path.

    PyTorch's fused CPU attention kernel spends a third of a bf16 DINO step of the 64x64 ViT
    (65 tokens) in its backward pass; the math path (matmul, softmax, matmul) does not. In a
    20-step trial on a 2-core AMD EPYC a bf16 step took 0.43-0.45 s on it against 0.53-0.58 s with
    the fused kernel (fp32: 0.65 s either way). Elsewhere (fp32, GPUs) PyTorch's own choice stands.
    """
    check_precision(precision)
    if precision == "bf16" and torch.device(device).type == "cpu":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()
