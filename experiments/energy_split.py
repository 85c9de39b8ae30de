"""Which half of a push-T task does the benchmark's goal energy reward: the block or the agent?

    python experiments/energy_split.py --proprio-weight 0.1

For each benchmark task (same seeds as `wmplan bench`) two made-up states are scored against the
goal with the benchmark's energy (visual latent MSE + proprio_weight x proprio MSE):
"block solved" (the goal's block pose, the agent where it starts) and "agent solved" (the goal's
agent position, the block where it starts); both at rest. An energy that serves push-T must score
the first lower: the block is the task. Writes experiments/results/pusht_energy_split.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

import envs
from envs.pusht import AGENT_RADIUS, inside_t
from wmplan.bench import REPO_ROOT, load_spec
from wmplan.costs import CostContext, GoalEnergy
from wmplan.world_model import WorldModel
from wmplan.evaluate import make_tasks

RESULTS = Path(__file__).parent / "results"


def _latent(env, wm, state) -> torch.Tensor:
    obs = env.observation_of_state(state)
    with torch.inference_mode():
        return wm.encode(torch.as_tensor(obs["pixels"][None]), torch.as_tensor(obs["proprio"][None]))[0]  # [P, D]


def _terms(z: torch.Tensor, goal: torch.Tensor, vis: int) -> dict:
    """The benchmark's goal-energy parts (unweighted) of latent ``z [P, D]`` against ``goal [P, D]``."""
    ctx = CostContext(torch.zeros(1, 1, 1, 1), z_pred=z[None, None, None], z_goal=goal[None])  # B = N = H = 1
    parts = {"visual": (0, vis), "proprio": (vis, z.shape[-1])}
    return {name: float(GoalEnergy(features=features).amount(ctx)) for name, features in parts.items()}


def split(env, wm, tasks) -> list[dict]:
    """Energy terms of the start, block-solved and agent-solved states per task (tasks where a made-up
    state would put the agent inside the block are skipped)."""
    rows, vis = [], wm.visual_dim
    for task in tasks:
        start, goal = task.init_state, task.goal_state
        block_solved, agent_solved = goal.copy(), start.copy()
        block_solved[0:2], agent_solved[0:2] = start[0:2], goal[0:2]
        block_solved[5:] = agent_solved[5:] = 0.0  # at rest
        if any(inside_t(s[2:5], s[None, 0:2], AGENT_RADIUS)[0] for s in (block_solved, agent_solved)):
            continue
        z_goal = _latent(env, wm, goal)
        rows.append({"seed": task.seed, **{name: _terms(_latent(env, wm, s), z_goal, vis) for name, s in
                                           (("start", start), ("block_solved", block_solved), ("agent_solved", agent_solved))}})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--proprio-weight", type=float, default=None, help="default: the benchmark's")
    p.add_argument("--out", default=str(RESULTS / "pusht_energy_split.json"))
    args = p.parse_args(argv)
    spec = load_spec("pusht")
    weight = spec.proprio_weight if args.proprio_weight is None else args.proprio_weight
    env = envs.make(spec.env, **spec.env_kwargs)
    wm = WorldModel.load(REPO_ROOT / spec.checkpoint)
    tasks = make_tasks(dataclasses.replace(spec.eval, episodes=args.episodes, keep_out=spec.keep_out), env=env, env_name=spec.env)
    rows = split(env, wm, tasks)
    total = lambda t: t["visual"] + weight * t["proprio"]
    counts = {
        "tasks": len(rows),
        "block_solved_scores_lower_than_agent_solved": sum(total(r["block_solved"]) < total(r["agent_solved"]) for r in rows),
        "same_with_visual_part_only": sum(r["block_solved"]["visual"] < r["agent_solved"]["visual"] for r in rows),
        "median_share_of_proprio_in_start_energy": float(np.median([weight * r["start"]["proprio"] / total(r["start"]) for r in rows])),
    }
    Path(args.out).write_text(json.dumps({"checkpoint": spec.checkpoint, "proprio_weight": weight, "counts": counts,
                                          "per_task": rows}, indent=1))
    print(json.dumps({"proprio_weight": weight, **counts}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
