"""The torch device a command runs on, checked before any work starts."""

from __future__ import annotations

import argparse

__all__ = ["check_device", "device_argument"]


def check_device(name: str):
    """`torch.device(name)`, or a ValueError that says what to use instead.

    Catches names torch does not know (``foo``) and devices this PyTorch build or machine lacks
    (``cuda`` on a CPU-only build), which torch would otherwise report deep inside the first tensor op.
    """
    import torch  # here, so that `wmplan --help` imports no torch
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: no CUDA device is available to this PyTorch build "
                             f"({torch.__version__}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r}: MPS is not available here; use --device cpu")
    return device


def device_argument(text: str) -> str:
    """`--device` of the `wmplan` commands: the name, checked by `check_device`; an argparse ``type``."""
    try:
        check_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text
