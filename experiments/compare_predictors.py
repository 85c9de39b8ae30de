"""Push-T predictors compared on the same held-out windows by one shared probe, with paired intervals.

    python -m experiments.compare_predictors --data data/pusht_10k --out s35/compare.json \
        --checkpoints BASE/world_model.pt OTHER/world_model.pt ...

`experiments.eval_world_model` reads each model's predictions with its own checkpoint probe and with an
attentive probe it fits per run; medians over 400 windows then differ by a millimetre or two with the
window draw alone, and models trained on different datasets carry different probes. Here one MLP probe is
fitted on the real visual tokens (the proprio left out, which each model normalises with its own
statistics) of the dataset's training episodes, every model imagines the same held-out windows
(`eval_world_model.held_out_windows`, the windows of `prediction_errors`), the shared probe reads the
block from the predicted visual tokens, and each model's median error is compared with the first
model's by a paired bootstrap over the windows. The models must share the encoder. Evaluate on a
dataset whose held-out episodes none of them trained on (`experiments/extend_dataset.py` builds such a
union). A benchmark, not a test: it writes JSON.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from experiments.encoder_probes import TARGETS, block_errors
from experiments.eval_world_model import held_out_windows, imagine_window
from experiments.readout_capacity import add_probe_arguments, held_out_frames, probe_config
from wmplan.data import EpisodeDataset
from wmplan.encoders.loading import encoder_hash
from wmplan.probe import Probe, ProbeConfig, fit_probe, probe_config_dict, state_targets
from wmplan.results import write_json
from wmplan.train import LatentData, TrainConfig, sample_latent_frames
from wmplan.world_model import WorldModel

HORIZONS = (1, 5, 10)  # planned steps ahead, as eval_world_model's


def shared_probe(wm: WorldModel, ds: EpisodeDataset, frames: int, config: ProbeConfig) -> tuple[Probe, dict]:
    """A probe `[..., N, Dv] -> [..., 6]` (TARGETS) fitted on real visual tokens of the training episodes."""
    names, data = ds.meta["state_names"], LatentData(ds, wm.encoder, progress=False)
    train_ids, val_ids = ds.split(TrainConfig().val_fraction, seed=0)  # what `wmplan train --seed 0` held out
    z_eps = data.tokens  # [T+1, N, Dv] per episode
    z_train, s_train = sample_latent_frames(z_eps, data.states, train_ids, frames, seed=0)
    z_val, y_val = held_out_frames(z_eps, data.states, val_ids, names)
    probe, r2 = fit_probe(z_train, state_targets(s_train, names, TARGETS), z_val, y_val, TARGETS, config)
    with torch.inference_mode():
        pos, ang = block_errors(probe(z_val).numpy(), y_val)
    return probe, {"r2": r2, "train_frames": len(z_train), "config": probe_config_dict(config),
                   "real_latents": {"block_pos_mm_median": round(float(np.median(pos)), 2),
                                    "block_angle_deg_median": round(float(np.median(ang)), 2), "frames": len(y_val)}}


def window_errors(wm: WorldModel, windows: list[dict], probe: Probe, names) -> tuple[np.ndarray, np.ndarray]:
    """Block position (mm) and angle (deg) errors `[W, H]` of `probe` on `wm`'s predicted visual tokens."""
    reads, truths = [], []
    for w in windows:
        _, z_pred = imagine_window(wm, w)  # [1, H, N, D]
        with torch.inference_mode():
            reads.append(probe(z_pred[0, ..., : wm.visual_dim]).numpy())  # [H, 6]
        truths.append(state_targets(w["states"][wm.history :], names, TARGETS))  # [H, 6]
    return block_errors(np.stack(reads), np.stack(truths))


def paired_median_difference(errors: np.ndarray, reference: np.ndarray, draws: int = 2000, seed: int = 0) -> dict:
    """median(errors) - median(reference) over the same windows `[W]`, with a 95% paired bootstrap interval."""
    idx = np.random.default_rng(seed).integers(0, len(errors), size=(draws, len(errors)))  # [B, W]
    diffs = np.median(errors[idx], axis=1) - np.median(reference[idx], axis=1)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"difference": round(float(np.median(errors) - np.median(reference)), 2),
            "ci95": [round(float(lo), 2), round(float(hi), 2)]}


def _summary(pos: np.ndarray, ang: np.ndarray, ref: tuple[np.ndarray, np.ndarray] | None) -> dict:
    out = {}
    for h in HORIZONS:
        row = {"block_pos_mm_median": round(float(np.median(pos[:, h - 1])), 2),
               "block_angle_deg_median": round(float(np.median(ang[:, h - 1])), 2)}
        if ref is not None:
            row["vs_first"] = {"block_pos_mm": paired_median_difference(pos[:, h - 1], ref[0][:, h - 1]),
                               "block_angle_deg": paired_median_difference(ang[:, h - 1], ref[1][:, h - 1])}
        out[f"{h}_steps"] = row
    return out


def _check_comparable(p: argparse.ArgumentParser, models: list[WorldModel], paths: list[str]) -> None:
    first = models[0]
    for wm, path in zip(models[1:], paths[1:]):
        if encoder_hash(wm.encoder) != encoder_hash(first.encoder):
            p.error(f"{path} has another encoder than {paths[0]}; a shared probe reads one representation")
        if (wm.history, wm.frameskip) != (first.history, first.frameskip):
            p.error(f"{path} has history/frameskip {wm.history}/{wm.frameskip}, {paths[0]} "
                    f"{first.history}/{first.frameskip}; the windows would differ")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="push-T dataset; its held-out episodes give the windows")
    p.add_argument("--checkpoints", required=True, nargs="+", help="world models; the first is the reference")
    p.add_argument("--out", required=True, help="JSON output")
    p.add_argument("--windows", type=int, default=400, help="held-out windows (eval_world_model's 400)")
    add_probe_arguments(p, "the shared probe")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if min(args.windows, args.threads) < 1:
        p.error("--windows and --threads must be positive")
    config = probe_config(p, args)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    ds, models = EpisodeDataset(args.data), [WorldModel.load(c) for c in args.checkpoints]
    if not {"block_x", "block_y", "block_theta"} <= set(ds.meta.get("state_names", [])):
        p.error(f"{args.data} has no push-T block state ({ds.meta.get('state_names')}); this compares push-T predictors")
    _check_comparable(p, models, args.checkpoints)
    probe, fitted = shared_probe(models[0], ds, args.frames, config)
    val_ids = ds.split(TrainConfig().val_fraction, seed=0)[1]
    windows = held_out_windows(ds, val_ids, models[0].history + max(HORIZONS), models[0].frameskip, args.windows, 0)
    errors = [window_errors(wm, windows, probe, ds.meta["state_names"]) for wm in models]
    result = {"shared_probe": fitted, "windows": len(windows), "data": args.data,
              "models": [{"checkpoint": c, **_summary(*e, errors[0] if i else None)}
                         for i, (c, e) in enumerate(zip(args.checkpoints, errors))],
              "seconds": round(time.perf_counter() - start, 1), "torch_threads": args.threads}
    write_json(args.out, result)
    for m in result["models"]:
        print(m["checkpoint"], {h: m[f"{h}_steps"] for h in HORIZONS})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
