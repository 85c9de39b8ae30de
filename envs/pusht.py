"""Push-T on MuJoCo: push a T-shaped block to a goal pose with a disc pusher.

Reproduces the quasi-static, frictionless behaviour of the published pymunk Push-T (Diffusion
Policy, gym-pusht, DINO-WM); numbers from shared/ENVS.md. All lengths are millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

from envs.base import FAST_RENDER_VISUAL, EnvInputError, MujocoEnv

__all__ = ["PushTEnv", "PushTConfig", "T_RECTS", "block_points_world", "coverage"]

WORKSPACE = 512.0  # mm, square side
WALL_IN, WALL_OUT = 7.0, 504.0  # inner faces of the walls
AGENT_RADIUS = 15.0
DP_GOAL_POSE = np.array([256.0, 256.0, np.pi / 4])  # Diffusion Policy's fixed goal pose
# T block in its body frame (origin = centre of mass, 45 mm below the bar's outer edge):
# rectangles as (centre x, centre y, half width, half height).
T_RECTS = np.array([[0.0, 30.0, 60.0, 15.0], [0.0, -30.0, 15.0, 45.0]])
BLOCK_INERTIA = 3000.0  # mm^2 * kg, about the hinge at the centre of mass


@dataclass(frozen=True)
class PushTConfig:
    """Physics and control constants of push-T (ENVS.md)."""

    kp: float = 100.0  # PD gain on the target error, 1/s^2
    kv: float = 20.0  # PD damping on the agent velocity, 1/s
    action_scale: float = 100.0  # relative action: target = p + action_scale * a (mm)
    substeps: int = 10  # 100 Hz physics, 10 Hz actions
    timestep: float = 0.01
    block_damping: float = 20.0  # viscous damping of block slides (per unit mass), makes it quasi-static
    agent_mass: float = 100.0  # heavy pusher so contacts barely slow it: effectively kinematic
    relative_actions: bool = True  # False: a in [-1,1]^2 maps to an absolute target in the workspace

    def __post_init__(self):
        if self.substeps < 1 or self.timestep <= 0:
            raise ValueError("substeps must be >= 1 and timestep > 0")


def _block_geoms() -> str:
    rects = [f'<geom name="t{i}" type="box" pos="{x} {y} 0" size="{hw} {hh} 10" material="block"/>' for i, (x, y, hw, hh) in enumerate(T_RECTS)]
    return "\n        ".join(rects)


def _xml(cfg: PushTConfig) -> str:
    c, w = WORKSPACE / 2, WALL_IN / 2
    walls = [(c, w, c, w), (c, WORKSPACE - (WORKSPACE - WALL_OUT) / 2, c, (WORKSPACE - WALL_OUT) / 2),
             (w, c, w, c), (WORKSPACE - (WORKSPACE - WALL_OUT) / 2, c, (WORKSPACE - WALL_OUT) / 2, c)]
    wall_xml = "\n    ".join(f'<geom type="box" pos="{x} {y} 0" size="{sx} {sy} 12" material="wall"/>' for x, y, sx, sy in walls)
    return f"""
<mujoco model="pusht">
  <compiler angle="radian"/>
  <option timestep="{cfg.timestep}" gravity="0 0 0" integrator="implicitfast"/>
  {FAST_RENDER_VISUAL}
  <default>
    <geom condim="1" contype="1" conaffinity="1" friction="0 0 0" solref="0.02 1"/>
  </default>
  <asset>
    <material name="floor" rgba="0.94 0.94 0.94 1"/>
    <material name="wall" rgba="0.55 0.55 0.55 1"/>
    <material name="block" rgba="0.47 0.53 0.60 1"/>
    <material name="agent" rgba="0.25 0.41 0.88 1"/>
  </asset>
  <worldbody>
    <camera name="top" pos="{c} {c} 500" projection="orthographic" fovy="100"/>
    <geom name="floor" type="box" pos="{c} {c} -20" size="{c} {c} 1" material="floor" contype="0" conaffinity="0"/>
    {wall_xml}
    <body name="agent" pos="0 0 0">
      <joint name="agent_x" type="slide" axis="1 0 0"/>
      <joint name="agent_y" type="slide" axis="0 1 0"/>
      <geom name="agent" type="cylinder" size="{AGENT_RADIUS} 10" material="agent" priority="1" mass="{cfg.agent_mass}"/>
    </body>
    <body name="block" pos="0 0 0">
      <inertial pos="0 0 0" mass="1" diaginertia="{BLOCK_INERTIA} {BLOCK_INERTIA} {BLOCK_INERTIA}"/>
      <joint name="block_x" type="slide" axis="1 0 0" damping="{cfg.block_damping}"/>
      <joint name="block_y" type="slide" axis="0 1 0" damping="{cfg.block_damping}"/>
      <joint name="block_theta" type="hinge" axis="0 0 1" damping="{cfg.block_damping * BLOCK_INERTIA}"/>
        {_block_geoms()}
    </body>
  </worldbody>
</mujoco>"""


def _local_grid(spacing: float = 2.5) -> np.ndarray:
    """Points on a regular grid covering the T, in the block frame: [M, 2]."""
    pts = []
    for x, y, hw, hh in T_RECTS:
        gx = np.arange(x - hw + spacing / 2, x + hw, spacing)
        gy = np.arange(y - hh + spacing / 2, y + hh, spacing)
        pts.append(np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2))
    return np.concatenate(pts)


_T_GRID = _local_grid()


def _rot(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def block_points_world(pose: np.ndarray, local: np.ndarray = _T_GRID) -> np.ndarray:
    """Block-frame points [M, 2] placed at pose (x, y, theta): world points [M, 2]."""
    return local @ _rot(pose[2]).T + pose[:2]


def inside_t(pose: np.ndarray, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Which world points [M, 2] lie inside the T at `pose`, grown by `margin` mm: bool [M]."""
    local = (points - pose[:2]) @ _rot(pose[2])  # rotate world -> block frame
    inside = np.zeros(len(points), dtype=bool)
    for x, y, hw, hh in T_RECTS:
        inside |= (np.abs(local[:, 0] - x) <= hw + margin) & (np.abs(local[:, 1] - y) <= hh + margin)
    return inside


def coverage(pose: np.ndarray, goal_pose: np.ndarray) -> float:
    """Fraction of the goal T's area covered by the block (Diffusion Policy's metric), in [0, 1]."""
    return float(inside_t(pose, block_points_world(goal_pose)).mean())


def wrap_angle(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


class PushTEnv(MujocoEnv):
    """Push a T-shaped block to a goal pose (quasi-static, frictionless; pymunk Push-T in MuJoCo).

    ## Action Space
    `Box(-1, 1, (2,))`. Relative (default, DINO-WM): the pusher tracks `target = p + 100 a` mm
    with a PD law `v += (100 (target - p) - 20 v) dt` at 100 Hz for 0.1 s. With
    `relative_actions=False`, `a` maps linearly to an absolute target in the workspace.
    Out-of-range, NaN or wrongly shaped actions raise `EnvInputError`.

    ## Observation Space
    `Dict(pixels=Box(0, 255, (S, S, 3), uint8), proprio=Box(4,))`: a top-down orthographic frame
    (S = `image_size`, 64 by default) and the pusher's position and velocity (mm, mm/s).

    ## Rewards / Success
    Reward is `coverage` of the goal T by the block. `info["success"]` is DINO-WM's criterion:
    ||(agent, block) xy - goal|| < 20 mm and block angle error < pi/9. Also reported:
    `success_block` (block xy < 20 mm and angle < 20 deg), `success_coverage` (coverage >= 0.95,
    Diffusion Policy), `block_pos_error` (mm), `block_angle_error` (rad), `coverage`,
    `agent_pos`, `block_pose`, `contact` (pusher touches the block).

    ## Starting State
    Agent uniform in [50, 450]^2 mm, block in [100, 400]^2 mm, angle uniform in (-pi, pi], with the
    pusher not overlapping the block. Goal: Diffusion Policy's block pose (256, 256, pi/4) unless
    `options["goal_state"]` is given. `options["init_state"]` sets the start exactly.

    ## Episode End
    Never terminates; `gymnasium.make` truncates at 300 steps. Evaluations use fixed budgets.

    State vector (10): agent x, y, block x, y, theta, then their velocities.
    """

    proprio_dim = 4

    def __init__(self, image_size: int = 64, config: PushTConfig = PushTConfig(), render_mode: str | None = "rgb_array"):
        self.config = config
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        super().__init__(image_size=image_size, render_mode=render_mode)
        self.model.cam_fovy[0] = WORKSPACE  # the compiler caps fovy at 180 even for orthographic views
        self._agent_dofs = np.array([self.model.joint(n).dofadr[0] for n in ("agent_x", "agent_y")])

    def _build_xml(self) -> str:
        return _xml(self.config)

    # ------------------------------------------------------------ task quantities on state vectors
    @staticmethod
    def agent_pos(state: np.ndarray) -> np.ndarray:
        return np.asarray(state)[..., 0:2]

    @staticmethod
    def block_pose(state: np.ndarray) -> np.ndarray:
        return np.asarray(state)[..., 2:5]

    def task_metrics(self, state: np.ndarray, goal: np.ndarray) -> dict:
        """Success criteria and errors of `state` against `goal` (both state vectors)."""
        pose, goal_pose = self.block_pose(state), self.block_pose(goal)
        angle_err = float(abs(wrap_angle(pose[2] - goal_pose[2])))
        pos_err = float(np.linalg.norm(pose[:2] - goal_pose[:2]))
        dino_err = float(np.linalg.norm(np.asarray(state)[:4] - np.asarray(goal)[:4]))
        cov = coverage(pose, goal_pose)
        return {
            "success": dino_err < 20.0 and angle_err < np.pi / 9,
            "success_block": pos_err < 20.0 and angle_err < np.deg2rad(20.0),
            "success_coverage": cov >= 0.95,
            "coverage": cov,
            "block_pos_error": pos_err,
            "block_angle_error": angle_err,
            "state_error": dino_err,
        }

    # ------------------------------------------------------------ hooks
    def _task_info(self) -> dict:
        state = self.get_state()
        info = self.task_metrics(state, self.goal_state)
        info.update(reward=info["coverage"], agent_pos=self.agent_pos(state).copy(),
                    block_pose=self.block_pose(state).copy(), contact=self._pusher_contact())
        return info

    def _pusher_contact(self) -> bool:
        agent = self.model.geom("agent").id
        blocks = {self.model.geom(f"t{i}").id for i in range(len(T_RECTS))}
        for c in self.data.contact[: self.data.ncon]:
            if (c.geom1 == agent and c.geom2 in blocks) or (c.geom2 == agent and c.geom1 in blocks):
                return True
        return False

    def _proprio(self) -> np.ndarray:
        s = self.get_state()
        return np.concatenate([s[0:2], s[5:7]])

    def _target(self, action: np.ndarray) -> np.ndarray:
        lo, hi = WALL_IN + AGENT_RADIUS, WALL_OUT - AGENT_RADIUS
        if self.config.relative_actions:
            target = self.data.qpos[0:2] + self.config.action_scale * action
        else:
            target = lo + (action + 1.0) / 2.0 * (hi - lo)
        return np.clip(target, lo, hi)

    def _apply_action(self, action: np.ndarray) -> None:
        cfg, d = self.config, self.data
        target = self._target(action)
        for _ in range(cfg.substeps):
            p, v = d.qpos[0:2], d.qvel[self._agent_dofs]
            d.qvel[self._agent_dofs] = v + (cfg.kp * (target - p) - cfg.kv * v) * cfg.timestep
            mujoco.mj_step(self.model, d)
        mujoco.mj_forward(self.model, d)  # the frame shows the final state, not the last step's start

    def simulate(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Physics-only rollout (no rendering) of `actions` [T, 2] from `state`: states [T, 10].

        An oracle for scripted experts and tests; the env's current state is restored afterwards.
        """
        saved = self.get_state()
        try:
            self.set_state(state)
            out = []
            for action in np.asarray(actions, dtype=np.float64).reshape(-1, 2):
                self._apply_action(self.validate_action(action))
                out.append(self.get_state())
            return np.array(out)
        finally:
            self.set_state(saved)

    def _check_state(self, state: np.ndarray) -> None:
        lo, hi = WALL_IN, WALL_OUT
        if np.any(state[0:4] < lo) or np.any(state[0:4] > hi):
            raise EnvInputError(f"push-T state puts the agent or block outside the workspace [{lo}, {hi}] mm: {state[:5]}")

    def _state_from_poses(self, agent_xy, block_pose) -> np.ndarray:
        return np.concatenate([agent_xy, block_pose, np.zeros(5)]).astype(np.float64)

    def _sample_init_state(self, rng: np.random.Generator, options: dict) -> np.ndarray:
        while True:
            agent = rng.uniform(50, 450, 2)
            block = np.array([*rng.uniform(100, 400, 2), rng.uniform(-np.pi, np.pi)])
            if not inside_t(block, agent[None], margin=AGENT_RADIUS + 5)[0]:
                return self._state_from_poses(agent, block)

    def _sample_goal_state(self, rng: np.random.Generator, options: dict) -> np.ndarray:
        return self._state_from_poses(np.array([256.0, 420.0]), DP_GOAL_POSE)
