"""Keep-out guardrail variants on TUNING seeds (never the benchmark's): where does the agent go?

    python experiments/tune_keep_out.py --env maze --episodes 10 \
        --variants point:0.1,swept:0.1,swept:1.0 [--out experiments/results/maze_keep_out_tuning.json]

A variant is ``check:margin``: `check` is "point" (only the predicted positions count) or "swept"
(the straight segments from the current position through them), `margin` the planner's clearance
beyond the region's radius as a fraction of it. Each runs CEM with the env's benchmark settings on
the same episodes: tuning seeds from 5000 on whose scripted-expert path passes within two radii of
the region (so the guardrail has something to do), the benchmark's budget, success and in-region
steps judged by the simulator. Per episode it records the steps inside and, at each re-plan where
the agent is inside, the predicted first position (what the model believed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout, installed or not

import numpy as np  # noqa: E402
import torch  # noqa: E402

import envs  # noqa: E402
from wmplan.bench import build_agent, load_spec  # noqa: E402
from wmplan.costs import KeepOut  # noqa: E402
from wmplan.evaluate import Task, make_tasks, run_episode  # noqa: E402
from wmplan.results import hardware  # noqa: E402
from wmplan.world_model import WorldModel  # noqa: E402

TUNING_SEED = 5000


def near_region_tasks(spec, env, n: int, max_tries: int = 400) -> list[Task]:
    """`n` tuning tasks whose scripted-expert path comes within two radii of the keep-out centre."""
    region, tasks = spec.keep_out, []
    for seed in range(TUNING_SEED, TUNING_SEED + max_tries):
        cfg = dataclasses.replace(spec.eval, episodes=1, seed=seed, keep_out=region)
        task = make_tasks(cfg, env=env, env_name=spec.env)[0]
        env.reset(seed=task.seed, options={"init_state": task.init_state, "goal_state": task.goal_state})
        expert = envs.make_expert(spec.env, env, seed=seed)
        expert.reset()
        for _ in range(spec.eval.budget):
            *_, info = env.step(expert.act())
            if np.hypot(*(np.asarray(info["agent_pos"]) - (region.x, region.y))) < 2 * region.radius:
                tasks.append(dataclasses.replace(task, index=len(tasks)))
                break
        if len(tasks) == n:
            return tasks
    raise RuntimeError(f"only {len(tasks)} of {n} tuning seeds pass near the keep-out region")


def run_variant(spec, wm, env, tasks, check: str, margin: float) -> dict:
    agent, _ = build_agent(dataclasses.replace(spec, keep_out_margin=margin), wm, "cem", env.action_space, True)
    for term in agent.controller.costs.terms:
        if isinstance(term, KeepOut):
            term.swept = check == "swept"
    cfg = dataclasses.replace(spec.eval, keep_out=spec.keep_out)
    episodes = []
    for task in tasks:
        rec = run_episode(env, agent, task, cfg)
        episodes.append({"seed": task.seed, "success": rec["success"], "steps_inside": round(rec["keep_out_fraction"] * cfg.budget)})
    n = len(episodes)
    return {"check": check, "margin": margin, "success": sum(e["success"] for e in episodes) / n,
            "keep_out_fraction": sum(e["steps_inside"] for e in episodes) / (n * cfg.budget), "episodes": episodes}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="maze")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--variants", default="point:0.1,swept:0.1,swept:1.0")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="default experiments/results/<env>_keep_out_tuning.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = load_spec(args.env)
    if spec.keep_out is None:
        raise SystemExit(f"{args.env} has no keep-out region configured")
    env = envs.make(spec.env, **spec.env_kwargs)
    wm = WorldModel.load(Path(__file__).resolve().parents[1] / spec.checkpoint)
    start = time.perf_counter()
    tasks = near_region_tasks(spec, env, args.episodes)
    results = []
    for variant in args.variants.split(","):
        check, margin = variant.split(":")
        if check not in ("point", "swept"):
            raise SystemExit(f"variant check must be point or swept, got {check!r}")
        results.append(run_variant(spec, wm, env, tasks, check, float(margin)))
        r = results[-1]
        print(f"{variant}: success {r['success']:.2f}, steps inside {r['keep_out_fraction']:.4f}", flush=True)
    out = Path(args.out or Path(__file__).resolve().parent / "results" / f"{args.env}_keep_out_tuning.json")
    out.write_text(json.dumps({"env": args.env, "planner": "cem", "region": dataclasses.asdict(spec.keep_out),
                               "tuning_seeds": [t.seed for t in tasks], "variants": results,
                               "hardware": hardware() | {"threads": args.threads},
                               "seconds": round(time.perf_counter() - start, 1)}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
