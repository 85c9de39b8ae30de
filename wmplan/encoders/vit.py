"""A Vision Transformer whose parameter names match the official DINOv2 checkpoints.

Oquab et al. 2023, "DINOv2: Learning Robust Visual Features without Supervision"; registers from
Darcet et al. 2023, "Vision Transformers Need Registers". Keeping DINOv2's key layout
(`patch_embed.proj`, `cls_token`, `pos_embed`, `register_tokens`, `mask_token`,
`blocks.{i}.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}`, `norm`) means an
official `dinov2_vits14` state dict loads with `load_state_dict(strict=True)`.

The latent of a frame is its patch tokens after the final norm, optionally average-pooled to a
coarser grid (`pool_grid`) so that the predictor attends over few tokens, and optionally projected by a
frozen linear map (`project_dim`: principal components of the flattened tokens, fitted on a dataset's
frames by `wmplan.encoders.projection`) to one compact token.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ViTConfig", "ViTEncoder", "VIT_CONFIGS", "pixels_to_tensor"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of a DINOv2-layout ViT."""

    image_size: int = 64  # side of the (square) input the encoder sees; other sizes are resized
    patch_size: int = 8  # side of a square patch, in pixels
    embed_dim: int = 128  # token width D_v
    depth: int = 4  # number of transformer blocks
    num_heads: int = 4  # attention heads per block
    mlp_ratio: float = 4.0  # MLP hidden width / embed_dim
    num_register_tokens: int = 0  # extra learned tokens (DINOv2 "_reg" models use 4)
    layerscale_init: float = 1e-5  # initial LayerScale gamma (DINOv2 default)
    pos_grid: int = 0  # side of the stored pos_embed grid; 0 means image_size // patch_size
    pool_grid: int = 0  # average-pool the patch grid to pool_grid x pool_grid; 0 keeps all patches
    # Gaussian low-pass (sigma in input pixels) before the patch embedding; 0: none. Small renders are
    # aliased: a 1-px shift of push-T's pusher changes its 8x8 patch's tokens more than its own move
    # does, so the tokens are neither linearly readable nor predictable; sigma 1.5 removes that.
    input_blur: float = 0.0
    # >0: the frame's (pooled) tokens, flattened, are projected to one token of this many features by a
    # frozen linear map stored in the encoder's buffers (`proj_mean`, `proj_components`; PCA, see
    # `wmplan.encoders.projection`). A small dense latent lets an MLP-like predictor learn contact.
    project_dim: int = 0

    def __post_init__(self):
        if self.input_blur < 0:
            raise ValueError(f"input_blur must be >= 0 (a Gaussian sigma in pixels), got {self.input_blur}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} must be divisible by num_heads {self.num_heads}")
        if self.pool_grid < 0 or self.pool_grid > self.grid:
            raise ValueError(f"pool_grid must be in [0, {self.grid}] (the patch grid), got {self.pool_grid}")
        if self.pool_grid and self.grid % self.pool_grid:
            raise ValueError(f"pool_grid {self.pool_grid} must divide the patch grid {self.grid}")
        if self.project_dim < 0:
            raise ValueError(f"project_dim must be >= 0 (0: no projection), got {self.project_dim}")

    @property
    def grid(self) -> int:
        """Patches per side of the input image."""
        return self.image_size // self.patch_size

    @property
    def patch_tokens(self) -> int:
        """Tokens of one frame after pooling, before any projection."""
        side = self.pool_grid or self.grid
        return side * side

    @property
    def tokens_per_frame(self) -> int:
        """Number of latent tokens N of one frame (after pooling and projection)."""
        return 1 if self.project_dim else self.patch_tokens

    @property
    def out_dim(self) -> int:
        """Features per latent token D_v: `project_dim` when projected, else `embed_dim`."""
        return self.project_dim or self.embed_dim


VIT_CONFIGS: dict[str, ViTConfig] = {
    # Small ViTs for 64x64 env frames: 8x8 patches, pooled to 4x4 = 16 latent tokens.
    # LayerScale starts at 0.1 (CaiT's value for shallow nets): at DINOv2's 1e-5 the cls token of a
    # freshly initialised net barely sees the image, and short self-distillation runs collapse.
    "vit-tiny-64": ViTConfig(64, 8, 128, 4, 4, layerscale_init=0.1, pool_grid=4),
    "vit-small-64": ViTConfig(64, 8, 192, 6, 6, layerscale_init=0.1, pool_grid=4),
    # For tests and smoke runs on 32x32 frames.
    "vit-micro-32": ViTConfig(32, 8, 32, 2, 2, layerscale_init=0.1, pool_grid=2),
    # Official DINOv2 architectures (pos_embed stored at 518 px = 37x37 patches).
    "dinov2_vits14": ViTConfig(224, 14, 384, 12, 6, pos_grid=37, pool_grid=0),
    "dinov2_vitb14": ViTConfig(224, 14, 768, 12, 12, pos_grid=37, pool_grid=0),
    "dinov2_vitl14": ViTConfig(224, 14, 1024, 24, 16, pos_grid=37, pool_grid=0),
}


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, D, g, g] -> [B, P, D]


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, P, D = x.shape
        qkv = self.qkv(x).reshape(B, P, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # [B, heads, P, D/heads]
        return self.proj(out.transpose(1, 2).reshape(B, P, D))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, cfg.num_heads)
        self.ls1 = LayerScale(dim, cfg.layerscale_init)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.ls2 = LayerScale(dim, cfg.layerscale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class ViTEncoder(nn.Module):
    """DINOv2-layout ViT mapping images to (optionally pooled) patch tokens.

    Args:
        config: the architecture.
        seed: seed of the random initialisation (pretraining starts from it).
    """

    def __init__(self, config: ViTConfig, seed: int = 0):
        super().__init__()
        self.config = config
        dim, pos_grid = config.embed_dim, config.pos_grid or config.grid
        generator = torch.Generator().manual_seed(seed)
        self.patch_embed = PatchEmbed(config.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + pos_grid**2, dim, generator=generator) * 0.02)
        if config.num_register_tokens:
            self.register_tokens = nn.Parameter(torch.zeros(1, config.num_register_tokens, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        if config.project_dim:  # filled by `wmplan.encoders.projection.fit_projection`
            self.register_buffer("proj_mean", torch.zeros(config.patch_tokens * dim))
            self.register_buffer("proj_components", torch.zeros(config.patch_tokens * dim, config.project_dim))
        self._init_weights(generator)

    def _init_weights(self, generator: torch.Generator) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                fan_in = module.weight[0].numel()
                with torch.no_grad():
                    module.weight.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
                    module.bias.zero_()
        with torch.no_grad():
            self.cls_token.normal_(0.0, 1e-6, generator=generator)

    def interpolate_pos_encoding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """pos_embed resized to a grid_h x grid_w patch grid (bicubic, as DINOv2 does)."""
        pos = self.pos_embed
        stored = int(math.sqrt(pos.shape[1] - 1))
        if (grid_h, grid_w) == (stored, stored):
            return pos
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:].float()
        dim = pos.shape[-1]
        # DINOv2's offset of 0.1 avoids floating-point rounding of the output size.
        scale = (float(grid_h + 0.1) / stored, float(grid_w + 0.1) / stored)
        patch_pos = patch_pos.reshape(1, stored, stored, dim).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, scale_factor=scale, mode="bicubic", antialias=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)  # [1, P, D]
        return torch.cat([cls_pos, patch_pos.to(pos.dtype)], dim=1)

    def forward_tokens(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """All output tokens (cls, registers, patches) after the final norm.

        Args:
            images: normalised images `[B, 3, H, W]`, H and W multiples of the patch size.
            masks: optional bool `[B, P]`; True patches are replaced by `mask_token` before the
                position embedding (masked-image modelling, as DINOv2/iBOT pretraining does).

        Returns:
            `[B, 1 + R + P, D]`.
        """
        x = self._embed(images, masks)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def intermediate_tokens(self, images: torch.Tensor, n: int) -> list[torch.Tensor]:
        """All tokens after each of the last `n` blocks, each through the final norm.

        DINOv2's `get_intermediate_layers(x, n, norm=True)`: its linear evaluation reads the class
        tokens of the last 4 blocks. Returns `n` tensors `[B, 1 + R + P, D]`, the last block's last.
        """
        depth = len(self.blocks)
        if not 1 <= n <= depth:
            raise ValueError(f"n must be between 1 and the encoder's depth {depth}, got {n}")
        x, out = self._embed(images), []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i >= depth - n:
                out.append(self.norm(x))
        return out

    def _embed(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Patch embedding, class and register tokens and positions: `[B, 3, H, W]` -> `[B, 1 + R + P, D]`."""
        B, _, H, W = images.shape
        p = self.config.patch_size
        x = self.patch_embed(gaussian_blur(images, self.config.input_blur))  # [B, P, D]
        if masks is not None:
            x = torch.where(masks[..., None], self.mask_token.to(x.dtype), x)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        x = x + self.interpolate_pos_encoding(H // p, W // p)
        if self.config.num_register_tokens:
            x = torch.cat([x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]], dim=1)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens, pooled to `pool_grid` if configured.

        Args:
            images: normalised images `[B, 3, H, W]`.

        Returns:
            `[B, N, D_v]`, N = tokens per frame (1 when projected), D_v = `config.out_dim`.
        """
        tokens = self.patch_features(images)  # [B, N', D]
        if not self.config.project_dim:
            return tokens
        return self.project(tokens)

    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens pooled to `pool_grid`, before any projection: `[B, 3, H, W]` -> `[B, N', D]`."""
        _, _, H, W = images.shape
        return self.pool_patches(self.forward_tokens(images), H // self.config.patch_size, W // self.config.patch_size)

    def pool_patches(self, tokens: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
        """All output tokens `[B, 1 + R + P, D]` -> the patch tokens pooled to `pool_grid`, `[B, N', D]`."""
        patches = tokens[:, 1 + self.config.num_register_tokens :]  # [B, P, D]
        if not self.config.pool_grid:
            return patches
        grid = patches.transpose(1, 2).reshape(len(patches), -1, grid_h, grid_w)  # [B, D, gh, gw]
        pooled = F.adaptive_avg_pool2d(grid, self.config.pool_grid)
        return pooled.flatten(2).transpose(1, 2)  # [B, N', D]

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """The frozen projection: pooled tokens `[B, N', D]` -> one token `[B, 1, project_dim]`."""
        return ((tokens.flatten(1) - self.proj_mean) @ self.proj_components)[:, None]

    def encode_pixels(self, pixels) -> torch.Tensor:
        """uint8 frames `[B, H, W, 3]` (numpy or tensor) -> tokens `[B, N, D]`."""
        device = self.pos_embed.device
        return self(pixels_to_tensor(pixels, self.config.image_size, device))

    def freeze(self) -> "ViTEncoder":
        """Eval mode, no gradients: the encoder never changes while a world model trains or plans."""
        self.requires_grad_(False)
        return self.eval()

    def config_dict(self) -> dict:
        return asdict(self.config)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of `[B, C, H, W]` (edges replicated); `images` itself when sigma is 0."""
    if not sigma:
        return images
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=images.dtype, device=images.device) ** 2 / (2 * sigma**2))
    k = (k / k.sum()).repeat(images.shape[1], 1, 1, 1)  # [C, 1, 1, 2r+1]
    x = F.conv2d(F.pad(images, (r, r, 0, 0), mode="replicate"), k, groups=images.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.transpose(2, 3), groups=images.shape[1])


def pixels_to_tensor(pixels, image_size: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 `[B, H, W, 3]` -> ImageNet-normalised float `[B, 3, S, S]`, resized to `image_size`.

    Raises:
        ValueError: if the array is not a batch of RGB uint8 frames.
    """
    pixels = torch.as_tensor(np.asarray(pixels) if not torch.is_tensor(pixels) else pixels)
    if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.dtype != torch.uint8:
        raise ValueError(f"pixels must be uint8 [B, H, W, 3], got {tuple(pixels.shape)} {pixels.dtype}")
    x = pixels.to(device).permute(0, 3, 1, 2).float().div_(255.0)  # [B, 3, H, W]
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std
