"""Training data where the planner goes: episodes driven by the MPC agent, added to a dataset (DAgger-style).

`experiments/plan_vs_reality.py` shows the world model is most wrong on the steps the planner
chooses: a planner favours the actions the model gets wrong in its favour, and the scripted expert
that collected the data never took them. This script runs the agent on benchmark-like tasks from
*training* seeds (disjoint from the benchmark's 0..49 and the tuning seeds 5000+), records every
env step, and writes a dataset made of the source dataset's episodes (linked, not copied) followed
by the agent's episodes. `wmplan train --init CKPT --data OUT` then fine-tunes on both.

    python -m experiments.planner_data --env pusht --source /work/data/pusht_v2 --out /work/data/pusht_dagger1 \
        --checkpoint experiments/checkpoints/pusht/world_model.pt --planner gd \
        --planner-settings '{"num_starts": 4, "iterations": 8}' --episodes 200 --seed 20000 --noise 0.3

The agent plans with the benchmark's costs; `wmplan bench`'s cost options (`--budget-horizon`,
`--proprio-weight[-early]`, `--readout-goal[-settings]`, `--goal-steps`) change them as they do
there, and are recorded with the data. Driven by a learned true-state model (`--state-model`), it plans
with that model's oracle energy, staged as `oracle_planning.py` stages it with `--agent-weight` and
`--agent-weight-at-end`.
`--describe FILE` writes how often the block moves in the source's and the agent's episodes.
`--source-episodes N` links only the source's first N episodes, so that the agent's make up more of
the training windows (300 agent episodes of 50 steps beside 1000 expert episodes of 100 are ~11% of
the windows). `--noise` adds Gaussian noise (std, in action units) to the agent's actions on every other episode,
so the data also holds the neighbours of the planner's choices. Re-running the same command resumes:
finished episode files are kept. Held-out windows are best read from the source dataset's own
split: adding episodes changes the split of the union.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from wmplan.data.dataset import EpisodeDataset, episode_path, is_complete, read_meta, write_episode, write_meta

TRAINING_SEEDS = 20_000  # first task seed of planner data: benchmark tasks use 0.., tuning 5000..


def link_source(source: Path, out: Path, n: int) -> None:
    """Link the first `n` episodes of `source` into `out/episodes` under the same index."""
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        dst = episode_path(out, i)
        if not dst.exists():
            os.symlink(episode_path(source, i).resolve(), dst)


def agent_episode(env, agent, task, budget: int, noise: float, rng) -> dict:
    """One task driven by the agent for `budget` env steps; arrays in the dataset's episode layout."""
    from wmplan.data.collect import record_steps
    from wmplan.evaluate import reset_to_task

    obs, _, goal = reset_to_task(env, task)
    agent.reset()
    low, high = env.action_space.low, env.action_space.high

    def act(obs):
        action = agent.act(obs, goal)
        return np.clip(action + rng.normal(0.0, noise, size=action.shape), low, high) if noise > 0 else action

    return record_steps(env, obs, act, budget)


def cost_record(spec, args) -> dict:
    """The agent's cost options where they differ from the benchmark's defaults (none: {}, as before they existed)."""
    costs = {"proprio_weight": args.proprio_weight, "proprio_weight_early": args.proprio_weight_early,
             "goal_steps": args.goal_steps, "budget_horizon": args.budget_horizon or None,
             "readout_goal": dataclasses.asdict(spec.readout_goal) if args.readout_goal else None,
             "agent_weight": args.agent_weight if args.agent_weight != 1.0 else None,
             "agent_weight_at_end": args.agent_weight_at_end}
    costs = {k: v for k, v in costs.items() if v is not None}
    return {"costs": costs} if costs else {}


def block_moves(root, moved_mm: float = 5.0, frameskip: int = 5) -> dict:
    """How often the block moves more than `moved_mm` per `frameskip` env steps, in a planner-data set's
    source episodes and in its agent episodes without and with action noise (push-T's state names)."""
    ds = EpisodeDataset(root)
    names, record = ds.meta["state_names"], ds.meta["planner_data"]
    cols, n_source = [names.index("block_x"), names.index("block_y")], record["source_episodes"]
    shares = {}
    for e in range(len(ds)):
        states = ds.episode(e, keys=("states",))["states"][::frameskip, cols]  # [T/fs + 1, 2]
        if e < n_source:
            key = "source"
        else:  # noise on every other agent episode, as main() runs them
            key = f"agent_noise_{'on' if (e - n_source) % 2 else 'off'}" if record["noise"] else "agent"
        shares.setdefault(key, []).extend(np.linalg.norm(np.diff(states, axis=0), axis=1) > moved_mm)
    return {k: {"windows": len(v), "share_moved": round(float(np.mean(v)), 3)} for k, v in shares.items()}


def main(argv=None) -> int:
    from wmplan.cli_commands.bench import add_cost_arguments, planner_settings

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="pusht")
    p.add_argument("--source", default=None, help="the dataset the model was trained on (required unless --describe)")
    p.add_argument("--out", required=True, help="new dataset directory: the source's episodes, then the agent's")
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    p.add_argument("--state-model", default=None,
                   help="drive with the learned true-state model (experiments/state_dynamics.py --save) in place of "
                        "the world model, as oracle_planning --oracle state-model does (sampling planners only)")
    p.add_argument("--agent-weight", type=float, default=1.0,
                   help="with --state-model: scale on the agent's distance in the true-state energy (oracle_planning's)")
    p.add_argument("--agent-weight-at-end", type=float, default=None,
                   help="with --state-model: the agent's scale in the plans that end the episode (needs --budget-horizon)")
    p.add_argument("--planner", default="gd")
    p.add_argument("--planner-settings", type=planner_settings, default={})
    add_cost_arguments(p)  # the agent's costs and horizon, as `wmplan bench` takes them
    p.add_argument("--episodes", type=int, default=100, help="agent episodes to add")
    p.add_argument("--seed", type=int, default=TRAINING_SEEDS, help="first task seed (keep clear of benchmark seeds)")
    p.add_argument("--source-episodes", type=int, default=0,
                   help="link only the source's first N episodes (0: all), so the agent's make up more of the data")
    p.add_argument("--noise", type=float, default=0.0, help="action-noise std on every other episode")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--describe", default=None, metavar="JSON",
                   help="only write how often the block moves in --out's source and agent episodes to JSON")
    args = p.parse_args(argv)
    if args.describe:
        moves = block_moves(args.out)
        Path(args.describe).write_text(json.dumps({"dataset": args.out, "moved_mm": 5.0, "frameskip": 5} | moves, indent=1) + "\n")
        print(json.dumps(moves))
        return 0
    if args.source is None:
        p.error("--source is required: the dataset the model was trained on")
    if (args.agent_weight != 1.0 or args.agent_weight_at_end is not None) and not args.state_model:
        p.error("--agent-weight and --agent-weight-at-end need --state-model (the latent energy's agent term is "
                "--proprio-weight)")
    if args.agent_weight_at_end is not None and not args.budget_horizon:
        p.error("--agent-weight-at-end needs --budget-horizon: without it no plan knows it ends the episode")
    if args.seed < TRAINING_SEEDS:
        p.error(f"--seed {args.seed} overlaps benchmark or tuning tasks; use {TRAINING_SEEDS} or above")
    try:
        return collect_agent_episodes(args)
    except ValueError as err:  # options the spec refuses, e.g. an early proprio weight without the budget horizon
        p.error(str(err))


def collect_agent_episodes(args) -> int:
    """Link the source episodes into `args.out`, then run and write the agent's missing episodes."""
    import envs
    from wmplan.bench import REPO_ROOT, build_agent, load_model, load_spec, with_budget_horizon
    from wmplan.cli_commands.bench import spec_from_cost_arguments
    from wmplan.evaluate import make_tasks

    torch.set_num_threads(args.threads)
    source, out = Path(args.source), Path(args.out)
    spec = spec_from_cost_arguments(load_spec(args.env), args)
    cfg = dataclasses.replace(spec.eval, episodes=args.episodes, seed=args.seed)
    spec = with_budget_horizon(spec, cfg.budget if args.budget_horizon else None)
    env = envs.make(spec.env, image_size=read_meta(source)["image_size"], **spec.env_kwargs)
    ckpt = REPO_ROOT / (args.checkpoint or spec.checkpoint)
    wm = load_model(ckpt, env, spec.env, "cpu")
    terms = None
    if args.state_model:
        from experiments.oracle_planning import LearnedStateModel, agent_weighted_energy

        wm = LearnedStateModel.from_file(wm, env, args.state_model)
        terms = agent_weighted_energy(args.agent_weight, args.agent_weight_at_end, spec.goal_steps)
    agent, settings = build_agent(spec, wm, args.planner, env.action_space, readout_goal=args.readout_goal,
                                  terms=terms, **args.planner_settings)
    n_source = len(EpisodeDataset(source))
    n_source = min(n_source, args.source_episodes) if args.source_episodes else n_source
    record = {"source": str(source.resolve()), "source_episodes": n_source, "checkpoint": str(ckpt),
              **({"state_model": str(args.state_model)} if args.state_model else {}),
              "planner": args.planner, "planner_settings": settings, "seed": args.seed, "noise": args.noise,
              "budget": cfg.budget, **cost_record(spec, args)}
    meta = read_meta(source)
    if (out / "meta.json").exists() and read_meta(out).get("planner_data", {}) | {"episodes": 0} != record | {"episodes": 0}:
        raise SystemExit(f"{out} holds planner data made with other settings; use another --out")
    link_source(source, out, n_source)
    write_meta(out, meta | {"episodes": n_source + args.episodes, "planner_data": record | {"episodes": args.episodes}})
    tasks = make_tasks(cfg, env=env, env_name=spec.env)
    start = time.perf_counter()
    for task in tasks:
        path = episode_path(out, n_source + task.index)
        if is_complete(path):
            continue
        noise = args.noise if task.index % 2 else 0.0
        ep = agent_episode(env, agent, task, cfg.budget, noise, np.random.default_rng(task.seed))
        write_episode(path, ep, {"seed": task.seed, "steps": cfg.budget, "noise": noise})
        print(f"episode {task.index + 1}/{args.episodes} seed {task.seed} noise {noise} "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    env.close()
    print(json.dumps(record | {"episodes": args.episodes, "seconds": round(time.perf_counter() - start, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
