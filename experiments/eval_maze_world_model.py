"""Does the maze world model know the walls? Predicted vs real agent position, open loop.

    python experiments/eval_maze_world_model.py --data /work/data/maze \
        --checkpoint experiments/checkpoints/maze/world_model.pt [--out experiments/results/maze_world_model.json]

1. Held-out windows of the dataset (the training run's validation episodes): from the real
   history, roll the model out k = 1..5 planned steps (each = frameskip env steps) under the
   recorded actions and compare the agent position carried by the predicted latents (their proprio
   part) with the simulator's. Reported apart for windows whose real path comes within 0.12 of a
   wall (the agent radius is 0.1) and for those that stay clear.
2. The planner's kind of actions on the benchmark's seeds: from each start, full throttle straight
   at the goal for 25 env steps (the plan a wall-blind model would choose). When a wall is in the
   way the real agent is stopped by it; the table gives the predicted-vs-real error at the end and
   how far the prediction lies inside the wall.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout, installed or not

import numpy as np  # noqa: E402
import torch  # noqa: E402

from envs.maze import MazeEnv  # noqa: E402
from wmplan.data import EpisodeDataset, gather_window, window_index  # noqa: E402
from wmplan.train import LatentData  # noqa: E402
from wmplan.world_model import WorldModel  # noqa: E402

NEAR_WALL = 0.12  # clearance below which the agent (radius 0.1) is counted as at a wall


def _windows(data: LatentData, wm: WorldModel, ids, k: int, max_windows: int, seed: int):
    z_eps = data.latents(wm.proprio_mean.cpu(), wm.proprio_std.cpu())
    n = wm.history + k
    rows = window_index(data.lengths[ids], n, wm.frameskip, stride=wm.frameskip)
    rows[:, 0] = np.asarray(ids)[rows[:, 0]]
    rows = rows[np.random.default_rng(seed).permutation(len(rows))[:max_windows]]
    zs, acts, states = [], [], []
    for e, t in rows:
        w = gather_window({"z": z_eps[e], "actions": data.actions[e], "states": data.states[e]}, int(t), n,
                          wm.frameskip, frame_keys=("z",))
        zs.append(w["z"])
        acts.append(torch.from_numpy(w["actions"]))
        states.append(w["states"])
    return torch.stack(zs), torch.stack(acts), np.stack(states)  # [W, n, N, D], [W, n-1, A_fs], [W, n, S]


def held_out_errors(wm: WorldModel, data: LatentData, ids, layout, k: int = 5, max_windows: int = 2000,
                    seed: int = 0) -> dict:
    """Median position error per predicted step, for windows at a wall and clear of walls."""
    z, a, s = _windows(data, wm, ids, k, max_windows, seed)
    h = wm.history
    with torch.inference_mode():
        pred = torch.cat([wm.rollout(z[i : i + 256, :h], a[i : i + 256, h - 1 :], a[i : i + 256, : h - 1])
                          for i in range(0, len(z), 256)])  # [W, k, N, D]
    pos = wm.proprio_of(pred)[..., :2].numpy()  # [W, k, 2]
    real = s[:, h:, :2]  # [W, k, 2]
    err = np.linalg.norm(pos - real, axis=-1)
    clearance = np.array([[layout.wall_clearance(p) for p in w] for w in s[:, h - 1 :, :2]])
    at_wall = clearance.min(1) < NEAR_WALL
    still = np.linalg.norm(s[:, h:, :2] - s[:, h - 1 : h, :2], axis=-1)  # no-change baseline
    out = {"windows": int(len(err)), "windows_at_wall": int(at_wall.sum())}
    for name, mask in (("at_wall", at_wall), ("clear", ~at_wall)):
        out[name] = {f"{i + 1}_steps": {"median": _r(np.median(err[mask, i])), "p90": _r(np.quantile(err[mask, i], 0.9)),
                                        "no_change_median": _r(np.median(still[mask, i]))} for i in range(k)}
    return out


def _r(x) -> float:
    return round(float(x), 3)


def straight_at_goal(wm: WorldModel, env: MazeEnv, seeds, steps: int = 25) -> dict:
    """Full throttle at the goal from each benchmark start: predicted vs real end position."""
    fs, rows = wm.frameskip, []
    for seed in seeds:
        obs, info = env.reset(seed=int(seed))
        start, goal = info["agent_pos"].copy(), env.goal_state[:2].copy()
        direction = (goal - start) / np.linalg.norm(goal - start)
        action = np.clip(direction / np.abs(direction).max(), -1, 1).astype(np.float32)  # saturated
        real = []
        for t in range(steps):
            _, _, _, _, info = env.step(action)
            real.append(info["agent_pos"].copy())
        with torch.inference_mode():
            z0 = wm.encode(obs["pixels"][None], obs["proprio"][None])  # [1, N, D]
            z_hist = z0[:, None].expand(1, wm.history, *z0.shape[1:])  # history padded as in MPC
            plan = torch.as_tensor(np.tile(action, fs))[None, None].expand(1, steps // fs, -1)  # [1, H, A_fs]
            pred = wm.proprio_of(wm.rollout(z_hist, plan.contiguous()))[0, -1, :2].numpy()
        end = real[-1]
        rows.append({"seed": int(seed), "blocked": bool(np.linalg.norm(end - start) < 0.8 * min(np.linalg.norm(goal - start), 1.25)),
                     "error": _r(np.linalg.norm(pred - end)), "pred_clearance": _r(env.layout.wall_clearance(pred)),
                     "pred": [_r(v) for v in pred], "real": [_r(v) for v in end]})
    blocked = [r for r in rows if r["blocked"]]
    free = [r for r in rows if not r["blocked"]]
    summary = lambda rs: {"n": len(rs), "median_error": _r(np.median([r["error"] for r in rs])) if rs else None,  # noqa: E731
                          "predicted_inside_wall": sum(r["pred_clearance"] == 0 for r in rs)}
    return {"env_steps": steps, "blocked_by_wall": summary(blocked), "clear_path": summary(free),
            "blocked_episodes": blocked}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="maze dataset the checkpoint was trained on (its held-out split is used)")
    p.add_argument("--checkpoint", default="experiments/checkpoints/maze/world_model.pt")
    p.add_argument("--seeds", type=int, default=50, help="benchmark seeds 0..N-1 for the straight-at-goal test")
    p.add_argument("--val-fraction", type=float, default=0.1, help="as in training")
    p.add_argument("--out", type=Path, default=None, help="JSON output (default: print only)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    start = time.perf_counter()
    wm = WorldModel.load(args.checkpoint, env="maze")
    dataset = EpisodeDataset(args.data)
    _, val_ids = dataset.split(args.val_fraction, 0)
    env = MazeEnv(**dataset.meta.get("env_kwargs", {}), image_size=wm.image_size)
    data = LatentData(dataset, wm.encoder, progress=False)
    result = {"checkpoint": args.checkpoint, "data": args.data,
              "held_out": held_out_errors(wm, data, val_ids, env.layout),
              "straight_at_goal": straight_at_goal(wm, env, range(args.seeds)),
              "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
