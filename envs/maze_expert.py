"""Scripted maze expert: breadth-first waypoints through the grid and a PD controller (D4RL).

Used through `envs.maze.MazeExpert` (the registry's name for it).
"""

from __future__ import annotations

import numpy as np

from envs.maze_layouts import MazeLayout, path_from

__all__ = ["MazeExpert", "straight_run_target"]


def straight_run_target(layout: MazeLayout, path: list, goal_pos: np.ndarray) -> np.ndarray:
    """The farthest point reachable in a straight line along `path` (cells, current cell first).

    Cells in one row or column form a convex corridor, so the segment to the last cell of the
    first straight run stays inside free space: the goal position itself if the run reaches the goal
    cell, else that cell's centre. Aiming past the next cell keeps the agent fast on long corridors.
    """
    if len(path) <= 1:
        return goal_pos
    axis = 0 if path[1][0] == path[0][0] else 1  # 0: same row (moving in x); 1: same column
    end = 1
    while end + 1 < len(path) and path[end + 1][axis] == path[0][axis]:
        end += 1
    return goal_pos if end == len(path) - 1 else layout.cell_center(path[end])


class MazeExpert:
    """Waypoint-following expert with data-collection noise.

    Action: `a = clip(p_gain * (w - x) - d_gain * v, -1, 1)` toward waypoint `w` (D4RL's
    WaypointController gains 10 and 1). For data collection, episodes are cut into segments of
    `segment_steps`; each segment is random (uniform actions) with probability `random_frac`,
    "direct" with probability `direct_frac` (the same controller aimed straight at the goal through
    the walls, as a wall-blind planner would drive: the data then shows the agent stopped by them),
    else the expert; expert and direct segments add Gaussian noise of std `noise`.

    Args:
        env: a `MazeEnv`; the expert reads `env.get_state()`, `env.goal_state` and `env.layout`.
        noise: std of the Gaussian action noise in expert segments; 0 gives the clean expert.
        random_frac: probability that a segment is random; default 0.5 if `noise > 0`, else 0.
        direct_frac: probability that a segment steers straight at the goal, ignoring walls.
        segment_steps: length of a segment in env steps.
        seed: seed of the expert's own generator (noise and segment draws).
    """

    def __init__(self, env, noise: float = 0.3, random_frac: float | None = None, segment_steps: int = 100,
                 seed: int = 0, p_gain: float = 10.0, d_gain: float = 1.0, direct_frac: float = 0.0):
        if noise < 0 or segment_steps < 1:
            raise ValueError("noise must be >= 0 and segment_steps >= 1")
        self.random_frac = (0.5 if noise > 0 else 0.0) if random_frac is None else float(random_frac)
        self.direct_frac = float(direct_frac)
        if not (0 <= self.random_frac and 0 <= self.direct_frac and self.random_frac + self.direct_frac <= 1):
            raise ValueError(f"random_frac and direct_frac must be >= 0 with sum <= 1, got {random_frac}, {direct_frac}")
        self.env, self.noise, self.segment_steps = env, float(noise), int(segment_steps)
        self.p_gain, self.d_gain = p_gain, d_gain
        self.rng = np.random.default_rng(seed)
        self._dist_cache: dict = {}
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._t = 0
        self._random_segment = self._direct_segment = False

    def waypoint(self, pos: np.ndarray, goal_pos: np.ndarray) -> np.ndarray:
        """The point the controller steers to from `pos` toward `goal_pos`."""
        layout = self.env.layout
        goal_cell = layout.cell_of(goal_pos)
        key = (layout.code, goal_cell)
        if key not in self._dist_cache:
            self._dist_cache = {key: layout.distances_to(goal_cell)}  # one goal at a time
        path = path_from(layout.cell_of(pos), self._dist_cache[key])
        return straight_run_target(layout, path, goal_pos) if path else goal_pos

    def clean_action(self, direct: bool = False) -> np.ndarray:
        """The controller toward the next waypoint (or straight toward the goal if `direct`)."""
        state, goal = self.env.get_state(), self.env.goal_state
        pos, vel = state[0:2], state[2:4]
        target = goal[0:2] if direct else self.waypoint(pos, goal[0:2])
        return np.clip(self.p_gain * (target - pos) - self.d_gain * vel, -1.0, 1.0)

    def act(self) -> np.ndarray:
        if self._t % self.segment_steps == 0:
            draw = self.rng.random()  # one draw per segment, so direct_frac=0 keeps the old sequences
            self._random_segment = bool(draw < self.random_frac)
            self._direct_segment = bool(self.random_frac <= draw < self.random_frac + self.direct_frac)
        self._t += 1
        if self._random_segment:
            return self.rng.uniform(-1.0, 1.0, 2).astype(np.float32)
        action = self.clean_action(direct=self._direct_segment)
        if self.noise > 0:
            action = action + self.rng.normal(0.0, self.noise, 2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)
