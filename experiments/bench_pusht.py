"""Benchmark of push-T: env throughput and the scripted expert's quality and cost (not a test).

(a) env steps per second with 64x64 pixels, random actions, one process (target >= 600);
(b) the clean expert (noise 0, no random segments) from `reset(seed=k)`, k < episodes: the rate of
    reaching coverage >= 0.95 of the default goal within 300 steps (target >= 0.6), mean steps to
    success, expert ms per step;
(c) the default noisy expert (data collection): expert ms per step, env+expert ms per step with
    rendering, and the median block displacement over 100-step episodes.

    python experiments/bench_pusht.py --episodes 100

Prints a table and writes `experiments/results/pusht_env.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported (ENVS.md)

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402
from envs.pusht_expert import PushTExpert  # noqa: E402
from wmplan.results import hardware as results_hardware  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "pusht_env.json"


def hardware() -> dict:
    """The shared machine description (wmplan.results.hardware) plus this benchmark's extras."""
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    base = results_hardware()
    return {"cpu_model": base["cpu"], "logical_cpus": base["cores"], "usable_threads": threads,
            "processes_used": 1, "python": platform.python_version(), "mujoco": mujoco.__version__,
            "numpy": np.__version__, "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def env_throughput(steps: int, image_size: int = 64, seed: int = 0) -> dict:
    """Env steps per second (physics + rendering) under uniform random actions."""
    env = envs.make("pusht", image_size=image_size)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    actions = rng.uniform(-1, 1, (steps, 2)).astype(np.float32)
    start, cpu_start = time.perf_counter(), time.process_time()
    for t, action in enumerate(actions):
        if t % 100 == 0:
            env.reset(seed=seed + t)
        env.step(action)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    env.close()
    # Wall-clock rate depends on other load on shared machines; the CPU-time rate much less so.
    return {"image_size": image_size, "steps": steps, "steps_per_s": steps / elapsed, "steps_per_cpu_s": steps / cpu}


def clean_expert(episodes: int, max_steps: int = 300) -> dict:
    """Success (coverage >= 0.95) of the noise-free expert from seeded random starts."""
    env = envs.make("pusht", image_size=16)  # env.step renders; the smallest frame keeps that cheap
    steps_to_success, expert_s, expert_steps = [], 0.0, 0
    for k in range(episodes):
        env.reset(seed=k)
        expert = PushTExpert(env, noise=0.0, random_frac=0.0, seed=k)
        for t in range(max_steps):
            start = time.perf_counter()
            action = expert.act()
            expert_s += time.perf_counter() - start
            expert_steps += 1
            if env.step(action)[4]["success_coverage"]:
                steps_to_success.append(t + 1)
                break
    return {"episodes": episodes, "max_steps": max_steps, "success_rate": len(steps_to_success) / episodes,
            "mean_steps_to_success": float(np.mean(steps_to_success)) if steps_to_success else None,
            "expert_ms_per_step": 1e3 * expert_s / expert_steps}


def noisy_expert(episodes: int, steps: int = 100) -> dict:
    """Cost and reach of the default (noisy) expert in collection-length episodes with 64x64 pixels."""
    env = envs.make("pusht", image_size=64)
    expert = PushTExpert(env)
    displacement, expert_s, total_s = [], 0.0, 0.0
    for k in range(episodes):
        env.reset(seed=10_000 + k)
        expert.reset(seed=k)
        start_xy = env.get_state()[2:4].copy()
        for _ in range(steps):
            t0 = time.perf_counter()
            action = expert.act()
            t1 = time.perf_counter()
            env.step(action)
            expert_s, total_s = expert_s + t1 - t0, total_s + time.perf_counter() - t0
        displacement.append(float(np.linalg.norm(env.get_state()[2:4] - start_xy)))
    n = episodes * steps
    return {"episodes": episodes, "steps": steps, "noise_mm": expert.noise, "random_frac": expert.random_frac,
            "expert_ms_per_step": 1e3 * expert_s / n, "env_plus_expert_ms_per_step": 1e3 * total_s / n,
            "median_block_displacement_mm_per_100_steps": float(np.median(displacement)) * 100 / steps,
            "collection_estimate_min_1000x100": total_s / n * 1000 * 100 / 60}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100, help="clean-expert episodes (seeds 0..N-1)")
    parser.add_argument("--noisy-episodes", type=int, default=30, help="noisy-expert episodes of 100 steps")
    parser.add_argument("--throughput-steps", type=int, default=3000, help="env steps for the throughput run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args(argv)
    results = {"hardware": hardware(), "env_throughput": env_throughput(args.throughput_steps),
               "clean_expert": clean_expert(args.episodes), "noisy_expert": noisy_expert(args.noisy_episodes)}
    _print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return results


def _print_table(results: dict) -> None:
    targets = {"steps_per_s": ">= 600", "steps_per_cpu_s": ">= 600", "success_rate": ">= 0.60", "expert_ms_per_step": "<= 5 (noisy)"}
    print(f"{'section':<16}{'quantity':<46}{'value':>12}  target")
    for section, values in results.items():
        for key, value in values.items():
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            print(f"{section:<16}{key:<46}{shown:>12}  {targets.get(key, '')}")


if __name__ == "__main__":
    main()
