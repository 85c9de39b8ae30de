"""DINO self-distillation pretraining of the encoder on environment frames, fully offline.

Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers": a student ViT
matches the output distribution of an EMA teacher across crops of the same frame. The teacher
sees only the global crops; its outputs are centred (running mean `c`, or Sinkhorn-Knopp as in
DINOv2) and sharpened (low temperature) to avoid collapse (Eq. 1 and Sec. 3.1 of the paper):

    L_dino = sum_{g in global} sum_{v != g} H(softmax((t(g) - c) / tau_t), softmax(s(v) / tau_s))

Env frames are ~90% empty background, and the image-level loss alone collapses on them (its loss
sits at ln K: every frame gets the same uniform output). Two terms of the DINOv2 recipe (Oquab et
al. 2023, Sec. 4) fix that and, more to the point for world models, train the *patch tokens* that
are the latent state:

    L_ibot  = masked-image modelling by self-distillation (Zhou et al. 2022, iBOT): the student
              sees a global crop with random patches replaced by `mask_token` and predicts, at the
              masked positions, the teacher's patch-token distribution of the unmasked crop;
    L_koleo = -mean log(distance to the nearest neighbour) of the student's normalised CLS
              features in the batch (Sablayrolles et al. 2019), which spreads frames apart.

    L = L_dino + ibot_weight * L_ibot + koleo_weight * L_koleo

Multi-crop is adapted to small frames: 2 global crops at full resolution (scale 0.5-1) and a few
local crops at half resolution, made with batched affine resampling. No flips: left/right matters
for control. The teacher's backbone is the encoder that is kept.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from wmplan.checkpoint import CheckpointError, load_checkpoint, omit_later_defaults, save_atomic
from wmplan.encoders.vit import VIT_CONFIGS, ViTEncoder, pixels_to_tensor
from wmplan.precision import autocast, check_precision, short_sequence_attention, warn_if_emulated

__all__ = ["DinoConfig", "DINOHead", "TeacherTargets", "DINOLoss", "IBOTPatchLoss", "koleo_loss", "random_patch_masks", "multi_crop",
           "pretrain_dino"]


@dataclass(frozen=True)
class DinoConfig:
    """DINO pretraining hyper-parameters (small-image defaults)."""

    arch: str = "vit-tiny-64"  # key of VIT_CONFIGS
    steps: int = 3000  # optimizer steps
    batch_size: int = 128  # frames per step
    lr: float = 5e-4  # peak AdamW learning rate (after linear warm-up, cosine decay)
    warmup_steps: int = 100  # learning-rate warm-up steps
    weight_decay: float = 0.04  # AdamW weight decay
    out_dim: int = 256  # prototypes K of the DINO head
    head_hidden: int = 512  # hidden width of the head MLP
    bottleneck: int = 128  # head bottleneck before the prototypes
    head_batch_norm: bool = True  # batch norm in the heads' MLPs (see DINOHead)
    local_crops: int = 4  # number of local crops
    global_scale: tuple = (0.5, 1.0)  # area fraction range of global crops
    local_scale: tuple = (0.15, 0.5)  # area fraction range of local crops
    teacher_temp: float = 0.04  # teacher softmax temperature (sharpening)
    student_temp: float = 0.1  # student softmax temperature
    center_momentum: float = 0.9  # EMA of the teacher-output centre
    centering: str = "sinkhorn"  # "center" (DINO's running mean) or "sinkhorn" (DINOv2's Sinkhorn-Knopp)
    momentum: float = 0.996  # initial teacher EMA momentum (cosine to 1)
    grad_clip: float = 3.0  # max gradient norm
    ibot_weight: float = 1.0  # weight of the masked patch-token loss (0: image-level DINO only)
    mask_ratio: tuple = (0.1, 0.5)  # fraction of patches masked in a masked student crop
    mask_probability: float = 0.5  # fraction of student global crops that are masked
    koleo_weight: float = 0.1  # weight of the KoLeo spreading term (0: off)
    input_blur: float = 0.0  # Gaussian low-pass (sigma, pixels) before the patch embedding (`ViTConfig.input_blur`)
    precision: str = "fp32"  # "bf16": autocast the forward passes (weights, EMA teacher and losses stay fp32)

    def __post_init__(self):
        if self.arch not in VIT_CONFIGS:
            raise ValueError(f"unknown arch {self.arch!r}; known: {sorted(VIT_CONFIGS)}")
        if not (0 < self.global_scale[0] <= self.global_scale[1] <= 1 and 0 < self.local_scale[0] <= self.local_scale[1] <= 1):
            raise ValueError("crop scales must satisfy 0 < low <= high <= 1")
        if self.centering not in ("center", "sinkhorn"):
            raise ValueError(f"centering must be 'center' or 'sinkhorn', got {self.centering!r}")
        if min(self.steps, self.batch_size, self.out_dim) < 1 or self.local_crops < 0:
            raise ValueError("steps, batch_size, out_dim must be >= 1 and local_crops >= 0")
        if not (0 <= self.mask_ratio[0] <= self.mask_ratio[1] < 1 and 0 <= self.mask_probability <= 1):
            raise ValueError("mask_ratio must satisfy 0 <= low <= high < 1 and mask_probability be in [0, 1]")
        if min(self.ibot_weight, self.koleo_weight, self.input_blur) < 0:
            raise ValueError("ibot_weight, koleo_weight and input_blur must be >= 0")
        check_precision(self.precision)


class DINOHead(nn.Module):
    """MLP -> L2-normalised bottleneck -> weight-normalised prototypes (norm fixed to 1).

    With `batch_norm` (DINO's `use_bn` option) the hidden layers are standardised over the batch.
    Env frames differ in a few percent of their pixels, so at initialisation every frame maps to
    nearly the same bottleneck vector, the sharpened teacher targets are nearly uniform, and the
    student collapses to the uniform output; batch norm removes the shared component and keeps
    the differences between frames, which is what the prototypes must separate.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int, bottleneck: int, batch_norm: bool = True):
        super().__init__()
        norm = (lambda: nn.BatchNorm1d(hidden)) if batch_norm else nn.Identity
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), norm(), nn.GELU(), nn.Linear(hidden, hidden), norm(),
                                 nn.GELU(), nn.Linear(hidden, bottleneck))
        self.prototypes = nn.Linear(bottleneck, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)  # [B, bottleneck]
        return F.linear(x, F.normalize(self.prototypes.weight, dim=-1))  # [B, K]


class TeacherTargets(nn.Module):
    """The teacher's side of self-distillation: centred (or Sinkhorn-balanced), sharpened distributions."""

    def __init__(self, out_dim: int, teacher_temp: float, center_momentum: float, centering: str = "center"):
        super().__init__()
        self.teacher_temp, self.center_momentum, self.centering = teacher_temp, center_momentum, centering
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Target distributions `[M, K]` for teacher logits `[M, K]`."""
        t = t.float()  # bf16 logits from autocast: the sharpening needs fp32
        if self.centering == "center":
            return F.softmax((t - self.center) / self.teacher_temp, dim=-1)
        return sinkhorn_knopp(t / self.teacher_temp)

    @torch.no_grad()
    def update(self, t: torch.Tensor) -> None:
        """Move the running centre towards the mean of teacher logits `[M, K]`."""
        m = self.center_momentum
        self.center.mul_(m).add_(t.float().mean(0, keepdim=True), alpha=1 - m)


class DINOLoss(nn.Module):
    """Cross-entropy between centred, sharpened teacher and student distributions over crop pairs."""

    def __init__(self, out_dim: int, teacher_temp: float, student_temp: float, center_momentum: float,
                 centering: str = "center"):
        super().__init__()
        self.student_temp = student_temp
        self.targets = TeacherTargets(out_dim, teacher_temp, center_momentum, centering)

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        """student: logits per crop (globals first) `[B, K]`; teacher: logits of the global crops."""
        targets = [self.targets(t) for t in teacher]
        logps = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student]
        total, pairs = 0.0, 0
        for ti, target in enumerate(targets):
            for si, logp in enumerate(logps):
                if si != ti:
                    total = total + (-target * logp).sum(-1).mean()
                    pairs += 1
        self.targets.update(torch.cat(teacher))
        return total / pairs


class IBOTPatchLoss(nn.Module):
    """iBOT's masked patch loss: cross-entropy between teacher and student patch distributions at masked positions."""

    def __init__(self, out_dim: int, teacher_temp: float, student_temp: float, center_momentum: float,
                 centering: str = "center"):
        super().__init__()
        self.student_temp = student_temp
        self.targets = TeacherTargets(out_dim, teacher_temp, center_momentum, centering)  # its own centre

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """student/teacher: logits of the masked patches `[M, K]`; masks: bool `[B, P]` with M True entries."""
        if not len(student):
            return student.sum()  # no masked patch in this batch: a zero that keeps the graph
        target = self.targets(teacher)  # [M, K]
        per_patch = -(target * F.log_softmax(student.float() / self.student_temp, dim=-1)).sum(-1)  # [M]
        per_image = (1.0 / masks.sum(1).clamp(min=1))[:, None].expand_as(masks)[masks]  # [M], each image weighs 1
        self.targets.update(teacher)
        return (per_patch * per_image).sum() / masks.any(1).sum()


def koleo_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko-Leonenko spreading term: -mean log distance of each normalised row of `[B, D]` to its nearest neighbour."""
    x = F.normalize(x.float(), dim=-1)
    dist = torch.cdist(x, x)  # [B, B]
    dist = dist + torch.eye(len(x), device=x.device) * 1e3  # a row is not its own neighbour
    return -torch.log(dist.min(dim=1).values + eps).mean()


def random_patch_masks(batch: int, patches: int, cfg: "DinoConfig", generator: torch.Generator) -> torch.Tensor:
    """Bool `[B, P]`: a `mask_probability` share of the images get a `mask_ratio` share of their patches masked."""
    u = torch.rand(batch, 2, generator=generator)
    ratio = cfg.mask_ratio[0] + (cfg.mask_ratio[1] - cfg.mask_ratio[0]) * u[:, 1]
    count = torch.where(u[:, 0] < cfg.mask_probability, (ratio * patches).round(), torch.zeros(batch))  # [B]
    rank = torch.rand(batch, patches, generator=generator).argsort(dim=1).argsort(dim=1)  # random rank of each patch
    return rank < count[:, None]


@torch.no_grad()
def sinkhorn_knopp(logits: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Soft assignment `[B, K]` with equal prototype usage over the batch (Caron et al. 2020, SwAV; DINOv2)."""
    B, K = logits.shape
    q = torch.exp(logits - logits.max()).T  # [K, B]
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True) * K
        q /= q.sum(dim=0, keepdim=True) * B
    return (q * B).T


def random_resized_crops(images: torch.Tensor, size: int, scale: tuple, generator: torch.Generator) -> torch.Tensor:
    """Batched random crops (area fraction in `scale`, aspect 3/4-4/3) resampled to `size`: `[B, 3, size, size]`."""
    B = images.shape[0]
    u = torch.rand(B, 4, generator=generator)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 1]
    w = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)  # crop width / image width
    h = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    cx, cy = (1 - w) * (2 * u[:, 2] - 1), (1 - h) * (2 * u[:, 3] - 1)  # centres in [-1, 1] keeping the crop inside
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    grid = F.affine_grid(theta.to(images), [B, 3, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _jitter(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mild per-image brightness/contrast jitter (on normalised images)."""
    B = x.shape[0]
    gain = (0.8 + 0.4 * torch.rand(B, 1, 1, 1, generator=generator)).to(x)
    shift = (0.2 * torch.rand(B, 1, 1, 1, generator=generator) - 0.1).to(x)
    return x * gain + shift


def multi_crop(images: torch.Tensor, cfg: DinoConfig, generator: torch.Generator) -> list[torch.Tensor]:
    """2 global crops at full size, then `local_crops` at half size (patch-aligned)."""
    S, p = images.shape[-1], VIT_CONFIGS[cfg.arch].patch_size
    local = max(p, (S // 2) // p * p)
    crops = [random_resized_crops(images, S, cfg.global_scale, generator) for _ in range(2)]
    crops += [random_resized_crops(images, local, cfg.local_scale, generator) for _ in range(cfg.local_crops)]
    return [_jitter(c, generator) for c in crops]


def pretrain_dino(frames: np.ndarray, config: DinoConfig = DinoConfig(), seed: int = 0, device: str = "cpu",
                  progress: bool = True, log_every: int = 10, state_path=None,
                  save_every: int = 200) -> tuple[ViTEncoder, list[dict]]:
    """Pretrain a ViT with DINO (+ iBOT patch loss + KoLeo) on uint8 frames `[M, H, W, 3]`.

    Args:
        frames: the training images (env frames; H = W = the arch's image size or resized to it).
        config: hyper-parameters.
        seed: seeds the initialisation, batch sampling, augmentations and masks.
        device: where to train.
        progress: show a tqdm bar.
        log_every: steps between log entries.
        state_path: if given, the full training state (networks, heads, optimizer, centres, RNG, log)
            is written there atomically every `save_every` steps, and a run started with the same
            frames count, config and seed resumes from it -- to the same result as an uninterrupted run.
        save_every: steps between state writes.

    Returns:
        The frozen teacher backbone (the encoder to use) and the loss log
        `[{"step", "loss", "dino", "ibot", "koleo"}]`.
    """
    cfg, gen = config, torch.Generator().manual_seed(seed)
    warn_if_emulated(device, cfg.precision)
    student = ViTEncoder(replace(VIT_CONFIGS[cfg.arch], input_blur=cfg.input_blur), seed=seed).to(device)
    D, first_patch = student.config.embed_dim, 1 + student.config.num_register_tokens
    with torch.random.fork_rng(devices=[]):  # the heads' default init uses the global RNG: seed it, leave it as it was
        torch.manual_seed(seed)
        s_heads = nn.ModuleDict({name: DINOHead(D, cfg.out_dim, cfg.head_hidden, cfg.bottleneck, cfg.head_batch_norm)
                                 for name in ("cls", "patch")}).to(device)
    teacher, t_heads = copy.deepcopy(student).requires_grad_(False), copy.deepcopy(s_heads).requires_grad_(False)
    losses = dict(dino=DINOLoss(cfg.out_dim, cfg.teacher_temp, cfg.student_temp, cfg.center_momentum, cfg.centering),
                  ibot=IBOTPatchLoss(cfg.out_dim, cfg.teacher_temp, cfg.student_temp, cfg.center_momentum, cfg.centering))
    for loss_fn in losses.values():
        loss_fn.to(device)
    params = list(student.parameters()) + list(s_heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    images = pixels_to_tensor(frames, student.config.image_size, "cpu")  # [M, 3, S, S]
    patches = student.config.grid**2
    log, start = [], 0
    modules = dict(student=student, teacher=teacher, s_heads=s_heads, t_heads=t_heads, dino=losses["dino"],
                   ibot=losses["ibot"], opt=opt)
    signature = {"config": omit_later_defaults(asdict(cfg), {"precision": "fp32"}), "seed": seed, "frames": len(frames)}
    if state_path is not None:
        start, log = _resume_pretraining(Path(state_path), modules, gen, signature)
    for step in tqdm(range(start, cfg.steps), desc="DINO pretraining", disable=not progress, initial=start,
                     total=cfg.steps):
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
        crops = multi_crop(images[idx].to(device), cfg, gen)  # augment on the device; random draws stay on the CPU
        masks = [random_patch_masks(cfg.batch_size, patches, cfg, gen).to(device) if cfg.ibot_weight else None
                 for _ in range(2)]  # [B, P] each
        with autocast(device, cfg.precision), short_sequence_attention(device, cfg.precision):
            parts = _step_losses(crops, masks, modules, cfg, first_patch)
        loss = parts["dino"] + cfg.ibot_weight * parts.get("ibot", 0.0) + cfg.koleo_weight * parts.get("koleo", 0.0)
        _set_lr(opt, step, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        _ema(teacher, student, t_heads, s_heads, 1 - (1 - cfg.momentum) * (math.cos(math.pi * step / cfg.steps) + 1) / 2)
        if step % log_every == 0 or step == cfg.steps - 1:
            log.append({"step": step, "loss": loss.detach().item()} | {k: v.detach().item() for k, v in parts.items()})
        if state_path is not None and ((step + 1) % save_every == 0 or step == cfg.steps - 1):
            save_atomic({"kind": "wmplan-dino-state", "signature": signature, "step": step + 1, "log": log,
                         "generator": gen.get_state()} | {k: m.state_dict() for k, m in modules.items()}, state_path)
    return teacher.freeze(), log


def _step_losses(crops: list, masks: list, nets: dict, cfg: DinoConfig, first_patch: int) -> dict:
    """One step's loss terms: `{"dino", "ibot" (when patches are masked), "koleo" (when weighted)}`.

    crops: the global crops first `[B, 3, S, S]`, then the local ones; masks: bool `[B, P]` per global crop
    (or None); nets: the student, teacher, their heads and the DINO/iBOT losses, by name.
    """
    student, teacher, s_heads, t_heads = nets["student"], nets["teacher"], nets["s_heads"], nets["t_heads"]
    with torch.no_grad():
        t_tokens = [teacher.forward_tokens(c) for c in crops[:2]]  # [B, 1+R+P, D]
        t_cls = [t_heads["cls"](t[:, 0]) for t in t_tokens]
    s_tokens = [student.forward_tokens(c, masks=m) for c, m in zip(crops[:2], masks)]
    s_tokens += [student.forward_tokens(c) for c in crops[2:]]
    parts = {"dino": nets["dino"]([s_heads["cls"](t[:, 0]) for t in s_tokens], t_cls)}
    if cfg.ibot_weight and sum(int(m.sum()) for m in masks) > 1:  # batch norm needs two masked patches
        with torch.no_grad():
            t_patch = torch.cat([t_heads["patch"](t[:, first_patch:][m]) for t, m in zip(t_tokens, masks)])  # [M, K]
        s_patch = torch.cat([s_heads["patch"](t[:, first_patch:][m]) for t, m in zip(s_tokens, masks)])  # [M, K]
        parts["ibot"] = nets["ibot"](s_patch, t_patch, torch.cat(masks))
    if cfg.koleo_weight:
        parts["koleo"] = sum(koleo_loss(t[:, 0]) for t in s_tokens[:2]) / 2
    return parts


def _resume_pretraining(path: Path, modules: dict, gen: torch.Generator, signature: dict) -> tuple[int, list]:
    """Load a state file written by `pretrain_dino` into `modules`; returns (next step, log). No file: (0, [])."""
    if not path.is_file():
        return 0, []
    state = load_checkpoint(path, kind="wmplan-dino-state")
    if _plain(state["signature"]) != _plain(signature):
        raise CheckpointError(f"{path} holds a pretraining run with another configuration, seed or frame count; "
                              "delete it or write the encoder elsewhere")
    for name, module in modules.items():
        module.load_state_dict(state[name])
    gen.set_state(state["generator"])
    return int(state["step"]), list(state["log"])


def _plain(obj):
    """Tuples as lists, as a checkpoint round trip returns them."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return [_plain(v) for v in obj] if isinstance(obj, (tuple, list)) else obj


def _set_lr(opt, step: int, cfg: DinoConfig) -> None:
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    cosine = 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
    for group in opt.param_groups:
        group["lr"] = cfg.lr * warm * cosine


@torch.no_grad()
def _ema(teacher, student, t_head, s_head, m: float) -> None:
    t_params = list(teacher.parameters()) + list(t_head.parameters())
    s_params = list(student.parameters()) + list(s_head.parameters())
    torch._foreach_mul_(t_params, m)  # one fused update instead of a Python loop per tensor
    torch._foreach_add_(t_params, [p.detach() for p in s_params], alpha=1 - m)
