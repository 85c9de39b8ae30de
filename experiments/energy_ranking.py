"""Does a latent's goal energy rank push-T states by how far their block is from the goal's block?

    python -m experiments.energy_ranking --data data/pusht_v2 --encoder ENC --pool-grid 0 \
        --out experiments/results/pusht_projection/energy_ranking.json

A planner can only be as good as its energy: the candidate it picks is the one whose predicted latent
scores lowest. This scores held-out frames of a dataset against goal frames drawn from the same
frames, with the benchmark's energy (visual latent MSE + proprio_weight x normalised-proprio MSE), on
several latents of one frozen encoder: its tokens, and their top-K principal components (fitted on the
training split's frames, as `wmplan fit-projection`), plain and whitened. For each goal it reports the
rank correlation (Spearman) of the energy with the block's distance to the goal's block (position and
angle, the angle as a lever point `--lever` mm from the centre) and with the agent's distance, and how
far the block is in the 10 frames of lowest energy. No simulator and no predictor: a cheap proxy to
check before planning with the latent oracle (`experiments/oracle_planning.py --encoder`).
A benchmark, not a test: it writes JSON, never a README number.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from wmplan.data import EpisodeDataset
from wmplan.encoders import encoder_hash, load_encoder
from wmplan.encoders.features import cache_features, load_features
from wmplan.encoders.projection import projection_from_tokens, sample_frames
from wmplan.probe import state_targets
from wmplan.results import hardware, write_json

BLOCK = ("block_x", "block_y", "sin(block_theta)", "cos(block_theta)")
AGENT = ("agent_x", "agent_y")
NEAREST = 10  # frames of lowest energy whose block distance is reported


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two 1-D arrays (continuous values: ties are negligible)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def held_out_frames(dataset, path, digest, episodes, stride: int):
    """Every `stride`-th frame of `episodes`: tokens `[M, N'*D]`, states `[M, S]`, proprio `[M, P]`."""
    tokens, states, proprio = [], [], []
    for e in episodes:
        f = load_features(path, digest, [int(e)])[0]  # [T+1, N', D]
        ep = dataset.episode(int(e), keys=("states", "proprio"))
        idx = np.arange(0, len(f), stride)
        tokens.append(f[idx].reshape(len(idx), -1))
        states.append(ep["states"][idx])
        proprio.append(ep["proprio"][idx])
    return np.concatenate(tokens), np.concatenate(states), np.concatenate(proprio)


def latents(encoder, fit_tokens: torch.Tensor, tokens: np.ndarray, dims, seed: int) -> dict:
    """name -> visual latent `[M, F]`: the tokens, and their top-K components, plain and whitened."""
    out = {"tokens": tokens}
    x = torch.from_numpy(tokens)
    for k in dims:
        for whiten in (False, True):
            projected, explained = projection_from_tokens(encoder, fit_tokens, k, seed, whiten)
            with torch.inference_mode():
                out[f"pca{k}" + ("_whitened" if whiten else "")] = projected.project(x)[:, 0].numpy()
            print(f"pca{k}{' whitened' if whiten else ''}: {explained:.3f} of the variance", flush=True)
    return out


def ranking(z: np.ndarray, proprio: np.ndarray, block: np.ndarray, agent: np.ndarray, goals, weight: float) -> dict:
    """Mean rank correlations of the energy to each goal with block and agent distance, and the median
    block distance of the `NEAREST` frames of lowest energy."""
    rb, ra, near = [], [], []
    for g in goals:
        others = np.arange(len(z)) != g
        energy = ((z[others] - z[g]) ** 2).mean(1) + weight * ((proprio[others] - proprio[g]) ** 2).mean(1)
        d_block = np.linalg.norm(block[others] - block[g], axis=1)
        rb.append(spearman(energy, d_block))
        ra.append(spearman(energy, np.linalg.norm(agent[others] - agent[g], axis=1)))
        near.append(d_block[np.argsort(energy)[:NEAREST]].mean())
    return {"spearman_block": float(np.mean(rb)), "spearman_agent": float(np.mean(ra)),
            "nearest_block_distance_mm": float(np.median(near))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a push-T dataset (its feature cache is built if missing)")
    p.add_argument("--encoder", required=True, help="an unprojected encoder file")
    p.add_argument("--pool-grid", type=int, default=None, help="token pooling (0: every patch; default: the file's)")
    p.add_argument("--dims", type=int, nargs="+", default=[64, 256], help="principal components kept")
    p.add_argument("--proprio-weights", type=float, nargs="+", default=[0.0, 0.1, 1.0])
    p.add_argument("--episodes", type=int, default=100, help="held-out (validation) episodes scored")
    p.add_argument("--stride", type=int, default=5, help="every stride-th frame of those episodes")
    p.add_argument("--goals", type=int, default=200, help="goal frames, drawn from the scored frames")
    p.add_argument("--lever", type=float, default=60.0, help="block angle as a point this far from its centre (mm)")
    p.add_argument("--max-frames", type=int, default=20_000, help="training frames the components are fitted on")
    p.add_argument("--seed", type=int, default=0, help="the split's seed (as `wmplan train`), the fit's and the goals'")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    dataset = EpisodeDataset(args.data)
    encoder = load_encoder(args.encoder, pool_grid=args.pool_grid)
    if encoder.config.project_dim:
        p.error("--encoder must be unprojected: the components are fitted here")
    path, digest = cache_features(dataset, encoder, progress=False), encoder_hash(encoder)
    train_ids, val_ids = dataset.split(0.1, args.seed)
    tokens, states, proprio = held_out_frames(dataset, path, digest, val_ids[: args.episodes], args.stride)
    names = dataset.meta["state_names"]
    block = state_targets(states, names, BLOCK) * np.array([1, 1, args.lever, args.lever], dtype=np.float32)
    agent = state_targets(states, names, AGENT)
    proprio = (proprio - proprio.mean(0)) / proprio.std(0).clip(1e-6)  # as the world model normalises it
    fit = sample_frames(path, digest, np.asarray(train_ids), dataset.lengths(), args.max_frames, args.seed)
    goals = np.random.default_rng(args.seed).choice(len(tokens), min(args.goals, len(tokens)), replace=False)
    rows = []
    for name, z in latents(encoder, fit, tokens, args.dims, args.seed).items():
        for w in args.proprio_weights:
            rows.append({"latent": name, "features": z.shape[1], "proprio_weight": w,
                         **ranking(z, proprio, block, agent, goals, w)})
            r = rows[-1]
            print(f"{name:16s} w={w:<5} block {r['spearman_block']:.3f}  agent {r['spearman_agent']:.3f}  "
                  f"nearest block {r['nearest_block_distance_mm']:.1f} mm", flush=True)
    write_json(args.out, {"data": args.data, "encoder": args.encoder, "encoder_hash": digest,
                          "pool_grid": encoder.config.pool_grid, "frames": len(tokens), "goals": len(goals),
                          "episodes": int(min(args.episodes, len(val_ids))), "stride": args.stride,
                          "lever_mm": args.lever, "fit_frames": len(fit), "seed": args.seed, "rows": rows,
                          "seconds": round(time.perf_counter() - start, 1), "hardware": hardware()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
