"""Training precision: fp32, or bfloat16 autocast for the matrix products.

Under bf16 autocast the weights, optimizer state and checkpoints stay fp32; matmuls and
convolutions run in bfloat16 and the losses are computed in fp32. On CPUs with AVX512-BF16
(AMD Zen 4, Intel Sapphire Rapids) it speeds up training of wmplan's small transformers by
1.2-1.5x; on a GPU by more. On CPUs without native bfloat16 (AVX2 only) PyTorch emulates it and a
matrix product runs about 10x slower than in fp32, so training there warns (`warn_if_emulated`).
Planning and evaluation always run in fp32.
"""

from __future__ import annotations

import contextlib
import warnings

import torch

__all__ = ["PRECISIONS", "check_precision", "autocast", "native_bf16", "warn_if_emulated", "short_sequence_attention"]

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> None:
    """Raise a clear error for an unknown precision name."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def native_bf16(device) -> bool:
    """Whether `device` runs bfloat16 matrix products in hardware: a CUDA device that supports them, or a
    CPU with AVX512-BF16 or AMX (oneDNN's own test). Other devices: False."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    if kind == "cpu":
        probe = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
        return True if probe is None else bool(probe())  # unknown build: no warning rather than a false one
    return False


def warn_if_emulated(device, precision: str) -> None:
    """Warn, once per training run, when bf16 would be emulated on `device`: slower, never faster."""
    check_precision(precision)
    if precision == "bf16" and not native_bf16(device):
        warnings.warn(f"bf16 on {device}: this processor has no native bfloat16 (AVX512-BF16 or AMX), so PyTorch "
                      "emulates it and training runs several times slower than in fp32 (a 4096x192 by 192x768 "
                      "product: 218 ms against 22 ms on a 2-core AVX2 EPYC); use --precision fp32 here",
                      RuntimeWarning, stacklevel=3)


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
