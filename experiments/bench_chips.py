"""Benchmark the chip-sweeping env: clean-expert success, throughput, rest and stacking.

Usage: python3 experiments/bench_chips.py [--episodes 50] [--pushes 40] [--chips 100]
Writes experiments/results/chips_env.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from envs.chips import ChipsEnv, ChipsExpert  # sets MUJOCO_GL before mujoco is imported

import mujoco  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "chips_env.json"


def run_expert(env: ChipsEnv, episodes: int, pushes: int) -> dict:
    """Clean expert episodes: success within `pushes`, plus rest/stack/off-table after every push."""
    expert = ChipsExpert(env, noise=0.0, random_frac=0.0)
    succ, frac, chamfer, used, speeds, max_z, stacked, off, drift = [], [], [], [], [], [], 0, [], []
    steps, seconds = 0, 0.0
    for ep in range(episodes):
        env.reset(seed=ep)
        expert.reset()
        for k in range(pushes):
            t = time.perf_counter()
            _, _, _, _, info = env.step(expert.act())
            seconds += time.perf_counter() - t
            steps += 1
            speeds.append(info["max_chip_speed_mm_s"])
            max_z.append(info["max_chip_z_mm"])
            stacked += info["stacked"]
            if info["success"]:
                break
        drift.append(rest_drift_mm(env))
        succ.append(info["success"]), frac.append(info["fraction_inside"]), chamfer.append(info["chamfer_mm"])
        used.append(k + 1), off.append(info["n_off_table"])
        print(f"  episode {ep:2d}: success={info['success']!s:5} pushes={k + 1:2d} "
              f"inside={info['fraction_inside']:.2f} chamfer={info['chamfer_mm']:.1f} mm off={info['n_off_table']}")
    n = len(succ)
    p = float(np.mean(succ))
    return {
        "episodes": n,
        "success_rate": p,
        "success_ci95": 1.96 * float(np.sqrt(p * (1 - p) / n)),
        "mean_fraction_inside": float(np.mean(frac)),
        "mean_chamfer_mm": float(np.mean(chamfer)),
        "mean_pushes_used": float(np.mean(used)),
        "mean_off_table": float(np.mean(off)),
        "pushes": steps,
        "expert_pushes_per_s": steps / seconds,
        "rest_max_chip_speed_mm_s_p50": float(np.median(speeds)),
        "rest_max_chip_speed_mm_s_p99": float(np.percentile(speeds, 99)),
        "rest_drift_next_0.5s_mm_max": float(np.max(drift)),
        "max_chip_z_mm": float(np.max(max_z)),
        "pushes_with_a_stacked_chip": int(stacked),
    }


def rest_drift_mm(env: ChipsEnv, seconds: float = 0.5) -> float:
    """How far any on-table chip moves in `seconds` more of simulation (restores the state)."""
    state = env.get_state()
    before = env.chip_positions_mm()
    mujoco.mj_step(env.model, env.data, nstep=round(seconds / env.cfg.timestep))
    after = env.chip_positions_mm()
    env.set_state(state)
    on_table = ~env.off_table_mask(before)
    return float(np.linalg.norm((after - before)[on_table, :2], axis=1).max(initial=0.0))


def throughput(env: ChipsEnv, pushes: int = 30) -> dict:
    """Random pushes per second including rendering (the data-collection rate)."""
    env.reset(seed=123)
    env.action_space.seed(123)
    t = time.perf_counter()
    for _ in range(pushes):
        env.step(env.action_space.sample())
    dt = time.perf_counter() - t
    frame_t = time.perf_counter()
    for _ in range(50):
        env.render()
    return {"random_pushes_per_s": pushes / dt, "render_ms": (time.perf_counter() - frame_t) / 50 * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--pushes", type=int, default=40)
    parser.add_argument("--chips", type=int, default=100)
    args = parser.parse_args()
    env = ChipsEnv(n_chips=args.chips)
    start = time.perf_counter()
    result = {"n_chips": args.chips, "image_size": env.image_size, "cpu_count": os.cpu_count(),
              "load_avg_start": os.getloadavg()[0], "mujoco": mujoco.__version__}
    result.update(throughput(env))
    result.update(run_expert(env, args.episodes, args.pushes))
    result["load_avg_end"] = os.getloadavg()[0]
    result["wall_s"] = time.perf_counter() - start
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    targets = {"success_rate": ">= 0.70", "random_pushes_per_s": ">= 3", "pushes_with_a_stacked_chip": "== 0"}
    print(f"\n| metric | value | target |\n|---|---|---|")
    for key, value in result.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"| {key} | {shown} | {targets.get(key, '')} |")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
