"""Maze benchmark: clean-expert success per layout and env throughput with 64x64 pixels.

    python -m experiments.bench_maze [--pairs 100] [--throughput-steps 3000]

(a) The noise-free `MazeExpert` on seeded start/goal pairs (env `reset(seed=i)`) of each standard
layout within its step budget (U-maze 100, Medium 200, Large 300) and on random labmaze layouts
(one layout per pair, layout seed = pair index + 1000, budget 300). Success is judged at the last
step (distance <= 0.45); the step of the first success is reported too. Target >= 95 % each.
(b) Env steps per second with random actions and 64x64 pixels in one process. Target >= 600.
Prints a markdown table and writes JSON to experiments/results/maze_env.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also runnable as a script from a checkout

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from envs.maze import MazeEnv, MazeExpert  # noqa: E402

BUDGETS = {"umaze": 100, "medium": 200, "large": 300, "random": 300}
RANDOM_SEED_OFFSET = 1000  # random layouts unlike those a model may train on (seeds < 1000)
RESULTS = Path(__file__).resolve().parent / "results" / "maze_env.json"


def run_expert_episode(env: MazeEnv, layout: str, pair: int, budget: int) -> dict:
    options = {"layout": layout}
    if layout == "random":
        options["layout_seed"] = RANDOM_SEED_OFFSET + pair
    env.reset(seed=pair, options=options)
    expert = MazeExpert(env, noise=0.0)
    first_success, wall_steps = None, 0
    for t in range(budget):
        _, _, _, _, info = env.step(expert.act())
        wall_steps += info["wall_contact"]
        if info["success"] and first_success is None:
            first_success = t + 1
    return {"success": info["success"], "success_05": info["success_05"], "distance": info["distance"],
            "first_success_step": first_success, "wall_contact_steps": wall_steps}


def expert_success(pairs: int) -> dict:
    env, results = MazeEnv(image_size=64), {}
    for layout, budget in BUDGETS.items():
        t0 = time.perf_counter()
        episodes = [run_expert_episode(env, layout, pair, budget) for pair in range(pairs)]
        reached = [e["first_success_step"] for e in episodes if e["first_success_step"] is not None]
        results[layout] = {
            "budget": budget,
            "pairs": pairs,
            "success_rate": float(np.mean([e["success"] for e in episodes])),
            "success_05_rate": float(np.mean([e["success_05"] for e in episodes])),
            "mean_final_distance": float(np.mean([e["distance"] for e in episodes])),
            "median_first_success_step": float(np.median(reached)) if reached else None,
            "max_first_success_step": int(max(reached)) if reached else None,
            "mean_wall_contact_steps": float(np.mean([e["wall_contact_steps"] for e in episodes])),
            "failures": [i for i, e in enumerate(episodes) if not e["success"]],
            "seconds": time.perf_counter() - t0,
        }
    env.close()
    return results


def throughput(steps: int, image_size: int = 64, layout: str = "large") -> dict:
    env = MazeEnv(layout=layout, image_size=image_size)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(steps)]
    t0 = time.perf_counter()
    for t, action in enumerate(actions):
        if t % 300 == 299:
            env.reset()
        env.step(action)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(500):
        env.render()
    render_ms = (time.perf_counter() - t0) / 500 * 1e3
    env.close()
    return {"layout": layout, "image_size": image_size, "steps": steps,
            "steps_per_s": steps / seconds, "render_ms": render_ms}


def table(success: dict, speed: dict) -> str:
    lines = ["| layout | budget | success (<= 0.45) | success (< 0.5) | median steps to success | wall-contact steps |",
             "|---|---|---|---|---|---|"]
    for name, r in success.items():
        lines.append(f"| {name} | {r['budget']} | {r['success_rate']:.0%} | {r['success_05_rate']:.0%} | "
                     f"{r['median_first_success_step']} | {r['mean_wall_contact_steps']:.1f} |")
    lines.append("")
    lines.append(f"throughput ({speed['layout']}, {speed['image_size']}x{speed['image_size']} pixels): "
                 f"{speed['steps_per_s']:.0f} env steps/s; render {speed['render_ms']:.2f} ms/frame")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100, help="start/goal pairs per layout")
    parser.add_argument("--throughput-steps", type=int, default=3000, help="env steps timed for throughput")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    args = parser.parse_args(argv)
    success = expert_success(args.pairs)
    speed = throughput(args.throughput_steps)
    print(table(success, speed))
    result = {
        "expert_success": success,
        "throughput": speed,
        "targets": {"expert_success_rate": 0.95, "steps_per_s": 600},
        "hardware": {"machine": platform.machine(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                     "python": platform.python_version(), "mujoco": mujoco.__version__,
                     "MUJOCO_GL": os.environ.get("MUJOCO_GL")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
