"""Scripted greedy sweeper for the chip env (ENVS.md, "Chip sweeping": expert)."""

from __future__ import annotations

import numpy as np

from envs.chips_scene import inside_mask

__all__ = ["ChipsExpert"]


class ChipsExpert:
    """Greedy sweeper: push the outside chip farthest from the goal centre toward the centre.

    Each push starts `behind_mm` behind that chip and ends when the chip (riding `ahead_mm` in
    front of the board's centre) is `inside_mm` past the square's edge. Gaussian noise of `noise`
    mm is added to both push points, and a fraction `random_frac` of pushes are uniformly random.
    `noise=0, random_frac=0` is the clean expert. It reads the env's state and goal square.
    """

    def __init__(self, env, noise: float = 10.0, random_frac: float = 0.3, seed: int = 0,
                 behind_mm: float = 30.0, inside_mm: float = 20.0):
        if noise < 0 or not 0.0 <= random_frac <= 1.0:
            raise ValueError(f"need noise >= 0 and random_frac in [0, 1], got {noise}, {random_frac}")
        self.env, self.noise, self.random_frac, self.seed = env, float(noise), float(random_frac), seed
        self.behind_mm, self.inside_mm = behind_mm, inside_mm
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def act(self) -> np.ndarray:
        env = self.env
        if self.rng.random() < self.random_frac:
            return env.action_space.low + self.rng.random(4) * (env.action_space.high - env.action_space.low)
        start, end = self.plan_push()
        if self.noise > 0:
            start = start + self.rng.normal(0, self.noise, 2)
            end = end + self.rng.normal(0, self.noise, 2)
        return env.points_to_action(start, end)

    def target_chip(self) -> np.ndarray | None:
        """xy (mm) of the on-table chip outside the goal square farthest from its centre, if any."""
        env = self.env
        pos = env.chip_positions_mm()
        region = env.goal_region_mm
        outside = ~inside_mask(pos[:, :2], region) & ~env.off_table_mask(pos)
        if not outside.any():
            return None
        xy = pos[outside, :2]
        return xy[np.argmax(np.hypot(*(xy - region[:2]).T))]

    def plan_push(self) -> tuple[np.ndarray, np.ndarray]:
        """Clean push `(start, end)` in mm."""
        env, region = self.env, self.env.goal_region_mm
        chip = self.target_chip()
        if chip is None:  # all in: a harmless push in the table corner farthest from the square
            corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]]) * env.cfg.table_mm
            far = corners[np.argmax(np.hypot(*(corners - region[:2]).T))]
            return far, far
        centre, half = region[:2], region[2] / 2
        direction = (centre - chip) / max(np.hypot(*(centre - chip)), 1e-9)
        # Distance along the ray from the chip to the square's edge (slab test), then past it.
        with np.errstate(divide="ignore"):
            t_edge = np.max((np.abs(chip - centre) - half) / np.abs(direction), initial=0.0)
        t_stop = min(t_edge + self.inside_mm, np.hypot(*(centre - chip)))
        ahead = env.cfg.board_half_mm[1] + env.cfg.chip_radius_mm
        start = chip - self.behind_mm * direction
        end = chip + (t_stop - ahead) * direction
        return start, end
