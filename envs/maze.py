"""Point-mass maze navigation (D4RL maze2d physics) on standard and random labmaze layouts.

Numbers from shared/ENVS.md. Lengths are in maze cells (1 x 1); layouts live in `envs.maze_layouts`.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

from envs.base import FAST_RENDER_VISUAL, EnvInputError, MujocoEnv
from envs.maze_expert import MazeExpert  # re-exported: the registry names envs.maze:MazeExpert
from envs.maze_layouts import MazeLayout, layout_from_code, random_layout, standard_layout

__all__ = ["MazeEnv", "MazeConfig", "MazeExpert"]

AGENT_RADIUS = 0.1
_FLOOR_RGBA, _WALL_RGBA, _AGENT_RGBA = "0.92 0.92 0.88 1", "0.30 0.32 0.38 1", "0.85 0.20 0.15 1"


@dataclass(frozen=True)
class MazeConfig:
    """Physics, task and rendering constants of the maze (ENVS.md, D4RL maze2d)."""

    frame_skip: int = 5  # physics steps of 0.01 s per env step: 20 Hz control
    max_speed: float = 5.0  # |qvel| is clipped to this before every env step (D4RL)
    success_radius: float = 0.45  # Gymnasium-Robotics PointMaze; `success_05` reports DINO-WM's < 0.5
    jitter: float = 0.25  # sampled starts/goals: cell centre + uniform(+-jitter) per axis
    min_start_goal_distance: float = 0.5  # sampled goals lie at least this far from the start
    random_shape: tuple[int, int] = (9, 9)  # rows, cols (odd) of labmaze random layouts, outer wall included
    train_layout_seeds: tuple[int, int] = (0, 1000)  # [lo, hi) drawn per reset by MazeEnv(layout="random", layout_seed=None)
    marker_radius: float = 0.2  # drawn agent radius (D4RL draws a 0.2 site; the collision sphere is 0.1)
    view_margin: float = 0.25  # wall thickness kept in view around the free interior
    dense_reward: bool = False  # False: reward = success (sparse); True: exp(-distance) (Gymnasium-Robotics)

    def __post_init__(self):
        if self.frame_skip < 1 or self.max_speed <= 0 or self.success_radius <= 0:
            raise ValueError("frame_skip must be >= 1, max_speed and success_radius > 0")
        if not 0 <= self.jitter < 0.5 - AGENT_RADIUS:
            raise ValueError(f"jitter must be in [0, {0.5 - AGENT_RADIUS}) so samples stay clear of walls")


def _xml(layout: MazeLayout, cfg: MazeConfig) -> str:
    n_rows, n_cols = layout.shape
    cx, cy = (n_cols - 1) / 2, (n_rows - 1) / 2
    view = max(n_rows, n_cols) - 2 + 2 * cfg.view_margin
    walls = []
    for r, c0, c1 in layout.wall_runs():
        x, y = (c0 + c1) / 2, layout.cell_center((r, c0))[1]
        walls.append(f'<geom type="box" pos="{x} {y} 0" size="{(c1 - c0 + 1) / 2} 0.5 0.2" material="wall"/>')
    return f"""
<mujoco model="maze">
  <compiler angle="radian" inertiafromgeom="true"/>
  <option timestep="0.01" gravity="0 0 0" integrator="Euler"/>
  {FAST_RENDER_VISUAL}
  <default>
    <joint damping="1" limited="false"/>
    <geom friction=".5 .1 .1" density="1000" condim="1" contype="2" conaffinity="1"/>
  </default>
  <asset>
    <material name="floor" rgba="{_FLOOR_RGBA}"/>
    <material name="wall" rgba="{_WALL_RGBA}"/>
  </asset>
  <worldbody>
    <camera name="top" pos="{cx} {cy} 3" xyaxes="1 0 0 0 1 0" projection="orthographic" fovy="{view}"/>
    <geom name="background" type="box" pos="{cx} {cy} -0.4" size="{view} {view} 0.01" material="wall" contype="0" conaffinity="0"/>
    <geom name="floor" type="box" pos="{cx} {cy} -0.3" size="{n_cols / 2} {n_rows / 2} 0.01" material="floor" contype="0" conaffinity="0"/>
    {chr(10).join(walls)}
    <body name="agent" pos="0 0 0">
      <joint name="agent_x" type="slide" axis="1 0 0"/>
      <joint name="agent_y" type="slide" axis="0 1 0"/>
      <geom name="agent" type="sphere" size="{AGENT_RADIUS}" contype="1" conaffinity="0" rgba="0 0 0 0"/>
      <site name="marker" type="sphere" size="{cfg.marker_radius}" rgba="{_AGENT_RGBA}"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="agent_x" ctrlrange="-1 1" ctrllimited="true" gear="100"/>
    <motor joint="agent_y" ctrlrange="-1 1" ctrllimited="true" gear="100"/>
  </actuator>
</mujoco>"""


class MazeEnv(MujocoEnv):
    """Drive a point mass through a maze to a goal position (D4RL maze2d / DINO-WM PointMaze).

    ## Action Space
    `Box(-1, 1, (2,))`: motor commands on the x and y slides (force = 100 N * a). Each env step holds
    the action for `frame_skip` = 5 physics steps of 0.01 s (20 Hz); the velocity is clipped to
    +-5 cells/s before each step, as in D4RL.

    ## Observation Space
    `Dict(pixels=Box(0, 255, (S, S, 3), uint8), proprio=Box(-inf, inf, (4,), float32))`: a flat-lit
    orthographic top-down image (map as printed, row 0 at the top; goal NOT drawn) and the agent's
    `(x, y, vx, vy)`. The full state (`get_state`) is `(x, y, vx, vy, layout_code)`.

    ## Rewards / Success
    `success` when the agent centre is within 0.45 of the goal position (Gymnasium-Robotics);
    `success_05` is DINO-WM's `< 0.5`. The reward is `success` (sparse), or `exp(-distance)` with
    `MazeConfig(dense_reward=True)`. `info` also has `distance`, `agent_pos`, `agent_vel`,
    `wall_contact` (touched a wall during the last step) and `wall_contact_count` (physics steps in
    contact during the last step, 0..frame_skip; after reset/set_state: contact now, 0 or 1).

    ## Starting State
    Start and goal are sampled uniformly over free cells with a uniform +-0.25 jitter per axis, at
    least 0.5 apart, at rest. Reset options: `layout` ("umaze", "medium", "large", "random") and
    `layout_seed` (random layouts; alone it implies "random"); `start_cell`/`goal_cell` as (row, col);
    `MazeEnv(layout="random", layout_seed=None)` draws a new layout per reset from the seeded reset
    generator, seeds in `config.train_layout_seeds` (keep higher seeds for unseen test layouts);
    `start_pos`/`goal_pos` as world (x, y); or full `init_state`/`goal_state` vectors (their layout
    code selects the layout). A layout change rebuilds the MuJoCo model; the state size stays 5.
    `set_state` only accepts states of the current layout (reset with it to switch).

    ## Episode End
    Never terminates; the registered TimeLimit truncates after 300 steps.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    proprio_dim = 4
    allowed_options = ("init_state", "goal_state", "layout", "layout_seed",
                       "start_cell", "goal_cell", "start_pos", "goal_pos")

    def __init__(self, layout: str = "umaze", layout_seed: int | None = 0, image_size: int = 64,
                 config: MazeConfig = MazeConfig(), render_mode: str | None = "rgb_array"):
        self.config = config
        self.resample_layout = layout == "random" and layout_seed is None
        self.default_layout_seed = config.train_layout_seeds[0] if layout_seed is None else layout_seed
        self.layout = self._resolve_layout(layout, self.default_layout_seed)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._contact_steps = 0
        self._pending_start: np.ndarray | None = None
        super().__init__(image_size=image_size, render_mode=render_mode)

    def _build_xml(self) -> str:
        return _xml(self.layout, self.config)

    # ----------------------------------------------------------------- layouts
    def _resolve_layout(self, name, seed) -> MazeLayout:
        if name == "random":
            return random_layout(seed, self.config.random_shape)
        return standard_layout(name)

    def _switch_layout(self, layout: MazeLayout) -> None:
        """Rebuild model, data and renderer for another layout (no-op for the current one)."""
        if layout.code == self.layout.code:
            return
        self.close()
        self.layout = layout
        self.model = mujoco.MjModel.from_xml_string(self._build_xml())
        self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, self.image_size)
        self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, self.image_size)
        self.data = mujoco.MjData(self.model)

    def _layout_for_reset(self, options: dict, seed: int | None) -> MazeLayout:
        """The layout a reset asks for: the layout options, else that of a given state, else the current
        one (or a freshly drawn one in resampling mode)."""
        codes = {k: self._state_layout_code(options[k], k) for k in ("init_state", "goal_state") if options.get(k) is not None}
        if "layout" in options or "layout_seed" in options:
            layout = self._resolve_layout(options.get("layout", "random"), options.get("layout_seed", self.default_layout_seed))
        elif codes:
            layout = layout_from_code(next(iter(codes.values())), self.config.random_shape)
        elif self.resample_layout:
            # A stream apart from the one that samples start and goal (the base reseeds that with `seed`).
            rng = self.np_random if seed is None else np.random.default_rng((seed, 0x6D617A65))
            layout = random_layout(int(rng.integers(*self.config.train_layout_seeds)), self.config.random_shape)
        else:
            layout = self.layout
        for key, code in codes.items():
            if code != layout.code:
                raise EnvInputError(f"{key} has layout code {code}, but this reset uses layout code {layout.code}")
        return layout

    def _check_options(self, options: dict) -> None:
        super()._check_options(options)
        for state_key, prefix in (("init_state", "start"), ("goal_state", "goal")):
            given = [k for k in (state_key, f"{prefix}_cell", f"{prefix}_pos") if options.get(k) is not None]
            if len(given) > 1:
                raise EnvInputError(f"reset options {given} conflict: give at most one of them")
        if options.get("layout", "random") != "random" and "layout_seed" in options:
            raise EnvInputError(f"layout_seed only applies to layout='random', got layout={options['layout']!r}")

    def _state_layout_code(self, state, key: str) -> float:
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (5,) or not np.all(np.isfinite(state)):
            raise EnvInputError(f"{key} must be a finite vector of length 5 (x, y, vx, vy, layout_code), got {state}")
        return float(state[4])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = dict(options or {})
        self._check_options(options)
        self._switch_layout(self._layout_for_reset(options, seed))
        self._pending_start = None
        return super().reset(seed=seed, options=options)

    # ----------------------------------------------------------------- task quantities
    @staticmethod
    def agent_pos(state: np.ndarray) -> np.ndarray:
        return np.asarray(state)[..., 0:2]

    @staticmethod
    def agent_vel(state: np.ndarray) -> np.ndarray:
        return np.asarray(state)[..., 2:4]

    def goal_distance(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Euclidean distance between agent positions (batched over leading axes)."""
        return np.linalg.norm(self.agent_pos(state) - self.agent_pos(goal), axis=-1)

    def is_success(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return self.goal_distance(state, goal) <= self.config.success_radius

    def _task_info(self) -> dict:
        state, goal = self.get_state(), self.goal_state
        distance = float(self.goal_distance(state, goal))
        success = bool(self.is_success(state, goal))
        return {
            "success": success,
            "success_05": distance < 0.5,
            "distance": distance,
            "agent_pos": self.agent_pos(state).copy(),
            "agent_vel": self.agent_vel(state).copy(),
            "wall_contact": self._contact_steps > 0,
            "wall_contact_count": self._contact_steps,
            "reward": float(np.exp(-distance)) if self.config.dense_reward else float(success),
        }

    def _proprio(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel])

    # ----------------------------------------------------------------- physics and state
    def _apply_action(self, action: np.ndarray) -> None:
        d = self.data
        d.qvel[:] = np.clip(d.qvel, -self.config.max_speed, self.config.max_speed)
        d.qacc_warmstart[:] = 0.0  # the next state depends on the state vector alone
        d.ctrl[:] = action
        contacts = 0  # physics states after each substep that touch a wall (the floor does not collide)
        for i in range(self.config.frame_skip):
            mujoco.mj_step(self.model, d)  # its contacts are those of the state it started from
            contacts += i > 0 and d.ncon > 0
        mujoco.mj_forward(self.model, d)  # bring rendering and contacts to the final state
        self._contact_steps = int(contacts + (d.ncon > 0))

    def _extra_state(self) -> np.ndarray:
        return np.array([self.layout.code])

    def _check_state(self, state: np.ndarray) -> None:
        if state[4] != self.layout.code:
            raise EnvInputError(
                f"state has layout code {state[4]} but the env has layout {self.layout.name!r} (code "
                f"{self.layout.code}); reset(options={{'init_state': state}}) switches layouts"
            )
        if not self.layout.is_free(self.layout.cell_of(state[:2])):
            raise EnvInputError(f"agent position {state[:2]} lies inside a wall or outside the {self.layout.name} maze")

    @property
    def state_names(self) -> list[str]:
        return super().state_names[:4] + ["extra_layout_code"]  # 'extra' keeps it out of default probe targets

    def set_state(self, state) -> None:
        super().set_state(state)
        self._contact_steps = int(self.data.ncon > 0)

    def state_at(self, pos, vel=(0.0, 0.0)) -> np.ndarray:
        """The full state vector of the agent at `pos` with velocity `vel` in the current layout."""
        return np.concatenate([np.asarray(pos, float), np.asarray(vel, float), [self.layout.code]])

    # ----------------------------------------------------------------- sampling
    def _checked_cell(self, cell, key: str) -> tuple[int, int]:
        arr = np.asarray(cell)
        if arr.shape != (2,) or not np.issubdtype(arr.dtype, np.integer):
            raise EnvInputError(f"{key} must be an integer (row, col), got {cell!r}")
        cell = (int(arr[0]), int(arr[1]))
        if not self.layout.in_grid(cell):
            raise EnvInputError(f"{key} {cell} is outside the {self.layout.shape} {self.layout.name} grid")
        if not self.layout.is_free(cell):
            raise EnvInputError(f"{key} {cell} is a wall cell of the {self.layout.name} maze")
        return cell

    def _checked_pos(self, pos, key: str) -> np.ndarray:
        arr = np.asarray(pos, dtype=np.float64)
        if arr.shape != (2,) or not np.all(np.isfinite(arr)):
            raise EnvInputError(f"{key} must be a finite (x, y), got {pos!r}")
        if self.layout.wall_clearance(arr) < AGENT_RADIUS:
            raise EnvInputError(f"{key} {arr} puts the agent (radius {AGENT_RADIUS}) inside a wall of the {self.layout.name} maze")
        return arr

    def _sample_position(self, rng, options: dict, prefix: str, avoid: np.ndarray | None) -> np.ndarray:
        if options.get(f"{prefix}_pos") is not None:
            return self._checked_pos(options[f"{prefix}_pos"], f"{prefix}_pos")
        fixed_cell = options.get(f"{prefix}_cell")
        if fixed_cell is not None:
            fixed_cell = self._checked_cell(fixed_cell, f"{prefix}_cell")
        free, jitter = self.layout.free_cells, self.config.jitter
        for _ in range(1000):
            cell = fixed_cell if fixed_cell is not None else free[rng.integers(len(free))]
            pos = self.layout.cell_center(cell) + rng.uniform(-jitter, jitter, 2)
            if avoid is None or np.linalg.norm(pos - avoid) >= self.config.min_start_goal_distance:
                return pos
        raise EnvInputError(f"could not place the {prefix} at least {self.config.min_start_goal_distance} from the start")

    def _sample_init_state(self, rng: np.random.Generator, options: dict) -> np.ndarray:
        self._pending_start = self._sample_position(rng, options, "start", None)
        return self.state_at(self._pending_start)

    def _sample_goal_state(self, rng: np.random.Generator, options: dict) -> np.ndarray:
        start = options.get("init_state")
        start = self._pending_start if start is None else np.asarray(start, float)[:2]
        return self.state_at(self._sample_position(rng, options, "goal", start))

