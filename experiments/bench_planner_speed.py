"""Wall time, FLOPs and achieved GFLOP/s per re-plan for every planner on a trained world model.

    python experiments/bench_planner_speed.py --env pusht --threads 2 --replans 20

Re-plans come from real closed-loop episodes (the benchmark's first tasks, MPC warm starts included).
FLOPs count the predictor only, nominally: `flops_per_step` x candidate-steps (x3 for the candidate-steps
that also run a backward pass: gradient descent's Adam steps, not CEM-GD's sampling stage), i.e. as if every step were a standalone prediction; the cached rollout
(`wmplan.predictor_rollout`) computes ~14% less for the push-T predictor (3.95 vs 4.61 MFLOP per step). Writes
experiments/results/<env>_planner_speed.json (or --out); a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

import envs
from wmplan.bench import REPO_ROOT, build_agent, file_sha1, load_spec
from wmplan.cli_commands.bench import planner_settings
from wmplan.evaluate import make_tasks, reset_to_task
from wmplan.results import hardware
from wmplan.world_model import WorldModel

TARGET_S = 0.25


def measure(spec, wm, env, planner: str, tasks, replans: int, overrides: dict | None = None,
            guardrail: bool = False, route: bool = False) -> dict:
    agent, settings = build_agent(spec, wm, planner, env.action_space, guardrail, route, **(overrides or {}))
    records = []
    for task in tasks:
        obs, _, goal = reset_to_task(env, task)
        agent.reset()
        while len(agent.records) < replans // len(tasks):
            obs, *_ = env.step(agent.act(obs, goal))
        records += agent.records[1:]  # the first re-plan of an episode also encodes the goal
    times = np.array([r.wall_time for r in records])
    flops = np.array([r.flops for r in records])  # forward candidate-steps x1, backward ones x3
    return {"planner": planner, "settings": settings, "replans": len(records),
            "median_s": float(np.median(times)), "p90_s": float(np.percentile(times, 90)),
            "predictor_calls": float(np.mean([r.predictor_calls for r in records])),
            "gflop_per_replan": float(np.mean(flops) / 1e9),
            "achieved_gflops": float(np.sum(flops) / np.sum(times) / 1e9),
            "meets_target": bool(np.median(times) <= TARGET_S)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="pusht")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--replans", type=int, default=20)
    p.add_argument("--planners", default="cem,icem,mppi,gd,cem-gd")
    p.add_argument("--planner-settings", type=planner_settings, default={},
                   help='JSON overrides of the env\'s planner settings for every planner listed, e.g. \'{"num_samples": 48}\'')
    p.add_argument("--guardrail", action="store_true", help="plan with the env's keep-out guardrail")
    p.add_argument("--route", action="store_true", help="plan with the env's route energy")
    p.add_argument("--out", default=None, help="result file (default experiments/results/<env>_planner_speed.json)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = load_spec(args.env)
    env = envs.make(spec.env, **spec.env_kwargs)
    checkpoint = REPO_ROOT / spec.checkpoint  # an absolute checkpoint path stays as it is
    wm = WorldModel.load(checkpoint)
    tasks = make_tasks(dataclasses.replace(spec.eval, episodes=2, seed=9000), env=env, env_name=spec.env)
    rows = [measure(spec, wm, env, name, tasks, args.replans, args.planner_settings, args.guardrail, args.route)
            for name in args.planners.split(",")]
    result = {"env": args.env, "guardrail": args.guardrail, "route": args.route,
              "flops_per_step": wm.flops_per_step(), "target_s": TARGET_S, "checkpoint_sha1": file_sha1(checkpoint),
              "hardware": hardware(), "rows": rows}
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"{args.env}_planner_speed.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"| planner | median s | p90 s | pred. calls | GFLOP / re-plan | GFLOP/s | <= {TARGET_S} s |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['planner']} | {r['median_s']:.3f} | {r['p90_s']:.3f} | {r['predictor_calls']:.0f} | "
              f"{r['gflop_per_replan']:.2f} | {r['achieved_gflops']:.1f} | {'yes' if r['meets_target'] else 'no'} |")
    print(f"hardware: {result['hardware']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
