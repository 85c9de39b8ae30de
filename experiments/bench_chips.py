"""Benchmark the chip-sweeping env: throughput, stacking, rest, off-table and clean-expert quality.

(a) pushes per second including rendering (every step renders its observation), for random pushes
    and for the clean expert, as wall-clock and per CPU-second of this process (the machine is
    shared, so wall-clock rates move with its load);
(b) after every expert push: stacking (any on-table chip body above resting height +
    `stack_dz_mm`, read from the simulated body positions, not the state layout), rest (the
    fastest chip once the push's settle phase ended, and how far any chip drifts in 0.5 s more of
    simulation, run on a copy of the physics so the episode is not disturbed), chips off the table;
(c) clean expert (noise 0, no random pushes) from `reset(seed=k)`, k < episodes: success within
    `--pushes`, fraction inside, Chamfer distance.

Usage: OMP_NUM_THREADS=1 python -m experiments.bench_chips [--episodes 50] [--pushes 40] [--chips 100]
Writes experiments/results/chips_env.json and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np

from envs.chips import ChipsEnv, ChipsExpert  # sets MUJOCO_GL before mujoco is imported

import mujoco  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "chips_env.json"
DRIFT_S = 0.5
TARGETS = {"expert_success_rate": ">= 0.70", "random_pushes_per_s": ">= 3", "expert_pushes_per_s": ">= 3",
           "pushes_with_a_stacked_chip": "== 0", "pushes_not_at_rest": "== 0"}


class Clock:
    """Wall-clock and process CPU seconds spent inside `with` blocks."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


def chip_body_mm(env: ChipsEnv, data: mujoco.MjData) -> np.ndarray:
    """(N, 3) simulated chip body centres in mm, whatever joints the chips have (updates `data`'s kinematics)."""
    mujoco.mj_kinematics(env.model, data)
    ids = [env.model.body(f"chip{i}").id for i in range(env.n_chips)]
    return data.xpos[ids] / 1e-3


def drift_mm(env: ChipsEnv, seconds: float = DRIFT_S) -> float:
    """How far any on-table chip moves in `seconds` more of simulation (on a copy of the data)."""
    data = copy.copy(env.data)
    before = chip_body_mm(env, data)
    mujoco.mj_step(env.model, data, nstep=round(seconds / env.cfg.timestep))
    after = chip_body_mm(env, data)
    on_table = ~env.off_table_mask(before)
    return float(np.linalg.norm((after - before)[on_table, :2], axis=1).max(initial=0.0))


def push_record(env: ChipsEnv, info: dict) -> dict:
    """Rest, stacking and off-table after one push."""
    pos = chip_body_mm(env, copy.copy(env.data))
    z = pos[~env.off_table_mask(pos), 2]
    return {"speed": info["max_chip_speed_mm_s"], "drift": drift_mm(env), "z": float(z.max(initial=0.0)),
            "stacked": bool((z > env.cfg.chip_half_height_mm + env.cfg.stack_dz_mm).any()),
            "off": info["n_off_table"]}


def run_episode(env: ChipsEnv, expert: ChipsExpert, seed: int, pushes: int, clock: Clock) -> tuple[dict, list]:
    env.reset(seed=seed)
    expert.reset()
    records = []
    for k in range(pushes):
        with clock:
            _, _, _, _, info = env.step(expert.act())
        records.append(push_record(env, info))
        if info["success"]:
            break
    return {"success": info["success"], "frac": info["fraction_inside"], "chamfer": info["chamfer_mm"],
            "pushes": k + 1, "off": info["n_off_table"]}, records


def summarize_pushes(env: ChipsEnv, records: list[dict]) -> dict:
    speed, drift = np.array([r["speed"] for r in records]), np.array([r["drift"] for r in records])
    return {
        "rest_max_chip_speed_mm_s_p50": float(np.median(speed)),
        "rest_max_chip_speed_mm_s_p99": float(np.percentile(speed, 99)),
        "rest_max_chip_speed_mm_s_max": float(speed.max()),
        "pushes_not_at_rest": int((speed >= env.cfg.rest_speed_mm_s).sum()),
        "rest_drift_next_0.5s_mm_p50": float(np.median(drift)),
        "rest_drift_next_0.5s_mm_p99": float(np.percentile(drift, 99)),
        "rest_drift_next_0.5s_mm_max": float(drift.max()),
        "max_chip_z_mm": max(r["z"] for r in records),
        "pushes_with_a_stacked_chip": sum(r["stacked"] for r in records),
        "pushes_with_a_chip_off_table": sum(r["off"] > 0 for r in records),
    }


def run_expert(env: ChipsEnv, episodes: int, pushes: int) -> dict:
    """Clean expert episodes: success within `pushes`, rest/stack/off-table after every push."""
    expert, clock, episodes_out, records = ChipsExpert(env, noise=0.0, random_frac=0.0), Clock(), [], []
    for ep in range(episodes):
        e, recs = run_episode(env, expert, ep, pushes, clock)
        episodes_out.append(e), records.extend(recs)
        print(f"  episode {ep:2d}: success={e['success']!s:5} pushes={e['pushes']:2d} inside={e['frac']:.2f} "
              f"chamfer={e['chamfer']:.1f} mm off={e['off']}", flush=True)
    p, n = float(np.mean([e["success"] for e in episodes_out])), len(episodes_out)
    return {
        "episodes": n,
        "expert_success_rate": p,
        "expert_success_ci95": 1.96 * float(np.sqrt(p * (1 - p) / n)),
        "expert_mean_fraction_inside": float(np.mean([e["frac"] for e in episodes_out])),
        "expert_mean_chamfer_mm": float(np.mean([e["chamfer"] for e in episodes_out])),
        "expert_mean_pushes_used": float(np.mean([e["pushes"] for e in episodes_out])),
        "expert_mean_off_table_at_end": float(np.mean([e["off"] for e in episodes_out])),
        "expert_pushes": len(records),
        "expert_pushes_per_s": len(records) / clock.wall,
        "expert_pushes_per_cpu_s": len(records) / clock.cpu,
        **summarize_pushes(env, records),
    }


def throughput(env: ChipsEnv, pushes: int = 100) -> dict:
    """Random pushes per second including rendering (the data-collection rate), and one frame's cost."""
    env.reset(seed=123)
    env.action_space.seed(123)
    clock, info = Clock(), {}
    with clock:
        for _ in range(pushes):
            _, _, _, _, info = env.step(env.action_space.sample())
    frames = Clock()
    with frames:
        for _ in range(50):
            env.render()
    return {"random_pushes_per_s": pushes / clock.wall, "random_pushes_per_cpu_s": pushes / clock.cpu,
            "random_off_table_after_100_pushes": info["n_off_table"], "render_ms": frames.wall / 50 * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--pushes", type=int, default=40)
    parser.add_argument("--chips", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    env = ChipsEnv(n_chips=args.chips)
    start = time.perf_counter()
    result = {"n_chips": args.chips, "image_size": env.image_size, "cpu_count": os.cpu_count(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_avg_start": os.getloadavg()[0],
              "mujoco": mujoco.__version__}
    result.update(throughput(env))
    result.update(run_expert(env, args.episodes, args.pushes))
    result["load_avg_end"] = os.getloadavg()[0]
    result["wall_s"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print("\n| metric | value | target |\n|---|---|---|")
    for key, value in result.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"| {key} | {shown} | {TARGETS.get(key, '')} |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
