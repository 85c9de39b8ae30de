"""Saving and loading encoders: wmplan's own checkpoints and official DINOv2 state dicts."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch

from wmplan.checkpoint import CheckpointError, load_checkpoint, omit_later_defaults, save_atomic
from wmplan.encoders.vit import VIT_CONFIGS, ViTConfig, ViTEncoder

__all__ = ["save_encoder", "load_encoder", "load_dinov2", "encoder_hash", "config_from_state_dict"]

ENCODER_KIND = "wmplan-encoder"
_HEADS_BY_DIM = {384: 6, 768: 12, 1024: 16, 1536: 24}


def encoder_hash(encoder: ViTEncoder) -> str:
    """SHA-256 of the encoder's config and weights: a feature cache is valid only for this hash."""
    config = omit_later_defaults(asdict(encoder.config), {"input_blur": 0.0, "project_dim": 0})  # hashes made before them stay valid
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()


def save_encoder(encoder: ViTEncoder, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write the encoder as `{"kind", "config", "state_dict", **extra}` atomically."""
    state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    return save_atomic({"kind": ENCODER_KIND, "config": asdict(encoder.config), "state_dict": state, **(extra or {})}, path)


def load_encoder(path: str | os.PathLike, device: str = "cpu", image_size: int | None = None,
                 pool_grid: int | None = None, num_heads: int | None = None,
                 input_blur: float | None = None) -> ViTEncoder:
    """Load a frozen encoder from a wmplan encoder checkpoint, a world-model checkpoint (its encoder)
    or an official DINOv2 `.pth` file.

    Args:
        path: the file (a bare DINOv2 state dict is recognised by its keys).
        device: where the encoder lives.
        image_size: override the input size (DINOv2 files only; pos-embed is interpolated).
        pool_grid: override the token pooling (0 keeps every patch; DINOv2 files default to 0, wmplan
            files to the grid they were saved with). A world model trained on one grid needs that grid.
        num_heads: attention heads (DINOv2 files of non-standard width only).
        input_blur: override the Gaussian low-pass before the patch embedding (sigma in pixels, 0: none;
            default: the file's). Like the grid, a world model needs the blur it was trained with.
    """
    obj = load_checkpoint(path)
    if obj.get("kind") == ENCODER_KIND:
        config = _overridden(ViTConfig(**obj["config"]), path, pool_grid=pool_grid, input_blur=input_blur)
        return _build(config, obj["state_dict"], device, path)
    if "encoder_state" in obj and "encoder_config" in obj:  # a world model: reuse its frozen encoder
        config = _overridden(ViTConfig(**obj["encoder_config"]), path, pool_grid=pool_grid, input_blur=input_blur)
        return _build(config, obj["encoder_state"], device, path)
    if "pos_embed" in obj or "model" in obj or "teacher" in obj:
        encoder = load_dinov2(path, image_size=image_size or 224, pool_grid=pool_grid or 0, device=device,
                              num_heads=num_heads)
        return _build(with_overrides(encoder.config, input_blur=input_blur), encoder.state_dict(), device, path) \
            if input_blur else encoder
    raise CheckpointError(f"{path} is neither a wmplan encoder or world-model checkpoint nor a DINOv2 state dict")


def config_from_state_dict(state: dict, image_size: int = 224, pool_grid: int = 0,
                           num_heads: int | None = None) -> ViTConfig:
    """Infer the ViT architecture of a DINOv2-layout state dict from its tensor shapes.

    The head count is not visible in the shapes: it is DINOv2's for its widths (384: 6, 768: 12,
    1024: 16), else `num_heads` or width // 64.
    """
    if any(k.startswith("blocks.") and ".mlp.w12." in k for k in state):
        raise CheckpointError("SwiGLU DINOv2 models (ViT-g) are not supported; use vits14, vitb14 or vitl14")
    dim = state["cls_token"].shape[-1]
    patch = state["patch_embed.proj.weight"].shape[-1]
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    pos_grid = int(round((state["pos_embed"].shape[1] - 1) ** 0.5))
    registers = state["register_tokens"].shape[1] if "register_tokens" in state else 0
    mlp_ratio = state["blocks.0.mlp.fc1.weight"].shape[0] / dim
    heads = num_heads or _HEADS_BY_DIM.get(dim, max(1, dim // 64))
    image_size = image_size - image_size % patch
    return ViTConfig(image_size, patch, dim, depth, heads, mlp_ratio, registers, 1e-5, pos_grid, pool_grid)


def _unwrap(state: dict) -> dict:
    """Accept a bare state dict, `{"model": ...}`, `{"teacher": ...}` (DINOv2 training) and chunked blocks."""
    for key in ("teacher", "model", "state_dict"):
        if key in state and isinstance(state[key], dict):
            state = state[key]
    state = {re.sub(r"^(module\.|backbone\.)+", "", k): v for k, v in state.items()}
    state = {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in state.items()}  # block_chunks
    return {k: v for k, v in state.items() if not k.startswith(("dino_head", "ibot_head", "head."))}


def load_dinov2(path_or_name: str | os.PathLike, image_size: int = 224, pool_grid: int = 0, device: str = "cpu",
                hub: bool = False, hub_timeout_s: float = 20.0, num_heads: int | None = None) -> ViTEncoder:
    """Load official DINOv2 weights into a frozen `ViTEncoder`.

    Args:
        path_or_name: a local `.pth` state dict, or a hub name such as `"dinov2_vits14"`.
        image_size: input side the encoder will see (frames are resized to it); pos-embed is
            interpolated from the stored 37x37 grid.
        pool_grid: average-pool patch tokens to this grid (0 keeps all 16x16 patches at 224 px).
        device: where the encoder lives.
        hub: allow `torch.hub` to download weights by name (never done implicitly).
        hub_timeout_s: network timeout for the hub, so an offline machine fails instead of hanging.
        num_heads: attention heads, only needed for non-standard widths (see `config_from_state_dict`).

    Raises:
        FileNotFoundError: no such file and `hub` is False.
        CheckpointError: the file is not a DINOv2 state dict, or the hub cannot be reached.
    """
    path = Path(path_or_name)
    if path.is_file():
        state = _unwrap(load_checkpoint(path))
    elif not hub:
        raise FileNotFoundError(
            f"DINOv2 weights {str(path_or_name)!r} not found. Download e.g. "
            "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth and pass its path, "
            "or pass hub=True on a machine with internet access."
        )
    else:
        state = _hub_state_dict(str(path_or_name), hub_timeout_s)
    if "pos_embed" not in state or "patch_embed.proj.weight" not in state:
        raise CheckpointError(f"{path_or_name} does not look like a DINOv2 state dict (no pos_embed/patch_embed)")
    return _build(config_from_state_dict(state, image_size, pool_grid, num_heads), state, device, path_or_name)


def _hub_state_dict(name: str, timeout_s: float) -> dict:
    if name not in VIT_CONFIGS or not name.startswith("dinov2"):
        raise ValueError(f"unknown DINOv2 hub name {name!r}; known: {[n for n in VIT_CONFIGS if n.startswith('dinov2')]}")
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        model = torch.hub.load("facebookresearch/dinov2", name, trust_repo=True)
    except Exception as err:
        raise CheckpointError(
            f"could not fetch {name} from torch.hub ({type(err).__name__}: {err}); "
            "on an offline machine download the .pth file elsewhere and pass its path"
        ) from None
    finally:
        socket.setdefaulttimeout(old)
    return model.state_dict()


def _build(config: ViTConfig, state: dict, device: str, source) -> ViTEncoder:
    encoder = ViTEncoder(config)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: weights do not match the ViT layout: {str(err)[:400]}") from None
    return encoder.to(device).freeze()


def _overridden(config: ViTConfig, path, **overrides) -> ViTConfig:
    """`with_overrides`, refusing to change the grid or blur under a fitted projection (it was fitted on them)."""
    new = with_overrides(config, **overrides)
    if config.project_dim and (new.pool_grid, new.input_blur) != (config.pool_grid, config.input_blur):
        raise CheckpointError(f"{path} projects its tokens (project_dim={config.project_dim}), fitted on pool grid "
                              f"{config.pool_grid} and input blur {config.input_blur}; leave --pool-grid and --input-blur "
                              "unset, or fit a new projection (`wmplan fit-projection`) on the grid you want")
    return new


def with_overrides(config: ViTConfig, **overrides) -> ViTConfig:
    """A copy of `config` with the given non-None fields replaced."""
    valid = {f.name for f in fields(ViTConfig)}
    return replace(config, **{k: v for k, v in overrides.items() if v is not None and k in valid})
