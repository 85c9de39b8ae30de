"""Collect trajectory datasets with scripted experts or random policies.

Episode i is seeded with `seed + i`, so a dataset is the same whatever the worker count, and an
interrupted collection resumes by skipping the episode files already complete.
"""

from __future__ import annotations

import inspect
import multiprocessing as mp
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wmplan.data.dataset import DatasetError, episode_path, is_complete, read_meta, write_episode, write_meta

POLICIES = ("expert", "random")


@dataclass(frozen=True)
class CollectConfig:
    """What to collect and where."""

    env: str  # env short name or gymnasium id
    out: str  # dataset directory
    episodes: int  # number of episodes
    steps: int | None = None  # env steps per episode (None: the env's collect default)
    policy: str = "expert"  # "expert" (noisy scripted expert) or "random"
    seed: int = 0  # episode i uses seed + i
    workers: int = 1  # parallel processes
    image_size: int = 64  # rendered frame side
    policy_kwargs: dict = field(default_factory=dict)  # e.g. {"noise": 25.0} for the expert
    env_kwargs: dict = field(default_factory=dict)  # e.g. {"layout": "random"} for the maze

    def __post_init__(self):
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


class RandomPolicy:
    """Uniform random actions held for a random 1-5 steps (smoother than i.i.d. noise)."""

    def __init__(self, env, seed: int = 0):
        self.space = env.action_space
        self.rng = np.random.default_rng(seed)
        self.action, self.left = None, 0

    def reset(self):
        self.left = 0

    def act(self) -> np.ndarray:
        if self.left == 0:
            self.action = self.rng.uniform(self.space.low, self.space.high).astype(np.float32)
            self.left = int(self.rng.integers(1, 6))
        self.left -= 1
        return self.action


def check_kwargs(cfg: CollectConfig) -> None:
    """Raise ValueError naming any `env_kwargs` or `policy_kwargs` the env or policy does not take, and those it
    does: a typo fails here, before anything is written, not as a TypeError inside the first episode."""
    import envs

    entry = envs.entry(cfg.env)
    policy = RandomPolicy if cfg.policy == "random" else envs.load_class(entry.expert)
    _check_names(f"env_kwargs of {entry.name}", cfg.env_kwargs, envs.load_class(entry.entry_point), set_elsewhere={"image_size"})
    _check_names(f"policy_kwargs of the {entry.name} {cfg.policy} policy", cfg.policy_kwargs, policy,
                 set_elsewhere={"env", "seed"})


def _check_names(what: str, kwargs: dict, cls, set_elsewhere: set) -> None:
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # takes any keyword
    accepted = [n for n, p in params.items() if n not in set_elsewhere
                and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(map(repr, unknown))}; accepted: {', '.join(accepted) or 'none'} "
                         f"(set by collect itself: {', '.join(sorted(set_elsewhere))})")


def _make_policy(cfg: CollectConfig, env, seed: int):
    import envs

    if cfg.policy == "random":
        return RandomPolicy(env, seed=seed)
    return envs.make_expert(cfg.env, env, seed=seed, **cfg.policy_kwargs)


def rollout_episode(cfg: CollectConfig, env, index: int) -> dict:
    """Run episode `index` and return its arrays (see wmplan.data for the layout)."""
    import envs

    seed = cfg.seed + index
    steps = cfg.steps or envs.entry(cfg.env).collect_steps
    obs, _ = env.reset(seed=seed)
    policy = _make_policy(cfg, env, seed)
    policy.reset()
    return record_steps(env, obs, lambda _obs: policy.act(), steps) | {"seed": seed}


def record_steps(env, obs: dict, act, steps: int) -> dict:
    """Step `env` from `obs` with `act(obs) -> action` for `steps` steps; the episode's arrays
    (pixels and proprio of every observation, env states, the actions taken)."""
    frames, proprio, states, actions = [obs["pixels"]], [obs["proprio"]], [env.get_state()], []
    for _ in range(steps):
        action = np.asarray(act(obs), dtype=np.float32)
        obs, _, _, _, _ = env.step(action)
        actions.append(action)
        frames.append(obs["pixels"])
        proprio.append(obs["proprio"])
        states.append(env.get_state())
    return {"pixels": np.stack(frames), "proprio": np.stack(proprio), "actions": np.stack(actions),
            "states": np.stack(states)}


def _worker(args):
    cfg, indices = args
    import envs

    env = envs.make(cfg.env, image_size=cfg.image_size, **cfg.env_kwargs)
    for i in indices:
        ep = rollout_episode(cfg, env, i)
        seed = ep.pop("seed")
        write_episode(episode_path(cfg.out, i), ep, {"seed": seed, "steps": len(ep["actions"])})
        yield i


def _run_worker(args):
    return list(_worker(args))


def _meta(cfg: CollectConfig) -> dict:
    import envs

    env = envs.make(cfg.env, image_size=cfg.image_size, **cfg.env_kwargs)
    meta = {"env": envs.entry(cfg.env).name, "gym_id": envs.entry(cfg.env).gym_id, "image_size": cfg.image_size,
            "env_kwargs": cfg.env_kwargs, "action_dim": int(env.action_space.shape[0]), "proprio_dim": int(env.proprio_dim),
            "state_dim": int(env.state_dim), "state_names": env.state_names, "action_low": env.action_space.low.tolist(),
            "action_high": env.action_space.high.tolist(), "collect": asdict(cfg) | {"out": None}}
    env.close()
    return meta


def _check_resume(cfg: CollectConfig, meta: dict) -> None:
    old = read_meta(cfg.out)
    keys = ("env", "image_size")
    old_collect = {k: v for k, v in old.get("collect", {}).items() if k not in ("episodes", "workers", "out")}
    new_collect = {k: v for k, v in meta["collect"].items() if k not in ("episodes", "workers", "out")}
    if any(old.get(k) != meta[k] for k in keys) or old_collect != new_collect:
        raise DatasetError(
            f"{cfg.out} already holds a dataset collected with other settings ({old_collect}); "
            f"use another --out directory or the same arguments to resume"
        )


def collect(cfg: CollectConfig, progress: bool = True) -> Path:
    """Collect `cfg.episodes` episodes into `cfg.out`, skipping complete ones. Returns the path."""
    out = Path(cfg.out)
    check_kwargs(cfg)
    meta = _meta(cfg)
    requested = cfg.episodes
    if (out / "meta.json").exists():
        _check_resume(cfg, meta)
        requested = max(requested, read_meta(out).get("episodes", 0))  # a smaller re-run keeps the larger count
    write_meta(out, meta | {"episodes": requested})
    todo = [i for i in range(cfg.episodes) if not is_complete(episode_path(out, i))]
    for stale in (out / "episodes").glob("*.tmp"):  # temp files left by an interrupted run
        stale.unlink()
    bar = tqdm(total=cfg.episodes, initial=cfg.episodes - len(todo), desc=f"collect {cfg.env}", unit="ep", disable=not progress)
    if cfg.workers == 1 or len(todo) <= 1:
        for _ in _worker((cfg, todo)):
            bar.update()
    else:
        chunks = [(cfg, todo[w :: cfg.workers * 4]) for w in range(cfg.workers * 4)]
        ctx = mp.get_context("spawn")  # fresh processes: no inherited GL contexts
        with ctx.Pool(cfg.workers) as pool:  # envs.base sets MUJOCO_GL=egl on import
            for done in pool.imap_unordered(_run_worker, [c for c in chunks if c[1]]):
                bar.update(len(done))
    bar.close()
    return out
