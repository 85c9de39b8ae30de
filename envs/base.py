"""Shared MuJoCo base for the wmplan environments.

Every env is a `gymnasium.Env` built from an MJCF string. The base owns what is the same in all of
them: input validation (actions, states, reset options), exact full-state `get_state`/`set_state`,
fast flat-lit offscreen rendering from a fixed orthographic top-down camera, the observation dict
(`pixels` + `proprio`), goal handling and the step/reset skeleton. A subclass supplies the MJCF, how
an action drives the physics, the state samplers, proprio and the task metrics.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # must precede the mujoco import; see ENVS.md

import gymnasium as gym
import mujoco
import numpy as np

__all__ = ["MujocoEnv", "EnvInputError", "FAST_RENDER_VISUAL"]

# Flat lighting, no shadows, no multisampling: a 64x64 frame costs ~1 ms instead of ~25 ms.
FAST_RENDER_VISUAL = """
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.9 0.9 0.9" diffuse="0.1 0.1 0.1" specular="0 0 0"/>
    <map znear="0.01"/>
  </visual>"""

_SCENE_FLAGS_OFF = ("mjRND_SHADOW", "mjRND_REFLECTION", "mjRND_SKYBOX", "mjRND_FOG", "mjRND_HAZE")


class EnvInputError(ValueError):
    """Bad input to an environment: wrong shape, NaN, out of range, unknown option."""


class MujocoEnv(gym.Env):
    """Base class: a MuJoCo model seen by a fixed orthographic top-down camera.

    Subclasses implement `_build_xml`, `_apply_action`, `_sample_init_state`,
    `_sample_goal_state`, `_proprio`, `_task_info`, and set `action_space` and
    `proprio_dim` in their `__init__` before calling `super().__init__`.

    State layout (generic): ``[qpos, qvel, act, mocap_pos, mocap_quat, *extra]`` where
    ``extra`` is whatever a subclass returns from `_extra_state` (e.g. a goal region).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    camera_name = "top"
    max_image_size = 448
    proprio_dim: int
    action_space: gym.spaces.Box

    def __init__(self, image_size: int = 64, render_mode: str | None = "rgb_array"):
        if not isinstance(image_size, (int, np.integer)) or not 16 <= image_size <= self.max_image_size:
            raise EnvInputError(f"image_size must be an int in [16, {self.max_image_size}], got {image_size!r}")
        if render_mode not in (None, "rgb_array"):
            raise EnvInputError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self.image_size = int(image_size)
        self.render_mode = render_mode
        self.model = mujoco.MjModel.from_xml_string(self._build_xml())
        self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, self.image_size)
        self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, self.image_size)
        self.data = mujoco.MjData(self.model)
        self._renderer: mujoco.Renderer | None = None
        self.observation_space = gym.spaces.Dict(
            {
                "pixels": gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8),
                "proprio": gym.spaces.Box(-np.inf, np.inf, (self.proprio_dim,), np.float32),
            }
        )
        self._goal_state: np.ndarray | None = None
        self.state_dim = self.get_state().shape[0]

    # ----------------------------------------------------------------- subclass hooks
    def _build_xml(self) -> str:
        raise NotImplementedError

    def _apply_action(self, action: np.ndarray) -> None:
        """Advance the physics by one env step under `action` (already validated)."""
        raise NotImplementedError

    def _sample_init_state(self, rng: np.random.Generator, options: dict) -> np.ndarray:
        raise NotImplementedError

    def _sample_goal_state(self, rng: np.random.Generator, options: dict) -> np.ndarray:
        raise NotImplementedError

    def _proprio(self) -> np.ndarray:
        raise NotImplementedError

    def _task_info(self) -> dict:
        """Task metrics against `self.goal_state`, including the boolean `success`."""
        raise NotImplementedError

    def _extra_state(self) -> np.ndarray:
        return np.zeros(0)

    def _set_extra_state(self, extra: np.ndarray) -> None:
        pass

    def _check_state(self, state: np.ndarray) -> None:
        """Subclasses reject physically invalid states (e.g. inside a wall) here."""

    # ----------------------------------------------------------------- state
    def _physics_sizes(self) -> list[int]:
        m = self.model
        return [m.nq, m.nv, m.na, 3 * m.nmocap, 4 * m.nmocap]

    def get_state(self) -> np.ndarray:
        """The full state as a flat float64 vector; `set_state` restores it exactly.

        Time is not part of the state: no task here depends on it, and goals are time-free.
        """
        d = self.data
        parts = [d.qpos, d.qvel, d.act, d.mocap_pos.ravel(), d.mocap_quat.ravel(), self._extra_state()]
        return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts])

    @property
    def state_names(self) -> list[str]:
        """A name per entry of the state vector (joint names; velocities prefixed with 'd_')."""
        m = self.model
        free, ball = int(mujoco.mjtJoint.mjJNT_FREE), int(mujoco.mjtJoint.mjJNT_BALL)
        suffix = {free: ["x", "y", "z", "qw", "qx", "qy", "qz"], ball: ["qw", "qx", "qy", "qz"]}
        vsuffix = {free: ["vx", "vy", "vz", "wx", "wy", "wz"], ball: ["wx", "wy", "wz"]}
        pos, vel = [], []
        for j in range(m.njnt):
            name, kind = m.joint(j).name or f"joint{j}", int(m.jnt_type[j])
            pos += [f"{name}_{s}" for s in suffix[kind]] if kind in suffix else [name]
            vel += [f"d_{name}_{s}" for s in vsuffix[kind]] if kind in vsuffix else [f"d_{name}"]
        act = [f"act{i}" for i in range(m.na)]
        mocap = [f"mocap{i}_{c}" for i in range(m.nmocap) for c in "xyz"] + [f"mocap{i}_q{c}" for i in range(m.nmocap) for c in "wxyz"]
        extra = [f"extra{i}" for i in range(len(self._extra_state()))]
        return pos + vel + act + mocap + extra

    def validate_state(self, state) -> np.ndarray:
        state = np.asarray(state, dtype=np.float64)
        if state.ndim != 1 or state.shape[0] != self.state_dim:
            raise EnvInputError(
                f"{type(self).__name__} state must be a vector of length {self.state_dim}, got shape {state.shape}"
            )
        if not np.all(np.isfinite(state)):
            raise EnvInputError(f"{type(self).__name__} state contains NaN or inf: {state}")
        self._check_state(state)
        return state

    def set_state(self, state) -> None:
        """Restore a state from `get_state` exactly (warm-start caches are cleared too)."""
        state = self.validate_state(state)
        mujoco.mj_resetData(self.model, self.data)
        d, offset = self.data, 0
        fields = [d.qpos, d.qvel, d.act, d.mocap_pos, d.mocap_quat]
        for field, size in zip(fields, self._physics_sizes()):
            if size:
                field[...] = state[offset : offset + size].reshape(field.shape)
            offset += size
        self._set_extra_state(state[offset:])
        mujoco.mj_forward(self.model, self.data)

    # ----------------------------------------------------------------- goal
    @property
    def goal_state(self) -> np.ndarray:
        if self._goal_state is None:
            raise RuntimeError("call reset() before reading the goal")
        return self._goal_state

    def goal_observation(self) -> dict:
        """The observation dict of the goal state (pixels rendered, proprio read)."""
        return self.observation_of_state(self.goal_state)

    # ----------------------------------------------------------------- rendering
    def _get_renderer(self) -> mujoco.Renderer:
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.image_size, self.image_size)
            for flag in _SCENE_FLAGS_OFF:
                self._renderer.scene.flags[getattr(mujoco.mjtRndFlag, flag)] = 0
        return self._renderer

    def render(self) -> np.ndarray:
        """The current frame, H x W x 3 uint8, image-down rows (row 0 is the far +y edge)."""
        renderer = self._get_renderer()
        renderer.update_scene(self.data, camera=self.camera_name)
        for flag in _SCENE_FLAGS_OFF:
            renderer.scene.flags[getattr(mujoco.mjtRndFlag, flag)] = 0
        return renderer.render().copy()

    def render_state(self, state) -> np.ndarray:
        """Render any state without disturbing the current one."""
        return self.observation_of_state(state)["pixels"]

    def observation_of_state(self, state) -> dict:
        saved = self.get_state()
        try:
            self.set_state(state)
            return self._observation()
        finally:
            self.set_state(saved)

    def _observation(self) -> dict:
        return {"pixels": self.render(), "proprio": self._proprio().astype(np.float32)}

    # ----------------------------------------------------------------- gym API
    def validate_action(self, action) -> np.ndarray:
        space = self.action_space
        try:
            action = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise EnvInputError(f"action must be numeric, got {action!r}") from err
        if action.shape != space.shape:
            raise EnvInputError(f"action must have shape {space.shape}, got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise EnvInputError(f"action contains NaN or inf: {action}")
        tol = 1e-6 * (1 + np.abs(space.high - space.low))
        if np.any(action < space.low - tol) or np.any(action > space.high + tol):
            raise EnvInputError(
                f"action {action} is outside the action space [{space.low}, {space.high}]; clip it first"
            )
        return np.clip(action, space.low, space.high)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        self._check_options(options)
        mujoco.mj_resetData(self.model, self.data)
        if options.get("init_state") is not None:
            init = self.validate_state(options["init_state"])
        else:
            init = self._sample_init_state(self.np_random, options)
        if options.get("goal_state") is not None:
            goal = self.validate_state(options["goal_state"])
        else:
            goal = self._sample_goal_state(self.np_random, options)
        self._goal_state = np.array(goal, dtype=np.float64)
        self.set_state(init)
        return self._observation(), self._info()

    def step(self, action):
        if self._goal_state is None:
            raise RuntimeError("call reset() before step()")
        self._apply_action(self.validate_action(action))
        info = self._info()
        reward = float(info.get("reward", 0.0))
        # Never terminates: evaluation runs a fixed step budget (DESIGN.md); TimeLimit truncates.
        return self._observation(), reward, False, False, info

    def _info(self) -> dict:
        info = self._task_info()
        info["state"] = self.get_state()
        return info

    allowed_options: tuple[str, ...] = ("init_state", "goal_state")

    def _check_options(self, options: dict) -> None:
        unknown = set(options) - set(self.allowed_options)
        if unknown:
            raise EnvInputError(
                f"unknown reset option(s) {sorted(unknown)} for {type(self).__name__}; "
                f"allowed: {list(self.allowed_options)}"
            )

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
