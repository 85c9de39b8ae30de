"""An optional pixel decoder: frames from frozen latents, for videos of imagined rollouts.

The planner never sees pixels it makes: the decoder is trained afterwards on *detached* latents of a
dataset's frames (the encoder stays frozen, the predictor is not involved) and only turns predicted
latents into pictures a person can look at. Its file sits beside the world model (`decoder.pt`), so
adding or retraining it never changes the world-model checkpoint or the benchmark numbers.

    latents z [..., N, D] --> g x g grid of D channels --(ConvTranspose x2)^k--> frames [..., S, S, 3]

It reads the whole latent, proprio features included: that is where the latents carry the agent.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wmplan.checkpoint import CheckpointError, load_checkpoint, save_atomic

__all__ = ["DecoderConfig", "PixelDecoder", "fit_decoder", "save_decoder", "load_decoder", "encoder_sha1"]

KIND = "wmplan-pixel-decoder"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DecoderConfig:
    """Decoder shape and how it is fitted."""

    width: int = 128  # channels of the first upsampling stage; each further stage halves them (>= 16)
    steps: int = 2000  # AdamW steps
    batch_size: int = 64  # frames per step
    lr: float = 2e-3  # AdamW learning rate (cosine decay to 0)
    frame_stride: int = 5  # every k-th frame of each episode is a training frame
    val_fraction: float = 0.1  # share of episodes held out for the reported validation error
    seed: int = 0

    def __post_init__(self):
        if self.width < 16 or self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.frame_stride < 1:
            raise ValueError("width must be >= 16, steps, batch_size and frame_stride >= 1, lr > 0")
        if not 0 < self.val_fraction < 1:
            raise ValueError("val_fraction must lie in (0, 1)")


class PixelDecoder(nn.Module):
    """Latents ``[..., N, D]`` of a g x g token grid (N = g^2) -> frames ``[..., S, S, 3]`` in [0, 1].

    Args:
        num_tokens: N, a square number.
        latent_dim: D (visual features, then the normalised proprio when the model uses it).
        image_size: S = g * 2^k.
        width: channels after the first upsampling.
    """

    def __init__(self, num_tokens: int, latent_dim: int, image_size: int, width: int = 128):
        super().__init__()
        grid = math.isqrt(num_tokens)
        stages = int(round(math.log2(image_size / grid))) if grid else 0
        if grid * grid != num_tokens or grid << stages != image_size:
            raise ValueError(f"a decoder needs a square token grid that doubles to the image size; got N={num_tokens}, "
                             f"S={image_size}")
        self.num_tokens, self.latent_dim, self.image_size, self.width, self.grid = num_tokens, latent_dim, image_size, width, grid
        layers: list[nn.Module] = [nn.Conv2d(latent_dim, width, 1)]
        ch = width
        for _ in range(stages):
            out = max(16, ch // 2)
            layers += [nn.GELU(), nn.ConvTranspose2d(ch, out, 4, stride=2, padding=1)]
            ch = out
        layers += [nn.GELU(), nn.Conv2d(ch, 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        # the mean training frame (as a logit): the net only learns how a frame differs from it
        self.register_buffer("base", torch.zeros(3, image_size, image_size))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-2]
        if z.shape[-2:] != (self.num_tokens, self.latent_dim):
            raise ValueError(f"decoder expects latents [..., {self.num_tokens}, {self.latent_dim}], got {tuple(z.shape)}")
        x = z.reshape(-1, self.grid, self.grid, self.latent_dim).permute(0, 3, 1, 2)  # [M, D, g, g]
        img = torch.sigmoid(self.base + self.net(x)).permute(0, 2, 3, 1)  # [M, S, S, 3]
        return img.reshape(*lead, self.image_size, self.image_size, 3)

    def to_uint8(self, z: torch.Tensor) -> np.ndarray:
        """Decoded frames ``[..., S, S, 3]`` as uint8 (no gradients)."""
        with torch.inference_mode():
            return (self(z) * 255).round().to(torch.uint8).cpu().numpy()


def encoder_sha1(encoder: nn.Module) -> str:
    """Identifies an encoder by its weights: a decoder only fits the latents of the encoder it was fitted on."""
    h = hashlib.sha1()
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _training_frames(dataset, latents: list[torch.Tensor], stride: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Every `stride`-th frame of each episode: latents ``[M, N, D]``, pixels ``[M, S, S, 3]`` uint8, episode ids ``[M]``."""
    z, px, ep = [], [], []
    for i, lat in enumerate(latents):
        frames = dataset.episode(i, keys=("pixels",))["pixels"][::stride]
        z.append(lat[::stride])
        px.append(torch.from_numpy(np.ascontiguousarray(frames)))
        ep.append(np.full(len(frames), i))
    return torch.cat(z), torch.cat(px), np.concatenate(ep)


def fit_decoder(world_model, dataset, cfg: DecoderConfig = DecoderConfig(), device: str = "cpu",
                progress: bool = True) -> tuple[PixelDecoder, dict]:
    """Fit a decoder on the world model's (cached, frozen) features of a dataset's frames.

    Returns the decoder (in eval mode) and metrics: pixel MSE and PSNR on held-out episodes, beside the
    MSE of always answering the training frames' mean image (what a decoder that learned nothing scores).
    """
    from tqdm import tqdm

    from wmplan.train import LatentData

    if len(dataset) < 2:
        raise ValueError(f"the dataset has {len(dataset)} episode; a decoder needs at least 2 (one is held out)")
    data = LatentData(dataset, world_model.encoder, device=device, progress=progress)
    latents = data.latents(world_model.proprio_mean.cpu(), world_model.proprio_std.cpu())  # as `encode` makes them
    z, px, ep = _training_frames(dataset, latents, cfg.frame_stride)
    val = np.isin(ep, dataset.split(cfg.val_fraction, seed=cfg.seed)[1])  # whole episodes held out, as in training
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    decoder = PixelDecoder(z.shape[1], z.shape[2], world_model.image_size, cfg.width).to(device)
    mean_image = px[~val].float().mean(0).div(255)  # [S, S, 3]
    decoder.base.copy_(torch.logit(mean_image.clamp(0.01, 0.99)).permute(2, 0, 1))
    opt = torch.optim.AdamW(decoder.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    train_idx = torch.from_numpy(np.flatnonzero(~val))
    losses = []
    for _ in tqdm(range(cfg.steps), desc="decoder", disable=not progress):
        idx = train_idx[torch.randint(len(train_idx), (cfg.batch_size,), generator=gen)]
        target = px[idx].to(device, torch.float32) / 255
        loss = F.mse_loss(decoder(z[idx].to(device)), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    decoder.eval()
    return decoder, _metrics(decoder, z, px, val, mean_image, device, losses)


def _metrics(decoder: PixelDecoder, z, px, val: np.ndarray, mean_image: torch.Tensor, device: str,
             losses: list[float]) -> dict:
    mask = torch.from_numpy(val)
    target = px[mask].float() / 255
    with torch.inference_mode():
        recon = torch.cat([decoder(chunk.to(device)).cpu() for chunk in z[mask].split(512)])
    mse = F.mse_loss(recon, target).item()
    return {"val_mse": mse, "val_psnr_db": 10 * math.log10(1 / max(mse, 1e-12)),
            "val_mse_mean_image": F.mse_loss(mean_image.expand_as(target), target).item(),
            "train_mse_first": float(np.mean(losses[:10])), "train_mse_last": float(np.mean(losses[-10:])),
            "train_frames": int((~mask).sum()), "val_frames": int(mask.sum())}


def save_decoder(path, decoder: PixelDecoder, world_model, cfg: DecoderConfig, metrics: dict | None = None) -> None:
    """Write the decoder with what it fits (env, image size, the encoder's weights) atomically."""
    save_atomic({
        "kind": KIND, "format_version": FORMAT_VERSION, "config": asdict(cfg),
        "shape": {"num_tokens": decoder.num_tokens, "latent_dim": decoder.latent_dim, "image_size": decoder.image_size,
                  "width": decoder.width},
        "env": world_model.env, "encoder_sha1": encoder_sha1(world_model.encoder),
        "state": {k: v.detach().cpu() for k, v in decoder.state_dict().items()}, "metrics": metrics or {},
    }, path)


def load_decoder(path, world_model, device: str | None = None) -> PixelDecoder:
    """Load a decoder for `world_model`, refusing one fitted on another encoder's latents.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: corrupt, not a decoder, or fitted for another env or encoder.
    """
    ckpt = load_checkpoint(path, kind=KIND)
    if ckpt["env"] != world_model.env or ckpt["encoder_sha1"] != encoder_sha1(world_model.encoder):
        raise CheckpointError(
            f"{path} decodes the latents of another encoder (env {ckpt['env']!r}); fit one for this world model: "
            f"`wmplan train-decoder --checkpoint <world_model.pt> --data <dataset> --out {path}`")
    decoder = PixelDecoder(**ckpt["shape"])
    decoder.load_state_dict(ckpt["state"])
    return decoder.to(device or world_model.device).eval()
