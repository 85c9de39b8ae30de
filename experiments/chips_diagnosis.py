"""Where do the chips planners fail: the goal energy, or the world model's predictions of it?

    python -m experiments.chips_diagnosis --checkpoint experiments/checkpoints/chips/world_model.pt \
        --out experiments/results/chips_diagnosis/shipped.json

Two checks on tuning tasks (seeds 5000+, clear of the benchmark's), each a rank correlation (Spearman):

1. **The energy on real frames.** From each task's start, K pushes drawn uniformly from the box
   ``[-box, box]^4`` are each executed in the simulator from the same start state. The visual goal energy
   (the benchmark's latent MSE to the goal frame, proprio left out) of each real next frame is ranked
   against that frame's fraction of chips inside the goal square (a good energy: strongly negative) and
   its Chamfer distance to the goal chips (strongly positive).
2. **The model's prediction of it.** The same pushes, rolled one step by the world model from the
   start frame's latent: the energy of each predicted latent ranked against the energy of the real
   next frame. A planner can only pick good pushes when this is high; near 0 it picks at random, and an
   optimiser pushed against the model then finds pushes the model gets wrong.

It also reports the goal energy's proprio part (the board's position and heading against the goal
frame's, a parked board) beside the visual part's spread across the pushes: when the first, times the
benchmark's proprio weight, is larger, the board's end position decides the plan, not the chips.
A diagnostic, not a benchmark: it writes JSON, never a README number.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import envs
from experiments.energy_ranking import spearman
from wmplan.results import write_json
from wmplan.world_model import WorldModel


def _energies(wm, z: torch.Tensor, goal: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Visual and proprio parts of the goal energy of latents `z` [K, N, D] against `goal` [1, N, D]: [K] each."""
    vis = wm.visual_dim
    d = (z - goal) ** 2
    return d[..., :vis].mean((-1, -2)).numpy(), d[..., vis:].mean((-1, -2)).numpy()


def diagnose_task(env, wm, seed: int, pushes: int, box: float) -> dict:
    """Both checks on one task: K pushes from its start state, real and predicted."""
    obs, info = env.reset(seed=seed)
    goal_obs, init = env.goal_observation(), info["state"]
    actions = np.random.default_rng(seed).uniform(-box, box, (pushes, 4)).astype(np.float32)
    frames, proprio, inside, chamfer = [], [], [], []
    for a in actions:
        env.reset(seed=seed, options={"init_state": init})
        o, _, _, _, i = env.step(a)
        frames.append(o["pixels"]), proprio.append(o["proprio"])
        inside.append(i["fraction_inside"]), chamfer.append(i["chamfer_mm"])
    with torch.no_grad():
        goal = wm.encode(goal_obs["pixels"][None], goal_obs["proprio"][None])  # [1, N, D]
        z0 = wm.encode(obs["pixels"][None], obs["proprio"][None])  # [1, N, D]
        z_pred = wm.rollout(z0[:, None].expand(pushes, -1, -1, -1), torch.as_tensor(actions)[:, None])[:, -1]  # [K, N, D]
        z_real = wm.encode(np.stack(frames), np.stack(proprio))  # [K, N, D]
    e_real, p_real = _energies(wm, z_real, goal)
    e_pred, _ = _energies(wm, z_pred, goal)
    return {"seed": seed, "start_fraction_inside": float(info["fraction_inside"]),
            "rho_real_energy_vs_fraction_inside": spearman(e_real, inside),
            "rho_real_energy_vs_chamfer": spearman(e_real, chamfer),
            "rho_predicted_vs_real_energy": spearman(e_pred, e_real),
            "rho_predicted_energy_vs_fraction_inside": spearman(e_pred, inside),
            "visual_energy_spread": float(e_real.max() - e_real.min()),
            "proprio_energy_median": float(np.median(p_real))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="experiments/checkpoints/chips/world_model.pt")
    p.add_argument("--tasks", type=int, default=8)
    p.add_argument("--pushes", type=int, default=48, help="random pushes per task")
    p.add_argument("--box", type=float, default=0.8, help="pushes drawn from [-box, box]^4 (action units)")
    p.add_argument("--seed", type=int, default=5000, help="first task seed (keep clear of benchmark seeds)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    wm, env = WorldModel.load(args.checkpoint, env="chips"), envs.make("chips")
    tasks = [diagnose_task(env, wm, s, args.pushes, args.box) for s in range(args.seed, args.seed + args.tasks)]
    keys = [k for k in tasks[0] if k.startswith(("rho_", "visual_", "proprio_"))]
    write_json(args.out, {"checkpoint": args.checkpoint, "tasks": len(tasks), "pushes": args.pushes, "box": args.box,
                          "mean": {k: round(float(np.mean([t[k] for t in tasks])), 3) for k in keys},
                          "per_task": tasks, "seconds": round(time.perf_counter() - start, 1)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
