"""The world model: frozen encoder + action-conditioned latent predictor (+ optional probe).

One method per mathematical object (DINO-WM, Zhou et al. 2024):

    z_t      = encode(o_t, p_t)                              # [B, N, D]
    z_{t+1}  = predict(z_{t-T+1..t}, a_{t-T+1..t})            # [B, N, D]
    ẑ_{1..H} = rollout(z_hist, a_{0..H-1}, a_past)            # [B, (S,) H, N, D], autoregressive

z carries the proprio: its normalised vector (a fixed affine map of the data statistics, not
learned, so the prediction target cannot collapse) is appended to every token's visual features;
`visual_dim` says where the visual part ends. Actions are in the env's action box ([-1, 1]^A
here); one predictor step consumes `frameskip` env actions concatenated, `A_fs = frameskip * A`.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from wmplan.checkpoint import check_expected, load_checkpoint, save_atomic
from wmplan.encoders.vit import ViTConfig, ViTEncoder
from wmplan.predictor import Predictor, PredictorConfig
from wmplan.predictor_rollout import cached_rollout
from wmplan.probe import Probe

__all__ = ["WorldModel"]

KIND = "wmplan-world-model"
FORMAT_VERSION = 1


class WorldModel(nn.Module):
    """Frozen encoder and latent predictor behind `encode` / `predict` / `rollout`.

    Args:
        encoder: the (frozen) ViT encoder.
        predictor: the latent predictor; its `latent_dim` must be encoder width + proprio_dim.
        env: name of the environment the model was trained on.
        image_size: side of the env frames it expects.
        action_dim: env action dimension A.
        proprio_mean, proprio_std: statistics normalising the proprio `[P]` (P = 0: no proprio).
        probe: optional readout of physical quantities from z.
        device: where the model lives.

    Attribute `decoder` (None unless set, e.g. from `wmplan.decoder.load_decoder`): turns latents back
    into frames for videos of imagined rollouts; it is not part of the checkpoint and planning never uses it.
    """

    # `rollout` takes candidates `[B, S, H, A_fs]` against one history per b (see `wmplan.mpc`)
    rolls_out_candidates = True

    def __init__(self, encoder: ViTEncoder, predictor: Predictor, env: str, image_size: int, action_dim: int,
                 proprio_mean=None, proprio_std=None, probe: Probe | None = None, device: str = "cpu"):
        super().__init__()
        mean = torch.as_tensor(np.zeros(0) if proprio_mean is None else np.asarray(proprio_mean), dtype=torch.float32)
        std = torch.as_tensor(np.ones(0) if proprio_std is None else np.asarray(proprio_std), dtype=torch.float32)
        self.encoder, self.predictor, self.probe = encoder.freeze(), predictor, probe
        self.decoder = None  # optional `wmplan.decoder.PixelDecoder` (its own file; videos only)
        self.env, self.image_size, self.action_dim = env, int(image_size), int(action_dim)
        self.register_buffer("proprio_mean", mean)
        self.register_buffer("proprio_std", std.clamp_min(1e-6))
        if predictor.latent_dim != encoder.config.out_dim + self.proprio_dim or predictor.action_dim != action_dim:
            raise ValueError(
                f"predictor expects D={predictor.latent_dim}, A={predictor.action_dim}; encoder gives "
                f"{encoder.config.out_dim} + proprio {self.proprio_dim}, env action dim {action_dim}"
            )
        self.to(device)

    # ------------------------------------------------------------------ attributes planners use
    @property
    def frameskip(self) -> int:
        return self.predictor.config.frameskip

    @property
    def history(self) -> int:
        return self.predictor.config.history

    @property
    def proprio_dim(self) -> int:
        return int(self.proprio_mean.numel())

    @property
    def visual_dim(self) -> int:
        """The first `visual_dim` entries of D are visual features, the rest the normalised proprio."""
        return self.encoder.config.out_dim

    @property
    def latent_shape(self) -> tuple[int, int]:
        return (self.encoder.config.tokens_per_frame, self.visual_dim + self.proprio_dim)

    @property
    def device(self) -> torch.device:
        return self.proprio_mean.device

    # ------------------------------------------------------------------ the mathematical objects
    def encode(self, pixels, proprio=None) -> torch.Tensor:
        """Latents of observations.

        Args:
            pixels: uint8 frames `[B, H, W, 3]` (numpy or tensor), H = W = `image_size`.
            proprio: `[B, P]`, required when the model uses proprio.

        Returns:
            z `[B, N, D]`.
        """
        if tuple(np.shape(pixels)[1:3]) != (self.image_size, self.image_size):
            n = self.image_size
            raise ValueError(f"this world model expects {n}x{n} frames, got {tuple(np.shape(pixels))}: render the env "
                             f"at {n}x{n} (e.g. make it with image_size={n}) or resize the frames to {n}x{n}")
        z = self.encoder.encode_pixels(pixels)  # [B, N, Dv]
        if not self.proprio_dim:
            return z
        if proprio is None:
            raise ValueError(f"this world model uses proprio (P={self.proprio_dim}); pass proprio [B, {self.proprio_dim}]")
        return torch.cat([z, self.embed_proprio(proprio, z.shape[1])], dim=-1)

    def embed_proprio(self, proprio, num_tokens: int) -> torch.Tensor:
        """Normalised proprio `[B, P]` repeated on every token: `[B, N, P]`."""
        p = torch.as_tensor(np.asarray(proprio) if not torch.is_tensor(proprio) else proprio, dtype=torch.float32)
        if p.ndim != 2 or p.shape[1] != self.proprio_dim:
            raise ValueError(f"proprio must be [B, {self.proprio_dim}], got {tuple(p.shape)}")
        p = (p.to(self.device) - self.proprio_mean) / self.proprio_std
        return p[:, None].expand(-1, num_tokens, -1)

    def proprio_of(self, z: torch.Tensor) -> torch.Tensor:
        """The proprio (env units) carried by latents `[..., N, D]` -> `[..., P]` (differentiable)."""
        return z[..., 0, self.visual_dim :] * self.proprio_std + self.proprio_mean

    def predict(self, z_hist: torch.Tensor, a_hist: torch.Tensor) -> torch.Tensor:
        """Next latent from a window: `z_hist [B, T, N, D]`, `a_hist [B, T, A_fs]` -> `[B, N, D]`.

        `a_hist[:, i]` is the action taken from frame i; only the last `history` frames are used.
        """
        h = self.history
        return self.predictor(z_hist[:, -h:], a_hist[:, -h:], last_only=True)

    def rollout(self, z_hist: torch.Tensor, actions: torch.Tensor, a_past: torch.Tensor | None = None) -> torch.Tensor:
        """Autoregressive prediction under candidate actions, sliding the history window.

        Args:
            z_hist: observed latents `[B, T, N, D]`, oldest first (T >= 1).
            actions: candidate actions `[B, H, A_fs]`, the first taken from the newest frame; or
                `[B, S, H, A_fs]`: S candidates per history, whose shared work is done once.
            a_past: actions taken between the history frames `[B, T-1, A_fs]`; zeros if None.

        Returns:
            Predicted latents `[B, H, N, D]` (or `[B, S, H, N, D]`) of the frames after each action.
            Equal to `predict` applied step by step (see `wmplan.predictor_rollout` for the work it
            skips). Differentiable w.r.t. `actions`; works under `torch.inference_mode()`.
        """
        B, T = z_hist.shape[:2]
        if actions.ndim not in (3, 4) or actions.shape[0] != B:
            raise ValueError(f"actions must be [B={B}, H, A_fs] or [B={B}, S, H, A_fs], got {tuple(actions.shape)}")
        if a_past is None:
            a_past = actions.new_zeros(B, T - 1, actions.shape[-1])
        if a_past.shape[:2] != (B, T - 1):
            raise ValueError(f"a_past must be [B={B}, T-1={T - 1}, A_fs], got {tuple(a_past.shape)}")
        keep = self.history - 1  # past actions still in the window
        z_win, a_win = z_hist[:, -self.history :], a_past[:, a_past.shape[1] - min(keep, a_past.shape[1]) :]
        candidates = actions if actions.ndim == 4 else actions[:, None]  # [B, S, H, A_fs]
        z_pred = cached_rollout(self.predictor, z_win, candidates, a_win)  # [B, S, H, N, D]
        return z_pred if actions.ndim == 4 else z_pred[:, 0]

    def flops_per_step(self) -> int:
        """Predictor FLOPs of one predicted step for one candidate (`Predictor.flops_per_step`)."""
        return self.predictor.flops_per_step()

    # ------------------------------------------------------------------ checkpoints
    def meta(self) -> dict:
        """What the checkpoint was made for; `load` compares it with what the caller expects."""
        return {"env": self.env, "image_size": self.image_size, "action_dim": self.action_dim,
                "proprio_dim": self.proprio_dim, "frameskip": self.frameskip, "history": self.history,
                "latent_shape": list(self.latent_shape)}

    def checkpoint_dict(self) -> dict:
        cpu = lambda sd: {k: v.detach().cpu() for k, v in sd.items()}  # noqa: E731
        return {
            "kind": KIND, "format_version": FORMAT_VERSION, "meta": self.meta(),
            "encoder_config": asdict(self.encoder.config), "encoder_state": cpu(self.encoder.state_dict()),
            "predictor_config": asdict(self.predictor.config), "predictor_state": cpu(self.predictor.state_dict()),
            "proprio_mean": self.proprio_mean.cpu(), "proprio_std": self.proprio_std.cpu(),
            "probe": self.probe.to_dict() if self.probe is not None else None,
        }

    def save(self, path) -> None:
        """Write `state_dict`s plus a plain-dict config, atomically (loadable with weights_only=True)."""
        save_atomic(self.checkpoint_dict(), path)

    @classmethod
    def from_checkpoint_dict(cls, ckpt: dict, device: str = "cpu") -> "WorldModel":
        meta = ckpt["meta"]
        encoder = ViTEncoder(ViTConfig(**ckpt["encoder_config"]))
        encoder.load_state_dict(ckpt["encoder_state"])
        N, D = meta["latent_shape"]
        predictor = Predictor(PredictorConfig(**ckpt["predictor_config"]), N, D, meta["action_dim"], meta["proprio_dim"])
        predictor.load_state_dict(ckpt["predictor_state"])
        probe = Probe.from_dict(ckpt["probe"]) if ckpt.get("probe") else None
        wm = cls(encoder, predictor, meta["env"], meta["image_size"], meta["action_dim"],
                 ckpt["proprio_mean"], ckpt["proprio_std"], probe, device)
        return wm.eval()

    @classmethod
    def load(cls, path, device: str = "cpu", env: str | None = None, image_size: int | None = None,
             action_dim: int | None = None) -> "WorldModel":
        """Load a checkpoint written by `save`, checking it fits the caller's setup.

        Args:
            path: the checkpoint file.
            device: where to put the model.
            env, image_size, action_dim: what the caller expects (None: not checked).

        Raises:
            FileNotFoundError: no such file.
            CheckpointError: corrupt file, not a world model, or made for another env/shape.
        """
        ckpt = load_checkpoint(path, kind=KIND)
        check_expected(path, ckpt["meta"], {"env": env, "image_size": image_size, "action_dim": action_dim})
        return cls.from_checkpoint_dict(ckpt, device)
