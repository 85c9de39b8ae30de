"""Training the latent predictor on cached features of a frozen encoder, then fitting the probe.

Loss (DINO-WM, Zhou et al. 2024, Eq. 2): teacher-forced latent MSE over every frame of a window,
plus an optional k-step autoregressive rollout MSE. Runs are resumable: `OUT/train_state.pt` holds
the predictor, optimizer, step and RNG state, written atomically every `ckpt_every` steps, so
re-running the same command continues and ends exactly where an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from wmplan.checkpoint import CheckpointError, load_checkpoint, omit_later_defaults, save_atomic
from wmplan.data import EpisodeDataset, gather_window, window_index
from wmplan.encoders.features import cache_features, load_features
from wmplan.encoders.loading import encoder_hash
from wmplan.encoders.vit import ViTEncoder
from wmplan.precision import autocast, check_precision, warn_if_emulated
from wmplan.predictor import Predictor, PredictorConfig
from wmplan.probe import Probe, ProbeConfig, fit_probe, state_targets
from wmplan.world_model import WorldModel

__all__ = ["TrainConfig", "LatentData", "train_world_model", "default_probe_targets", "PROBE_TARGETS"]

STATE_FILE, MODEL_FILE, METRICS_FILE = "train_state.pt", "world_model.pt", "metrics.json"
PROBE_TARGETS = {"pusht": ("agent_x", "agent_y", "block_x", "block_y", "sin(block_theta)", "cos(block_theta)")}


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping of a world-model training run."""

    steps: int = 20_000  # optimizer steps
    batch_size: int = 64  # windows per step
    lr: float = 3e-4  # peak AdamW learning rate
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_steps: int = 200  # linear warm-up, then cosine decay to 10% of lr
    grad_clip: float = 1.0  # max global gradient norm
    rollout_steps: int = 0  # k extra autoregressive steps in the loss (0: teacher forcing only)
    rollout_weight: float = 0.5  # weight of the rollout loss
    proprio_weight: float = 1.0  # loss weight of each proprio feature relative to a visual one (1: plain MSE over D)
    val_fraction: float = 0.1  # episodes held out for validation and probe R²
    val_every: int = 500  # steps between validations
    val_windows: int = 512  # validation windows (a fixed subset)
    ckpt_every: int = 500  # steps between resumable checkpoints
    probe: ProbeConfig = field(default_factory=ProbeConfig)  # readout fitted at the end
    readout_weight: float = 0.0  # >0: fit the probe on real latents first, freeze it, and add this weight times
    # the (standardised) squared difference of what it reads from the predictions and from their targets
    probe_frames: int = 20_000  # at most this many training frames to fit the probe
    precision: str = "fp32"  # "bf16": autocast the training forward passes (weights, checkpoints, validation stay fp32)

    def __post_init__(self):
        if min(self.steps, self.batch_size, self.val_every, self.ckpt_every, self.val_windows) < 1:
            raise ValueError("steps, batch_size, val_every, ckpt_every and val_windows must be >= 1")
        if self.rollout_steps < 0 or not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("rollout_steps must be >= 0 and val_fraction in [0, 1)")
        if not self.proprio_weight > 0:
            raise ValueError(f"proprio_weight must be > 0, got {self.proprio_weight}")
        if self.readout_weight < 0:
            raise ValueError(f"readout_weight must be >= 0, got {self.readout_weight}")
        check_precision(self.precision)


def default_probe_targets(env: str, state_names) -> tuple[str, ...]:
    """The env's probe targets, or every position column (not velocities, mocap or extras)."""
    if env in PROBE_TARGETS and all(t.split("(")[-1].rstrip(")") in state_names for t in PROBE_TARGETS[env]):
        return PROBE_TARGETS[env]
    return tuple(n for n in state_names if not n.startswith(("d_", "act", "mocap", "extra")))


class LatentData:
    """Latents (cached tokens + normalised proprio), actions and states of a dataset's episodes.

    Args:
        dataset: an `EpisodeDataset`.
        encoder: the frozen encoder (features are cached next to the dataset).
        device: where the encoder runs while caching.
    """

    def __init__(self, dataset: EpisodeDataset, encoder: ViTEncoder, device: str = "cpu", progress: bool = True):
        path = cache_features(dataset, encoder, device=device, progress=progress)
        tokens = load_features(path, encoder)
        eps = [dataset.episode(i, keys=("proprio", "actions", "states")) for i in range(len(dataset))]
        self.tokens = [torch.from_numpy(t) for t in tokens]  # [T+1, N, Dv] per episode
        self.proprio = [torch.from_numpy(e["proprio"].astype(np.float32)) for e in eps]  # [T+1, P]
        self.actions = [e["actions"].astype(np.float32) for e in eps]  # [T, A]
        self.states = [e["states"] for e in eps]  # [T+1, S]
        self.lengths = np.array([len(a) for a in self.actions])

    def latents(self, mean: torch.Tensor, std: torch.Tensor) -> list[torch.Tensor]:
        """z per episode `[T+1, N, Dv + P]` with the proprio normalised by (mean, std)."""
        return [self._latent(tok, p, mean, std) for tok, p in zip(self.tokens, self.proprio)]

    @staticmethod
    def _latent(tok: torch.Tensor, p: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        emb = ((p - mean) / std)[:, None].expand(-1, tok.shape[1], -1)  # [T+1, N, P]
        return torch.cat([tok, emb], dim=-1)  # [T+1, N, Dv + P]

    def take_latents(self, mean: torch.Tensor, std: torch.Tensor) -> list[torch.Tensor]:
        """`latents`, dropping each episode's bare tokens once its latent is built: one copy of the
        features in memory instead of two (several GB on push-T). `tokens` is empty afterwards."""
        out = []
        while self.tokens:
            out.append(self._latent(self.tokens.pop(0), self.proprio[len(out)], mean, std))
        return out


def _batch(z_eps, actions, windows, n_frames: int, frameskip: int, device):
    """Stack windows `[(e, t)]` into z `[B, n, N, D]` and actions `[B, n-1, fs*A]`."""
    zs, acts = [], []
    for e, t in windows:
        w = gather_window({"z": z_eps[e], "actions": actions[e]}, int(t), n_frames, frameskip, frame_keys=("z",))
        zs.append(w["z"])
        acts.append(torch.from_numpy(w["actions"]))
    return torch.stack(zs).to(device), torch.stack(acts).to(device)


def latent_mse(pred: torch.Tensor, target: torch.Tensor, visual_dim: int, proprio_weight: float = 1.0) -> torch.Tensor:
    """MSE over `[..., D]` latents with the proprio features (those after `visual_dim`) weighted.

    The proprio is 4 of D = 132 features on the maze, so plain MSE gives the agent's own state
    (what a planner's energy and guardrails read) 3% of the loss; `proprio_weight` > 1 raises it.
    """
    pred = pred.float()  # under bf16 autocast a prediction may come out in bf16; the loss is taken in fp32
    if proprio_weight == 1.0:
        return F.mse_loss(pred, target)
    sq = (pred - target).square()  # [..., D]
    return (sq[..., :visual_dim].sum(-1) + proprio_weight * sq[..., visual_dim:].sum(-1)).mean() / pred.shape[-1]


def window_loss(wm: WorldModel, z: torch.Tensor, a: torch.Tensor, cfg: TrainConfig,
                readout: Probe | None = None) -> tuple[torch.Tensor, dict]:
    """Teacher-forced MSE on every history frame, plus the k-step rollout MSE, plus the readout loss.

    Args:
        z: `[B, h + max(k, 1), N, D]`; a: `[B, h + max(k, 1) - 1, A_fs]`.
        readout: a frozen probe; with `cfg.readout_weight > 0` the predictions must read as their targets do.
    """
    h, k = wm.history, cfg.rollout_steps
    mse = lambda p, t: latent_mse(p, t, wm.visual_dim, cfg.proprio_weight)  # noqa: E731
    pred = wm.predictor(z[:, :h], a[:, :h])  # [B, h, N, D]: frame i predicts frame i+1
    tf = mse(pred, z[:, 1 : h + 1])
    parts, loss = {"teacher_forced": tf.item()}, tf
    preds, targets = [pred], [z[:, 1 : h + 1]]
    if k:
        roll = wm.rollout(z[:, :h], a[:, h - 1 : h - 1 + k], a[:, : h - 1])  # [B, k, N, D]
        ro = mse(roll, z[:, h : h + k])
        parts["rollout"], loss = ro.item(), loss + cfg.rollout_weight * ro
        preds.append(roll), targets.append(z[:, h : h + k])
    if readout is not None and cfg.readout_weight > 0:
        read = lambda x: readout(torch.cat(x, dim=1)) / readout.out_std  # noqa: E731  [B, h (+k), K]
        rd = (read(preds) - read(targets)).pow(2).mean()
        parts["readout"], loss = rd.item(), loss + cfg.readout_weight * rd
    return loss, parts


def _lr(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def validate(wm, z_eps, actions, windows, n_frames, cfg, device, readout=None) -> dict:
    """Mean losses over fixed validation windows."""
    totals: dict = {}
    for s in range(0, len(windows), cfg.batch_size):
        z, a = _batch(z_eps, actions, windows[s : s + cfg.batch_size], n_frames, wm.frameskip, device)
        _, parts = window_loss(wm, z, a, cfg, readout)
        for name, v in parts.items():
            totals[name] = totals.get(name, 0.0) + v * len(z)
    return {f"val_{k}": v / max(1, len(windows)) for k, v in totals.items()}


def _run_signature(env, pcfg, tcfg, seed, enc_hash, init_hash: str | None = None) -> dict:
    train = omit_later_defaults(asdict(tcfg) | {"steps": None}, _LATER_TRAIN_DEFAULTS)
    train["probe"] = omit_later_defaults(train["probe"], _LATER_PROBE_DEFAULTS)
    init = {"init": init_hash} if init_hash else {}
    predictor = omit_later_defaults(asdict(pcfg), _LATER_PREDICTOR_DEFAULTS)
    return {"env": env, "predictor": predictor, "train": train, "seed": seed, "encoder_hash": enc_hash} | init


# runs started before these options existed still resume
_LATER_PROBE_DEFAULTS = {"attentive": False, "batch_size": 0}
_LATER_TRAIN_DEFAULTS = {"readout_weight": 0.0, "precision": "fp32"}
_LATER_PREDICTOR_DEFAULTS = {"token_mlp": 0}


def _save_state(path, wm, opt, step, gen, log, signature):
    save_atomic({"kind": "wmplan-train-state", "signature": signature, "step": step, "log": log,
                 "world_model": wm.checkpoint_dict(), "optimizer": opt.state_dict(),
                 "generator": gen.get_state()}, path)


def _resume(path: Path, wm, opt, gen, signature) -> tuple[int, list]:
    if not path.is_file():
        return 0, []
    state = load_checkpoint(path, kind="wmplan-train-state")
    if state["signature"] != signature:
        raise CheckpointError(
            f"{path.parent} holds a run with another configuration (env, model, training settings, seed or "
            "encoder differ); pass a new --out directory or delete the old one"
        )
    wm.predictor.load_state_dict(state["world_model"]["predictor_state"])
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    return int(state["step"]), list(state["log"])


def train_world_model(dataset: EpisodeDataset, encoder: ViTEncoder, out_dir, env: str,
                      predictor_config: PredictorConfig = PredictorConfig(), config: TrainConfig = TrainConfig(),
                      seed: int = 0, device: str = "cpu", progress: bool = True, on_step=None,
                      init: dict | None = None) -> dict:
    """Train (or resume) a world model; write `world_model.pt` and `metrics.json` into `out_dir`.

    Args:
        dataset: the episodes (its meta gives image size, action and proprio dims).
        encoder: the frozen encoder.
        out_dir: run directory (resumable state, final model, metrics).
        env: environment name recorded in the checkpoint.
        predictor_config: predictor architecture (history, frameskip, ...).
        config: optimisation settings.
        seed: seeds initialisation, window sampling and the probe.
        device: where to train.
        progress: show a tqdm bar.
        on_step: optional callback `on_step(step, losses)` after each optimizer step.
        init: a predictor state dict to start from (fine-tuning), e.g. `WorldModel.load(path).predictor.state_dict()`.

    Returns:
        The metrics dict (final train/val losses, probe R² per target, timing).
    """
    out = _run_dir(out_dir)
    meta, cfg, pcfg = dataset.meta, config, predictor_config
    warn_if_emulated(device, cfg.precision)
    data = LatentData(dataset, encoder, device, progress)
    train_ids, val_ids = dataset.split(cfg.val_fraction, seed)
    p_all = torch.cat([data.proprio[i] for i in train_ids])
    wm = _build_model(encoder, pcfg, data, env, meta, p_all, seed, device)
    z_eps = data.take_latents(wm.proprio_mean.cpu(), wm.proprio_std.cpu())
    n_frames = pcfg.history + max(1, cfg.rollout_steps)
    train_w, val_w = (_windows(data.lengths, ids, n_frames, pcfg.frameskip) for ids in (train_ids, val_ids))
    if not len(train_w):
        raise ValueError(f"no training window of {n_frames} frames x frameskip {pcfg.frameskip} fits in the episodes")
    val_w = val_w[np.random.default_rng(seed).permutation(len(val_w))[: cfg.val_windows]]
    if init is not None:
        _load_init(wm, init)
    readout, readout_r2 = _fit_readout(z_eps, data, train_ids, val_ids, meta, env, cfg, seed, device) \
        if cfg.readout_weight else (None, {})
    opt = torch.optim.AdamW(wm.predictor.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    signature = _run_signature(env, pcfg, cfg, seed, encoder_hash(encoder), _state_hash(init) if init else None)
    step, log = _resume(out / STATE_FILE, wm, opt, gen, signature)
    clock = _Clock(log[-1].get("elapsed_s", 0.0) if log else 0.0)  # a resumed run goes on from its last entry
    wm.predictor.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="training world model", disable=not progress)
    while step < cfg.steps:
        idx = torch.randint(len(train_w), (cfg.batch_size,), generator=gen).numpy()
        z, a = _batch(z_eps, data.actions, train_w[idx], n_frames, pcfg.frameskip, device)
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg)
        with autocast(device, cfg.precision):
            loss, parts = window_loss(wm, z, a, cfg, readout)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(wm.predictor.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4g}")
        if step % cfg.val_every == 0 or step == cfg.steps:
            wm.predictor.eval()
            log.append({"step": step, "loss": loss.item(), **parts, **validate(wm, z_eps, data.actions, val_w, n_frames, cfg, device, readout),
                        "elapsed_s": clock.elapsed()})
            wm.predictor.train()
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            _save_state(out / STATE_FILE, wm, opt, step, gen, log, signature)
        if on_step is not None:
            on_step(step, parts)
    bar.close()
    return _finish(wm, z_eps, data, train_ids, val_ids, meta, env, cfg, seed, device, out, log, (readout, readout_r2))


def _run_dir(path) -> Path:
    """`path` as a run directory, created if missing; a clear error where a file stands in the way."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"run directory {out} is a file; --out must be a directory (pass a new path)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:  # a file where a parent directory should be
        raise ValueError(f"cannot create run directory {out}: {err.strerror} ({err.filename}); "
                         "--out must be a directory path") from None
    return out


class _Clock:
    """Wall seconds of training (steps and validation) since `start` seconds were already spent."""

    def __init__(self, start: float = 0.0):
        self.start, self.t0 = start, time.perf_counter()

    def elapsed(self) -> float:
        return round(self.start + time.perf_counter() - self.t0, 1)


def _load_init(wm: WorldModel, state: dict) -> None:
    try:
        wm.predictor.load_state_dict(state)
    except RuntimeError as e:  # missing keys or other shapes
        raise CheckpointError(f"the initial predictor does not fit this configuration (same --predictor, --width, "
                              f"--depth, --history, --frameskip and encoder grid needed): {str(e).splitlines()[0]}") from None


def _state_hash(state: dict) -> str:
    h = hashlib.sha1()
    for name, t in sorted(state.items()):
        h.update(name.encode()), h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _build_model(encoder, pcfg, data, env, meta, p_all, seed, device) -> WorldModel:
    N, Dv = data.tokens[0].shape[1:]
    P, A = p_all.shape[1], data.actions[0].shape[1]
    predictor = Predictor(pcfg, N, Dv + P, A, proprio_dim=P, seed=seed)
    return WorldModel(encoder, predictor, env, meta["image_size"], A, p_all.mean(0), p_all.std(0), device=device)


def _windows(lengths, ids, n_frames, frameskip) -> np.ndarray:
    w = window_index(lengths[ids], n_frames, frameskip)
    w[:, 0] = np.asarray(ids)[w[:, 0]] if len(w) else w[:, 0]  # local -> dataset episode index
    return w


def _fit_probe(z_eps, data, train_ids, val_ids, meta, env, cfg, seed, device) -> tuple[Probe | None, dict]:
    """The probe `cfg.probe` fitted on the real latents `z_eps` of training frames, and its held-out R² (None
    without targets)."""
    targets = default_probe_targets(env, meta.get("state_names", []))
    if not (targets and len(val_ids)):
        return None, {}
    zt, st = sample_latent_frames(z_eps, data.states, train_ids, cfg.probe_frames, seed)
    zv, sv = torch.cat([z_eps[i] for i in val_ids]), np.concatenate([data.states[i] for i in val_ids])
    names = meta["state_names"]
    yt, yv = state_targets(st, names, targets), state_targets(sv, names, targets)
    return fit_probe(zt, yt, zv, yv, targets, cfg.probe, seed, device)


def sample_latent_frames(z_eps, states, ids, limit: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """At most `limit` random frames of episodes `ids`: latents `[M, N, D]` and states `[M, S]`.

    The frames, in order, are those a permutation of the episodes' concatenation would pick, but
    only they are copied: the concatenation of every training latent is several GB on push-T.
    """
    starts = np.cumsum([0] + [len(z_eps[i]) for i in ids])  # [E+1]
    keep = np.random.default_rng(seed).permutation(starts[-1])[:limit]  # [M] frames of the concatenation
    episode = np.searchsorted(starts, keep, side="right") - 1  # [M]
    frame = keep - starts[episode]
    z = torch.stack([z_eps[ids[e]][f] for e, f in zip(episode, frame)])
    return z, np.stack([states[ids[e]][f] for e, f in zip(episode, frame)])


def _fit_readout(z_eps, data, train_ids, val_ids, meta, env, cfg, seed, device) -> tuple[Probe, dict]:
    """The frozen probe of the readout loss and its R² (fitted before training; it is the checkpoint's probe too)."""
    probe, r2 = _fit_probe(z_eps, data, train_ids, val_ids, meta, env, cfg, seed, device)
    if probe is None:
        raise ValueError(f"readout_weight needs probe targets and validation episodes; {env!r} has none here")
    return probe.requires_grad_(False), r2


def _finish(wm, z_eps, data, train_ids, val_ids, meta, env, cfg, seed, device, out, log, readout=(None, {})) -> dict:
    """Fit the probe on frozen latents (or keep the readout loss's), save the final model and metrics."""
    wm.eval()
    probe, r2 = readout if readout[0] is not None else _fit_probe(z_eps, data, train_ids, val_ids, meta, env, cfg,
                                                                 seed, device)
    if probe is not None:
        wm.probe = probe
    wm.save(out / MODEL_FILE)
    metrics = {"env": env, "steps": cfg.steps, "final": log[-1] if log else {}, "probe_r2": r2, "log": log,
               "predictor_params": wm.predictor.num_parameters(), "flops_per_step": wm.predictor.flops_per_step(),
               "tokens_per_frame": wm.latent_shape[0], "latent_dim": wm.latent_shape[1],
               # wall time of the steps and validations, summed over resumed runs (to the last validation)
               "train_seconds": log[-1].get("elapsed_s") if log else None, "device": str(device),
               "torch_threads": torch.get_num_threads()}
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    return metrics
