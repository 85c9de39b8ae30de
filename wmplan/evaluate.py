"""The honest evaluation protocol (DESIGN.md), shared by `wmplan bench` and notebooks.

- Goals are states the data shows to be reachable: a held-out trajectory's state `goal_offset` env
  steps after a start state (push-T: 25), or start/goal pairs the env samples itself (maze, chips).
  Held-out trajectories come from the dataset's validation split ("dataset") or are generated
  fresh by the data-collection policy from seeds no dataset uses ("rollout", needs no data on disk).
- Every episode runs a fixed budget of env steps; the agent never sees the simulator's success
  signal, and success is judged by the simulator at the end of the budget.
- Episodes are seeded; results are appended per episode, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from wmplan.data import EpisodeDataset

__all__ = ["EvalConfig", "Task", "make_tasks", "reset_to_task", "run_episode", "evaluate", "read_episodes",
           "KeepOutRegion"]


@dataclass(frozen=True)
class KeepOutRegion:
    """A disc the agent must not enter, in env units (push-T: mm; maze: cells)."""

    x: float
    y: float
    radius: float

    def contains(self, pos) -> bool:
        return float(np.hypot(pos[0] - self.x, pos[1] - self.y)) < self.radius


GOAL_SOURCES = ("rollout", "dataset", "env")
HELD_OUT_SEED = 1_000_000  # "rollout" trajectories use seeds from here on; collection uses 0, 1, 2, ...


@dataclass(frozen=True)
class EvalConfig:
    """The evaluation protocol of one benchmark."""

    episodes: int = 50  # seeded episodes
    budget: int = 50  # env steps per episode (fixed; no early stop)
    goal_source: str = "rollout"  # "rollout" | "dataset": held-out trajectory k steps ahead; "env": env samples goals
    goal_offset: int = 25  # k, env steps between start and goal on a held-out trajectory
    val_fraction: float = 0.1  # held-out share of the dataset's episodes
    seed: int = 0  # base seed: task i uses seed + i
    keep_out: KeepOutRegion | None = None  # measured in the simulator when given
    videos: int = 2  # episodes saved as videos

    def __post_init__(self):
        if self.goal_source not in GOAL_SOURCES:
            raise ValueError(f"goal_source must be one of {GOAL_SOURCES}, got {self.goal_source!r}")
        if self.episodes < 1 or self.budget < 1 or self.goal_offset < 1:
            raise ValueError("episodes, budget and goal_offset must be >= 1")


@dataclass(frozen=True)
class Task:
    """One seeded episode: where it starts and which state is the goal (None: the env samples)."""

    index: int
    seed: int
    init_state: np.ndarray | None
    goal_state: np.ndarray | None


def make_tasks(cfg: EvalConfig, dataset: EpisodeDataset | None = None, env=None, env_name: str | None = None,
               max_start: int = 75) -> list[Task]:
    """The benchmark's tasks, identical for every planner given the same config and data.

    Args:
        dataset: needed for goal_source="dataset" (its held-out split is used).
        env, env_name: needed for goal_source="rollout" (the env's data policy generates trajectories).
        max_start: "rollout": the start state is taken after 0..max_start policy steps.
    """
    seeds = [cfg.seed + i for i in range(cfg.episodes)]
    if cfg.goal_source == "env":
        return [Task(i, s, None, None) for i, s in enumerate(seeds)]
    if cfg.goal_source == "rollout":
        if env is None or env_name is None:
            raise ValueError("goal_source='rollout' needs the env and its name")
        return [_rollout_task(env, env_name, i, s, cfg, max_start) for i, s in enumerate(seeds)]
    if dataset is None:
        raise ValueError("goal_source='dataset' needs the dataset the model was trained on (its held-out split)")
    _, val = dataset.split(cfg.val_fraction, seed=0)
    lengths = dataset.lengths()
    val = [e for e in val if lengths[e] >= cfg.goal_offset]
    if not val:
        raise ValueError(f"no held-out episode is longer than goal_offset={cfg.goal_offset} steps")
    tasks = []
    for i, s in enumerate(seeds):
        rng = np.random.default_rng(s)
        e = int(val[rng.integers(len(val))])
        t = int(rng.integers(0, lengths[e] - cfg.goal_offset + 1))
        states = dataset.episode(e, keys=("states",))["states"]
        tasks.append(Task(i, s, states[t], states[t + cfg.goal_offset]))
    return tasks


def _rollout_task(env, env_name: str, index: int, seed: int, cfg: EvalConfig, max_start: int) -> Task:
    """A fresh trajectory of the data policy from a held-out seed: start at t, goal at t + k.

    With a keep-out region, trajectories whose start or goal puts the agent inside it are skipped
    (the next seed is tried), so an avoiding path always exists.
    """
    import envs

    for attempt in range(100):
        traj_seed = HELD_OUT_SEED + seed + 7919 * attempt
        _, info = env.reset(seed=traj_seed)
        policy = envs.make_expert(env_name, env, seed=traj_seed)
        policy.reset()
        t = int(np.random.default_rng(traj_seed).integers(0, max_start + 1))
        states, agent = [env.get_state()], [info["agent_pos"]]
        for _ in range(t + cfg.goal_offset):
            _, _, _, _, info = env.step(policy.act())
            states.append(env.get_state())
            agent.append(info["agent_pos"])
        region = cfg.keep_out
        if region is None or not any(region.contains(agent[i]) for i in (t, t + cfg.goal_offset)):
            return Task(index, seed, states[t], states[t + cfg.goal_offset])
    raise RuntimeError(f"no task for seed {seed} keeps start and goal outside {cfg.keep_out}")


def _agent_stats(agent) -> list[dict]:
    """Per-re-plan records the agent logged since its last reset (time, predictor calls)."""
    return [{"wall_time": r.wall_time, "predictor_calls": r.predictor_calls} for r in getattr(agent, "records", [])]


def reset_to_task(env, task: Task) -> tuple:
    """Reset `env` to `task`'s seed, start and goal: ``(obs, info, goal observation)``."""
    options = {k: v for k, v in (("init_state", task.init_state), ("goal_state", task.goal_state)) if v is not None}
    obs, info = env.reset(seed=task.seed, options=options)
    return obs, info, env.goal_observation()


def run_episode(env, agent, task: Task, cfg: EvalConfig, record_video: bool = False) -> dict:
    """Run one task for exactly `cfg.budget` env steps and return its record."""
    obs, info, goal = reset_to_task(env, task)
    agent.reset()
    in_region, frames, start = 0, [], time.perf_counter()
    imagine = getattr(agent, "imagined", None) if record_video else None
    for _ in range(cfg.budget):
        action = agent.act(obs, goal)
        imagined = imagine() if imagine is not None else None  # what the plan predicts for this planned step's end
        obs, _, _, _, info = env.step(action)
        if cfg.keep_out is not None and cfg.keep_out.contains(info["agent_pos"]):
            in_region += 1
        if record_video:  # real | imagined (with a decoder) | goal
            frames.append(np.concatenate([obs["pixels"], *([imagined] if imagined is not None else []), goal["pixels"]], axis=1))
    replans = _agent_stats(agent)
    metrics = {k: _jsonable(v) for k, v in info.items() if k != "state" and np.ndim(v) == 0}
    return {
        "index": task.index, "seed": task.seed, "success": bool(info["success"]), "metrics": metrics,
        "keep_out_fraction": in_region / cfg.budget if cfg.keep_out is not None else None,
        "replan_times": [r["wall_time"] for r in replans],
        "predictor_calls": [r["predictor_calls"] for r in replans],
        "episode_time": time.perf_counter() - start,
        "frames": frames,
    }


def _jsonable(v):
    return v.item() if isinstance(v, np.generic) else v


def read_episodes(path) -> list[dict]:
    """The complete records of an `episodes.jsonl` log (blank lines and a line cut by an interruption skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _load_done(path: Path, fingerprint: str) -> dict[int, dict]:
    """This run's finished episodes in the log at `path`, by index.

    Lines of other settings (and lines cut by an interruption, which are redone) move to
    ``episodes.superseded.jsonl`` beside it, so the log holds one run; nothing is deleted (the move
    appends first, then atomically rewrites the log).
    """
    if not path.is_file():
        return {}
    done, keep, other = {}, [], []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = {}
        if rec.get("fingerprint") == fingerprint:
            done[rec["index"]] = rec
            keep.append(line)
        else:
            other.append(line)
    if other:
        warnings.warn(f"{path.parent}: {len(other)} logged episode(s) ran with other settings; they are not reused "
                      f"but moved to episodes.superseded.jsonl, and this run's results replace theirs", stacklevel=3)
        with open(path.with_name("episodes.superseded.jsonl"), "a") as f:
            f.write("".join(line + "\n" for line in other))
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        os.replace(tmp, path)
    return done


def evaluate(env, agent, tasks: list[Task], cfg: EvalConfig, out_dir=None, fingerprint: str = "",
             progress: bool = True, on_video=None) -> list[dict]:
    """Run every task; with `out_dir`, append each record to `episodes.jsonl` and skip finished ones.

    Args:
        fingerprint: identifies the run settings (env, planner, checkpoint, protocol); records with
            another fingerprint in the same file are not reused but moved to ``episodes.superseded.jsonl``.
        on_video: callback(index, frames) for the first `cfg.videos` episodes.
    """
    from tqdm import tqdm

    log = Path(out_dir) / "episodes.jsonl" if out_dir is not None else None
    done = _load_done(log, fingerprint) if log else {}
    records = []
    for task in tqdm(tasks, desc="episodes", unit="ep", disable=not progress):
        if task.index in done:
            records.append(done[task.index])
            continue
        rec = run_episode(env, agent, task, cfg, record_video=task.index < cfg.videos)
        frames = rec.pop("frames")
        if frames and on_video is not None:
            on_video(task.index, frames)
        rec["fingerprint"] = fingerprint
        if log:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as f:
                f.write(json.dumps(rec) + "\n")
        records.append(rec)
    return records


def config_dict(cfg: EvalConfig) -> dict:
    return asdict(cfg)
