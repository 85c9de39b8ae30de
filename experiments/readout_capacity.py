"""Is the readout what limits push-T's predicted block error? A stronger probe against the checkpoint's.

    python -m experiments.readout_capacity --data data/pusht_5k --checkpoint RUN/world_model.pt \
        --out experiments/results/pusht_projection/s34/readout_capacity_w128d2_60k.json

The checkpoint's probe was fitted on 20,000 frames. Here a wider MLP probe is fitted on more frames of the
same training episodes (the world model's own split) and for longer. Both are then read on every frame of
the held-out episodes (real latents) and on the latents the predictor imagines 1, 5 and 10 planned steps
ahead (`experiments.eval_world_model.prediction_errors`, the same 400 windows). If the stronger probe reads
real latents better but predicted ones no better, the error is the predictor's, not the readout's.
A benchmark, not a test: it writes JSON.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from experiments.encoder_probes import TARGETS, block_errors
from experiments.eval_world_model import prediction_errors
from wmplan.data import EpisodeDataset
from wmplan.probe import ProbeConfig, fit_probe, probe_config_dict, state_targets
from wmplan.results import write_json
from wmplan.train import LatentData, TrainConfig, sample_latent_frames
from wmplan.world_model import WorldModel


STRONGER = ProbeConfig(hidden=512, steps=8000, lr=1e-3, batch_size=1024)  # an MLP probe, wider and longer-trained
STRONGER_FRAMES = 200_000  # its training frames; the checkpoint's probe had 20,000


def add_probe_arguments(p: argparse.ArgumentParser, which: str) -> None:
    """`--frames`, `--hidden` and `--steps` of an MLP probe, defaulting to `STRONGER`'s."""
    p.add_argument("--frames", type=int, default=STRONGER_FRAMES, help=f"training frames of {which}")
    p.add_argument("--hidden", type=int, default=STRONGER.hidden, help=f"hidden width of {which} (an MLP)")
    p.add_argument("--steps", type=int, default=STRONGER.steps, help=f"AdamW steps of {which}")


def probe_config(p: argparse.ArgumentParser, args) -> ProbeConfig:
    """`STRONGER` with the sizes `add_probe_arguments` parsed; a usage error for sizes below 1."""
    if min(args.frames, args.hidden, args.steps) < 1:
        p.error("--frames, --hidden and --steps must be positive")
    return replace(STRONGER, hidden=args.hidden, steps=args.steps)


def held_out_frames(z_eps, states, ids, names) -> tuple[torch.Tensor, np.ndarray]:
    """Every frame of episodes `ids`: latents `[M, N, D]` and push-T targets `[M, 6]` (TARGETS)."""
    return torch.cat([z_eps[i] for i in ids]), state_targets(np.concatenate([states[i] for i in ids]), names, TARGETS)


def readout_errors(wm: WorldModel, ds: EpisodeDataset, val_ids, z_val: torch.Tensor, y_val: np.ndarray) -> dict:
    """Median block errors of `wm.probe` on real held-out latents and on predicted ones."""
    with torch.inference_mode():
        pos, ang = block_errors(wm.probe(z_val).numpy(), y_val)
    predicted = {h: {k: v[k] for k in ("block_pos_mm_median", "block_angle_deg_median")}
                 for h, v in prediction_errors(wm, ds, val_ids).items()}
    return {"real_latents": {"block_pos_mm_median": round(float(np.median(pos)), 2),
                             "block_angle_deg_median": round(float(np.median(ang)), 2), "frames": len(y_val)},
            "predicted": predicted}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="JSON output")
    add_probe_arguments(p, "the stronger probe")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    wm, ds = WorldModel.load(args.checkpoint), EpisodeDataset(args.data)
    if wm.probe is None or tuple(wm.probe.names) != TARGETS:
        p.error(f"the checkpoint's probe reads {wm.probe.names if wm.probe else 'nothing'}; this experiment compares "
                f"push-T probes reading {TARGETS}")
    config = probe_config(p, args)
    names = ds.meta["state_names"]
    data = LatentData(ds, wm.encoder, progress=False)
    train_ids, val_ids = ds.split(TrainConfig().val_fraction, seed=0)  # what `wmplan train --seed 0` held out
    z_eps = data.take_latents(wm.proprio_mean.cpu(), wm.proprio_std.cpu())
    z_val, y_val = held_out_frames(z_eps, data.states, val_ids, names)  # [M, N, D], [M, 6]
    result = {"checkpoint_probe": readout_errors(wm, ds, val_ids, z_val, y_val)}
    fit_start = time.perf_counter()
    z_train, s_train = sample_latent_frames(z_eps, data.states, train_ids, args.frames, seed=0)
    wm.probe, r2 = fit_probe(z_train, state_targets(s_train, names, TARGETS), z_val, y_val, TARGETS, config)
    fitted = {"config": probe_config_dict(config), "train_frames": len(z_train), "r2": r2,
              "fit_seconds": round(time.perf_counter() - fit_start, 1)}
    result["stronger_probe"] = readout_errors(wm, ds, val_ids, z_val, y_val) | fitted
    result |= {"checkpoint": args.checkpoint, "seconds": round(time.perf_counter() - start, 1),
               "torch_threads": args.threads}
    write_json(args.out, result)
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
