"""wmplan environments: push-T, maze and chip sweeping on MuJoCo, registered with gymnasium.

Use `envs.make("pusht")` (short name) or `gymnasium.make("wmplan/PushT-v0")` (after `import envs`).
Each entry also names the env's scripted expert and its data-collection defaults.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import gymnasium as gym

from envs.base import EnvInputError, MujocoEnv

__all__ = ["ENVS", "EnvEntry", "EnvInputError", "MujocoEnv", "make", "make_expert", "entry", "load_class"]


@dataclass(frozen=True)
class EnvEntry:
    """One registered environment."""

    name: str  # short name used by the CLI ("pusht")
    gym_id: str  # gymnasium id ("wmplan/PushT-v0")
    entry_point: str  # "module:Class" of the env
    expert: str  # "module:Class" of the scripted expert
    max_episode_steps: int  # TimeLimit for gymnasium.make
    collect_steps: int  # default env steps per collected episode


ENVS: dict[str, EnvEntry] = {
    e.name: e
    for e in [
        EnvEntry("pusht", "wmplan/PushT-v0", "envs.pusht:PushTEnv", "envs.pusht_expert:PushTExpert", 300, 100),
        EnvEntry("maze", "wmplan/Maze-v0", "envs.maze:MazeEnv", "envs.maze:MazeExpert", 300, 100),
        EnvEntry("chips", "wmplan/Chips-v0", "envs.chips:ChipsEnv", "envs.chips:ChipsExpert", 40, 40),
    ]
}

for _e in ENVS.values():
    if _e.gym_id not in gym.registry:
        gym.register(_e.gym_id, entry_point=_e.entry_point, max_episode_steps=_e.max_episode_steps)


def entry(name: str) -> EnvEntry:
    """The registry entry for a short name or gymnasium id; a clear error for unknown names."""
    for e in ENVS.values():
        if name in (e.name, e.gym_id):
            return e
    known = ", ".join(f"{e.name} ({e.gym_id})" for e in ENVS.values())
    raise EnvInputError(f"unknown environment {name!r}; known environments: {known}")


def load_class(path: str) -> type:
    """The class a registry entry names as `"module:Class"` (its `entry_point` or `expert`)."""
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


def make(name: str, **kwargs) -> MujocoEnv:
    """Build an env by short name or gymnasium id (unwrapped: no TimeLimit)."""
    return load_class(entry(name).entry_point)(**kwargs)


def make_expert(name: str, env: MujocoEnv, **kwargs):
    """The scripted expert of env `name`, acting on `env` (reads its state and goal)."""
    return load_class(entry(name).expert)(env, **kwargs)
