"""What the encoder and the world model know, measured on held-out push-T episodes.

    python experiments/eval_world_model.py --data data/pusht --checkpoint experiments/checkpoints/pusht/world_model.pt

1. Encoder: linear (ridge) probe from frozen *visual* features (proprio excluded) of held-out frames
   to agent xy, block xy, sin/cos block angle (penalty chosen on training frames) -- for the
   checkpoint's encoder and for a randomly initialised ViT of the same shape, so the value of
   pretraining is visible. The same for an attentive probe (learned queries attend over the
   tokens, `wmplan.probe.AttentivePool`), which can read relations between patches, such as the
   block's angle, that no linear map of the flattened tokens reads.
2. World model: the checkpoint's probe, and the attentive probe fitted on the encoder's real
   features, applied to latents *predicted* 1, 5 and 10 steps ahead (each step = frameskip env
   steps) from the real history and actions: block position error (mm) and angle error (deg),
   medians over held-out windows. And whether the predictor uses its actions at all (`action_use`):
   its one-step MSE beside copying the last latent and beside feeding it other windows' actions,
   for the tokens that change most, the other tokens and the proprio features.

With `--video FILE` (and `decoder.pt` beside the checkpoint) it also draws what the world model
imagines: held-out windows rolled out open loop, real | decoded prediction at each predicted step.

Writes experiments/results/pusht_world_model.json (a benchmark, not a test). With `--encoder FILE`
(an encoder from `wmplan pretrain-encoder`, e.g. a CPU trial) only part 1 runs, on that encoder, and
the result goes to experiments/results/pusht_encoder_probe.json; `--with-cls` adds the ridge probe on the
class token beside the patch tokens, the features DINO's own linear evaluation reads, and `--dinov2-eval`
the one on DINOv2's (the class tokens of the last 4 blocks and the average patch token) beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout, installed or not

import numpy as np
import torch

from wmplan.bench import save_gif
from wmplan.data import EpisodeDataset, gather_window, window_index
from wmplan.decoder import load_decoder
from wmplan.encoders import load_encoder
from wmplan.probe import Probe, state_targets
from wmplan.results import write_json
from wmplan.world_model import WorldModel

from experiments.encoder_probes import ATTENTIVE, TARGETS, block_errors, cls_probe, encoder_probes, random_like


def _frames(ds, ids, per_episode: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and probe targets of `per_episode` random frames of each episode in `ids` (0: every frame)."""
    names = ds.meta["state_names"]
    px, ys = [], []
    for e in ids:
        ep = ds.episode(int(e), keys=("pixels", "states"))
        count = len(ep["pixels"])
        pick = rng.choice(count, size=min(per_episode, count), replace=False) if per_episode else np.arange(count)
        px.append(ep["pixels"][pick])
        ys.append(state_targets(ep["states"][pick], names, TARGETS))
    return np.concatenate(px), np.concatenate(ys)


def imagine_window(wm: WorldModel, w: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Open-loop imagination on a window of T + H frames: the real history z ``[1, T, N, D]`` and the
    latents predicted from it under the recorded actions, ``[1, H, N, D]`` (no later frame is seen)."""
    T = wm.history
    with torch.inference_mode():
        z = wm.encode(w["pixels"][:T], w["proprio"][:T])[None]  # [1, T, N, D]
        acts = torch.as_tensor(w["actions"], dtype=torch.float32)[None]  # [1, T+H-1, fs*A]
        return z, wm.rollout(z, acts[:, T - 1 :], acts[:, : T - 1] if T > 1 else None)


def imagined_rollout_video(wm: WorldModel, ds, ids, path, windows: int = 4, horizon: int = 10, seed: int = 0) -> None:
    """GIF of open-loop imagination on held-out windows, one row per window: real | imagined (decoded) at
    predicted steps 1..horizon (each frameskip env steps)."""
    fs, T = wm.frameskip, wm.history
    index = window_index(ds.lengths()[ids], T + horizon, fs, stride=fs)
    index = index[np.random.default_rng(seed).permutation(len(index))[:windows]]
    rows = []
    for e, t in index:
        w = gather_window(ds.episode(int(ids[e])), int(t), T + horizon, fs)
        imagined = wm.decoder.to_uint8(imagine_window(wm, w)[1][0])  # [H, S, S, 3]
        rows.append(np.concatenate([w["pixels"][T:], imagined], axis=2))  # [H, S, 2S, 3]
    save_gif(path, np.concatenate(rows, axis=1), duration=0.5)  # frames [H, rows*S, 2S, 3]


def decoded_angle_errors(wm: WorldModel, ds, ids, horizon: int = 5, windows: int = 100, step_deg: float = 5.0,
                         seed: int = 0) -> dict:
    """Block angle read from *decoded* frames, a non-linear readout where the linear probe reads none.

    For held-out windows, decode the real latent of the frame `horizon` steps ahead and the latent
    predicted for it; in each picture find the angle whose rendering (agent and block where the probe
    reads them from that latent) is closest in pixels. Median errors (deg) against the true angle, beside
    the same search on the real frame (the method's floor); a uniform guess has a median error of 90 deg.
    """
    import envs

    env = envs.make("pusht", image_size=wm.image_size)
    env.reset(seed=seed)  # render_state restores the current state afterwards, so there must be one
    fs, T = wm.frameskip, wm.history
    index = window_index(ds.lengths()[ids], T + horizon, fs, stride=fs)
    index = index[np.random.default_rng(seed).permutation(len(index))[:windows]]
    angles = np.deg2rad(np.arange(-180.0, 180.0, step_deg))
    names = [wm.probe.index(n) for n in ("agent_x", "agent_y", "block_x", "block_y")]
    errors: dict[str, list] = {"real_frame": [], "decoded_real_latent": [], "decoded_predicted_latent": []}
    for e, t in index:
        w = gather_window(ds.episode(int(ids[e])), int(t), T + horizon, fs)
        z_pred = imagine_window(wm, w)[1]
        with torch.inference_mode():
            z_real = wm.encode(w["pixels"][-1:], w["proprio"][-1:])  # [1, N, D]
        truth = float(w["states"][-1][4])
        pictures = {"real_frame": (w["pixels"][-1], z_real), "decoded_real_latent": (wm.decoder.to_uint8(z_real)[0], z_real),
                    "decoded_predicted_latent": (wm.decoder.to_uint8(z_pred[:, -1])[0], z_pred[:, -1])}
        for key, (img, z) in pictures.items():
            with torch.inference_mode():
                read = wm.probe(z)[0, names].numpy().clip(25.0, 487.0)  # agent xy, block xy (mm)
            templates = np.stack([env.render_state(np.r_[read, a, np.zeros(5)]) for a in angles]).astype(np.float32)
            best = angles[np.argmin(((templates - img.astype(np.float32)) ** 2).mean(axis=(1, 2, 3)))]
            errors[key].append(float(np.rad2deg(abs((best - truth + np.pi) % (2 * np.pi) - np.pi))))
    env.close()
    result = {k: round(float(np.median(v)), 1) for k, v in errors.items()}
    return result | {"windows": len(index), "horizon_steps": horizon, "angle_grid_deg": step_deg}


def held_out_windows(ds, ids, n_frames: int, frameskip: int, count: int, seed: int) -> list[dict]:
    """`count` random windows of `n_frames` frames (frameskip apart, starts on the frameskip grid) from episodes `ids`."""
    index = window_index(ds.lengths()[ids], n_frames, frameskip, stride=frameskip)
    index = index[np.random.default_rng(seed).permutation(len(index))[:count]]
    episodes = {}
    return [gather_window(episodes.setdefault(int(ids[e]), ds.episode(int(ids[e]))), int(t), n_frames, frameskip)
            for e, t in index]


def prediction_errors(wm: WorldModel, ds, ids, horizons=(1, 5, 10), max_windows: int = 400, seed: int = 0,
                      attentive: Probe | None = None) -> dict:
    """Median block position (mm) / angle (deg) error of the probe on predicted latents.

    Two no-change baselines: the probe's read of the last real latent (`no_change_baseline_...`,
    the probe's own error included), and the true state of the last real frame (`no_change_true_state`).

    With `attentive` (a probe `[..., N, Dv] -> [..., 6]` in `TARGETS` order, fitted on the encoder's
    real visual tokens) the same errors of its reads of the predicted visual tokens are added.
    """
    T, Hmax = wm.history, max(horizons)
    names, probe = ds.meta["state_names"], wm.probe
    reads, truths, hold, last = [], [], [], []
    attentive_reads = []
    ti = [probe.index(n) for n in TARGETS[2:]]  # the checkpoint probe's block outputs
    for w in held_out_windows(ds, ids, T + Hmax, wm.frameskip, max_windows, seed):
        z, z_pred = imagine_window(wm, w)
        with torch.inference_mode():
            reads.append(probe(z_pred)[0].numpy())  # [Hmax, K]
            hold.append(probe(z[:, -1])[0].numpy())  # [K], probe on the last real latent
            if attentive is not None:
                attentive_reads.append(attentive(z_pred[0, ..., : wm.visual_dim]).numpy())  # [Hmax, 6]
        truths.append(state_targets(w["states"][T:], names, TARGETS))  # [Hmax, 6]
        last.append(state_targets(w["states"][T - 1], names, TARGETS))  # [6], the last real frame's state
    truth = np.stack(truths)  # [W, Hmax, 6]
    as_targets = lambda r: np.concatenate([np.zeros_like(r[..., :2]), r[..., ti]], axis=-1)  # block in TARGETS' slots
    pos, ang = block_errors(as_targets(np.stack(reads)), truth)  # [W, Hmax] each
    held = np.hypot(*np.moveaxis(np.stack(hold)[:, None, ti[:2]] - truth[..., 2:4], -1, 0))  # the block stays put
    still_pos, still_ang = block_errors(np.stack(last)[:, None], truth)  # ... where it truly was: no probe error
    if attentive is not None:
        att_pos, att_ang = block_errors(np.stack(attentive_reads), truth)
    median = lambda x, h: round(float(np.median(x[:, h - 1])), 2)
    out = {}
    for h in horizons:
        out[f"{h}_steps"] = {"env_steps": h * wm.frameskip, "block_pos_mm_median": median(pos, h),
                             "block_angle_deg_median": median(ang, h),
                             "no_change_baseline_block_pos_mm_median": median(held, h), "windows": len(truth),
                             "no_change_true_state": {"block_pos_mm_median": median(still_pos, h),
                                                      "block_angle_deg_median": median(still_ang, h)}}
        if attentive is not None:
            out[f"{h}_steps"]["attentive_probe"] = {"block_pos_mm_median": median(att_pos, h),
                                                    "block_angle_deg_median": median(att_ang, h)}
    return out


def action_use(predict, z: torch.Tensor, actions: torch.Tensor, target: torch.Tensor, visual_dim: int,
               changed: int = 4, seed: int = 0) -> dict:
    """Does the predictor use its actions? One-step MSE of `predict(z, actions)` against `target`, beside
    copying the last latent and beside the same predictor fed other windows' actions (a permutation).

    Args:
        predict: `(z [B, T, N, D], actions [B, T, A]) -> [B, N, D]`.
        z, actions, target: real history, its actions, and the real next latent `[B, N, D]`.
        visual_dim: the first `visual_dim` features are the encoder's; the rest are proprio.
        changed: the visual MSE is split into the `changed` tokens per window whose real latent changes
            most (where the agent or the block moved) and the others.

    Returns MSEs per feature, `{"visual_changed": {...}, "visual_other": {...}, "proprio": {...}}` (no
    "visual_other" when a frame has at most `changed` tokens), each
    with `predicted`, `copy_last` and `shuffled_actions`. A predictor that reads its actions has
    `predicted` well below `shuffled_actions`; one that ignores them has the two equal.
    """
    perm = torch.randperm(len(z), generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        preds = {"predicted": predict(z, actions), "copy_last": z[:, -1], "shuffled_actions": predict(z, actions[perm])}
    order = ((target - z[:, -1])[..., :visual_dim] ** 2).mean(-1).argsort(-1, descending=True)  # [B, N]
    parts = {"visual_changed": order[:, :changed], "visual_other": order[:, changed:]}
    out = {}
    for part, tokens in parts.items():
        if not tokens.shape[1]:  # fewer tokens than `changed` (e.g. one projected token): no "other" part
            continue
        err = {k: ((p - target)[..., :visual_dim] ** 2).mean(-1).gather(1, tokens) for k, p in preds.items()}
        out[part] = {k: round(float(e.mean()), 6) for k, e in err.items()}
    if target.shape[-1] > visual_dim:
        out["proprio"] = {k: round(float(((p - target)[..., visual_dim:] ** 2).mean()), 6) for k, p in preds.items()}
    return out


def action_use_on_windows(wm: WorldModel, ds, ids, windows: int = 400, seed: int = 0) -> dict:
    """`action_use` on held-out one-step windows of episodes `ids` (history, its actions, next frame)."""
    T = wm.history
    ws = held_out_windows(ds, ids, T + 1, wm.frameskip, windows, seed)
    stack = lambda key: np.concatenate([w[key] for w in ws])
    with torch.inference_mode():
        z = wm.encode(stack("pixels"), stack("proprio") if wm.proprio_dim else None)  # [B*(T+1), N, D]
    z = z.reshape(len(ws), T + 1, *z.shape[1:])
    actions = torch.as_tensor(np.stack([w["actions"][:T] for w in ws]), dtype=torch.float32)  # [B, T, A_fs]
    return action_use(wm.predict, z[:, :T], actions, z[:, T], wm.visual_dim, seed=seed) | {"windows": len(ws)}


def _encoder_meta(path) -> dict:
    """How an encoder file was pretrained (its recorded config, steps and last losses), when it says."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    meta = {k: obj[k] for k in ("dino_config", "dataset") if k in obj}
    if obj.get("dino_log"):
        meta["last_log"] = obj["dino_log"][-1]
    return meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", default="experiments/checkpoints/pusht/world_model.pt")
    p.add_argument("--encoder", default=None, help="probe this encoder file only (no world model)")
    p.add_argument("--pool-grid", type=int, default=None,
                   help="with --encoder: pool its tokens to this grid instead of its own (0: every patch)")
    p.add_argument("--out", default=None,
                   help="JSON output (default experiments/results/pusht_world_model.json, with --encoder pusht_encoder_probe.json)")
    p.add_argument("--frames-per-episode", type=int, default=20, help="random frames of each training episode (0: every frame)")
    p.add_argument("--split-seed", type=int, default=0,
                   help="with --encoder: seed of the split into training and held-out episodes (10%% held out)")
    p.add_argument("--val-frames-per-episode", type=int, default=None,
                   help="random frames of each held-out episode (default: --frames-per-episode; 0: every frame)")
    p.add_argument("--train-episodes", type=int, default=0,
                   help="training episodes whose frames fit the encoder probe (default 0: all of them; a linear "
                        "probe on every patch token has thousands of inputs and needs the frames)")
    p.add_argument("--video", default=None,
                   help="also write a GIF of imagined rollouts on held-out windows (real | imagined); needs "
                        "decoder.pt beside the checkpoint (wmplan train-decoder)")
    p.add_argument("--attentive-steps", type=int, default=ATTENTIVE.steps,
                   help="AdamW steps of the attentive probes (0 with --encoder: linear probes only)")
    p.add_argument("--with-cls", action="store_true",
                   help="with --encoder: also fit the linear probe on the class token beside the patch tokens")
    p.add_argument("--dinov2-eval", action="store_true",
                   help="with --encoder: also fit the linear probe on DINOv2's linear-evaluation features (class "
                        "tokens of the last 4 blocks, the average patch token) beside the patch tokens")
    p.add_argument("--dinov2-dense", action="store_true",
                   help="with --encoder: also fit the linear probe on DINOv2's dense linear-evaluation features (the "
                        "--dinov2-eval features plus the pooled patch tokens of the last 4 blocks)")
    p.add_argument("--action-use-only", action="store_true",
                   help="only measure whether the predictor uses its actions (about a minute); print it, write it to --out if given")
    args = p.parse_args(argv)
    start = time.perf_counter()
    ds = EpisodeDataset(args.data)
    wm = None if args.encoder else WorldModel.load(args.checkpoint)
    if args.action_use_only:
        if wm is None:
            p.error("--action-use-only needs a world model (not --encoder)")
        result = {"action_use": action_use_on_windows(wm, ds, ds.split(0.1, seed=0)[1]), "checkpoint": args.checkpoint}
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        return 0
    if args.video:
        if wm is None:
            p.error("--video needs a world model (not --encoder)")
        wm.decoder = load_decoder(Path(args.checkpoint).with_name("decoder.pt"), wm)
    with_cls = args.with_cls or args.dinov2_eval or args.dinov2_dense
    if (args.pool_grid is not None or with_cls) and not args.encoder:
        p.error("--pool-grid, --with-cls, --dinov2-eval and --dinov2-dense apply to --encoder (a world model's encoder "
                "keeps the grid it was trained on)")
    if args.attentive_steps < (0 if args.encoder else 1):
        p.error("--attentive-steps must be positive (0, linear probes only, applies to --encoder)")
    encoder = load_encoder(args.encoder, pool_grid=args.pool_grid) if args.encoder else wm.encoder
    if args.split_seed and not args.encoder:
        p.error("--split-seed applies to --encoder (a world model is evaluated on the episodes it was not trained on)")
    train_ids, val_ids = ds.split(0.1, seed=args.split_seed)
    rng = np.random.default_rng(0)
    train_ids = train_ids[: args.train_episodes] if args.train_episodes else train_ids
    val_per_episode = args.frames_per_episode if args.val_frames_per_episode is None else args.val_frames_per_episode
    train, val = _frames(ds, train_ids, args.frames_per_episode, rng), _frames(ds, val_ids, val_per_episode, rng)
    random_vit = random_like(encoder, train[0])
    config = replace(ATTENTIVE, steps=args.attentive_steps) if args.attentive_steps else None
    pretrained, attentive = encoder_probes(encoder, train, val, TARGETS, config)
    random_init, _ = encoder_probes(random_vit, train, val, TARGETS, config)
    frames = {"train_frames": len(train[0]), "val_frames": len(val[0]), "split_seed": args.split_seed}
    result = {"encoder_probe_r2": {"pretrained": pretrained["linear"], "random_init": random_init["linear"]} | frames}
    if attentive is not None:
        result["attentive_probe"] = {"pretrained": pretrained["attentive"], "random_init": random_init["attentive"],
                                     "config": asdict(config)} | frames
    if with_cls and encoder.config.project_dim:
        p.error("--with-cls, --dinov2-eval and --dinov2-dense need an encoder without a projection (the projection "
                "drops the class token)")
    last4 = min(4, encoder.config.depth)
    for flag, key, blocks, avgpool, dense in (
            (args.with_cls, "encoder_probe_r2_with_cls", 1, False, False),
            (args.dinov2_eval, "encoder_probe_r2_dinov2_eval", last4, True, False),
            (args.dinov2_dense, "encoder_probe_r2_dinov2_dense", last4, True, True)):
        if flag:
            result[key] = {name: cls_probe(vit, train, val, blocks, avgpool, dense) for name, vit in
                           (("pretrained", encoder), ("random_init", random_vit))} | frames | {"class_token_blocks": blocks}
    if args.encoder:
        result |= {"encoder": args.encoder, "encoder_meta": _encoder_meta(args.encoder), "pool_grid": encoder.config.pool_grid}
    else:
        result |= {"prediction": prediction_errors(wm, ds, val_ids, attentive=attentive),
                   "action_use": action_use_on_windows(wm, ds, val_ids), "checkpoint": args.checkpoint}
        if args.video:
            imagined_rollout_video(wm, ds, val_ids, args.video)
            result["video"] = args.video
            result["decoded_block_angle_error_deg"] = decoded_angle_errors(wm, ds, val_ids)
    result["seconds"] = round(time.perf_counter() - start, 1)
    default = "pusht_encoder_probe.json" if args.encoder else "pusht_world_model.json"
    write_json(args.out or f"experiments/results/{default}", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
