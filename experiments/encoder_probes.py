"""Linear and attentive probes on a frozen encoder's features: what it knows of push-T's state.

Used by `experiments/eval_world_model.py` (`--encoder FILE`, `--with-cls`, `--dinov2-eval`, `--dinov2-dense`).
"""

from dataclasses import replace

import numpy as np
import torch

from wmplan.encoders import ViTEncoder
from wmplan.encoders.features import encode_frames, encode_in_batches
from wmplan.encoders.projection import projection_from_tokens
from wmplan.encoders.vit import pixels_to_tensor
from wmplan.probe import ATTENTIVE_PROBE as ATTENTIVE
from wmplan.probe import Probe, ProbeConfig, fit_probe, ridge_select_r2

TARGETS = ("agent_x", "agent_y", "block_x", "block_y", "sin(block_theta)", "cos(block_theta)")


def _encode_visual(encoder, frames: np.ndarray, batch: int = 512) -> torch.Tensor:
    return torch.from_numpy(encode_frames(encoder, frames, batch))  # [M, N, Dv]


# per-sample L2 penalties for the linear probe; each time the smallest kept winning (1e-3, then 1e-5 on 50,000 frames
# of DINOv2's dense features) the grid was extended down
RIDGES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _encode_with_cls(encoder: ViTEncoder, frames: np.ndarray, blocks: int = 1, avgpool: bool = False,
                     dense: bool = False, batch: int = 512) -> torch.Tensor:
    """Class tokens beside the visual tokens: `[M, blocks + avgpool + N, D]`, or `[M, blocks * (1 + N) + avgpool, D]` if dense.

    DINO's linear evaluation reads the class token; DINOv2's reads the class tokens of the last 4
    blocks and the average of the last block's patch tokens (`blocks=4, avgpool=True`). Its dense
    (depth) linear evaluation also reads the patch tokens of those blocks (`dense=True`), here pooled
    to the encoder's grid as its own are. Order: the class tokens of the last `blocks` blocks (the
    last block's first), the patch average, then the encoder's own visual tokens, then (dense) the
    pooled patch tokens of the earlier blocks, the latest first.
    """
    config = encoder.config
    skip, grid = 1 + config.num_register_tokens, config.grid

    def encode(pixels: np.ndarray) -> torch.Tensor:
        x = pixels_to_tensor(pixels, config.image_size, encoder.pos_embed.device)
        layers = encoder.intermediate_tokens(x, blocks)[::-1]  # blocks x [B, 1 + R + P, D], the last block first
        extra = [t[:, :1] for t in layers] + ([layers[0][:, skip:].mean(1, keepdim=True)] if avgpool else [])
        patches = [encoder.pool_patches(t, grid, grid) for t in (layers if dense else layers[:1])]  # [B, N, D] each
        return torch.cat(extra + patches, dim=1)

    return encode_in_batches(encode, frames, batch)


def random_like(encoder: ViTEncoder, frames: np.ndarray) -> ViTEncoder:
    """A randomly initialised ViT of the encoder's shape; for a projected encoder, projected onto the principal
    components of its own tokens of `frames` (the probes' training frames), as the encoder was on its own."""
    config = encoder.config
    random_vit = ViTEncoder(replace(config, project_dim=0), seed=123).freeze()
    if not config.project_dim:
        return random_vit
    return projection_from_tokens(random_vit, _encode_visual(random_vit, frames), config.project_dim)[0]


def encoder_probes(encoder, train: tuple, val: tuple, names,
                   attentive: ProbeConfig | None = ATTENTIVE) -> tuple[dict, Probe | None]:
    """Held-out R² of a linear and an attentive probe on the encoder's visual tokens, and the attentive probe.

    The attentive entry also gives the median block position (mm) and angle (deg) errors its reads
    make on the held-out frames: the floor for reading predicted latents with it. With
    `attentive=None` only the linear probe is fitted (no attentive entry, no probe).
    """
    zt, zv = _encode_visual(encoder, train[0]), _encode_visual(encoder, val[0])  # [M, N, Dv]
    yt, yv = torch.as_tensor(train[1]).float(), torch.as_tensor(val[1]).float()
    linear = probe_r2(zt, yt, zv, yv, names)
    if attentive is None:
        return {"linear": linear}, None
    probe, r2 = fit_probe(zt, yt, zv, yv, names, attentive, seed=0)
    with torch.inference_mode():
        pos_mm, angle_deg = block_errors(probe(zv).numpy(), yv.numpy())
    scores = {n: round(float(v), 4) for n, v in r2.items()}
    return {"linear": linear, "attentive": scores | {"block_pos_mm_median": round(float(np.median(pos_mm)), 2),
                                                     "block_angle_deg_median": round(float(np.median(angle_deg)), 2)}}, probe


def cls_probe(encoder: ViTEncoder, train: tuple, val: tuple, blocks: int = 1, avgpool: bool = False,
              dense: bool = False) -> dict:
    """Held-out R² of the ridge probe on class tokens (and the patch average) beside the visual tokens."""
    zt, zv = (_encode_with_cls(encoder, frames, blocks, avgpool, dense) for frames in (train[0], val[0]))  # [M, K, D]
    return probe_r2(zt, torch.as_tensor(train[1]).float(), zv, torch.as_tensor(val[1]).float(), TARGETS)


def block_errors(read: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block position (mm) and angle (deg) errors of reads `[..., 6]` in `TARGETS` order."""
    pos = np.hypot(*np.moveaxis(read[..., 2:4] - truth[..., 2:4], -1, 0))
    ang = np.arctan2(read[..., 4], read[..., 5]) - np.arctan2(truth[..., 4], truth[..., 5])
    return pos, np.rad2deg(np.abs((ang + np.pi) % (2 * np.pi) - np.pi))


def probe_r2(zt: torch.Tensor, yt: torch.Tensor, zv: torch.Tensor, yv: torch.Tensor, names) -> dict:
    """R² per target of a ridge probe on visual tokens `[M, N, D]`, its penalty chosen per target on train data.

    The last 20% of the training frames pick each target's penalty from `RIDGES`; the probe is then
    refitted on all training frames and scored on the held-out episodes' frames.
    """
    held_out, best = ridge_select_r2(zt, yt, zv, yv, names, RIDGES)
    return {n: round(float(held_out[n]), 4) for n in names} | {"ridge": best}
