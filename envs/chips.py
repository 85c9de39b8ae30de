"""Chip sweeping: push ~100 flat chips into a square goal region with a flat board (DINO-WM's
"Granular" task rebuilt in MuJoCo, success as in Ravens' sweeping-piles). See ENVS.md."""

from __future__ import annotations

import math

import gymnasium as gym
import mujoco
import numpy as np

from envs.base import EnvInputError, MujocoEnv
from envs.chips_expert import ChipsExpert
from envs.chips_scene import (
    MM,
    ChipsConfig,
    build_xml,
    chamfer_mm,
    check_region,
    grid_chips,
    inside_mask,
    sample_region,
    scatter_chips,
)

__all__ = ["ChipsEnv", "ChipsExpert", "ChipsConfig"]

_QUAT_ID = np.array([1.0, 0.0, 0.0, 0.0])


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


class ChipsEnv(MujocoEnv):
    """Sweep `n_chips` flat chips into a square goal region with a board driven by a mocap body.

    The board is a heavy gravity-compensated free body welded to the mocap target (so its contacts
    see a real velocity instead of mocap's penetration-driven pushes). Chips slide in the table
    plane (joints slide x, slide y; `chips_scene.build_xml`), so they cannot tip or stack, and the
    table's friction is damping on those slides.

    State: ``[board free joint (7), chip x, y (2N), their velocities (6 + 2N), board target pos (3),
    quat (4), goal square (3)]`` (`state_names` names every entry: `board_x`, `chip0_x`, ...).

    Units: the table is [0, 512]² mm, top at z = 0; the MuJoCo model and the state vector are in
    metres, every task quantity (info, `goal_region_mm`, helpers) in millimetres.

    ## Action Space
    `Box(-1, 1, (4,))`: one straight push `(x_start, y_start, x_end, y_end)`, each mapped linearly
    from [-1, 1] onto the table [0, 512] mm. One step executes the whole push: the lifted board moves
    above the start, lowers (held perpendicular to the push), pushes straight at `push_speed_mm_s`,
    lifts (lowering and lifting take no simulated time) and the scene settles until every chip is
    slower than `rest_speed_mm_s` (1 mm/s), for at most 0.2 s. A push shorter than 1 mm keeps the
    last heading.

    ## Observation Space
    `Dict(pixels=Box(0, 255, (S, S, 3), uint8), proprio=Box(-inf, inf, (4,), float32))`: a flat-lit
    orthographic top-down frame of the table (S = `image_size`, the goal region is not drawn), and the
    board's centre in action coordinates ([-1, 1]²) with its push heading `(cos, sin)`.

    ## Rewards / Success
    Reward is the fraction of chip centres inside the goal square. `info`: `fraction_inside`,
    `success` (fraction ≥ 0.9), `chamfer_mm` (symmetric Chamfer distance to the goal chips' centres),
    `n_off_table` (chip centres pushed beyond the table square; the table plane extends past the
    camera's view, so such chips stay in the state, out of reach, and are counted, never dropped),
    `board_xy_mm`, `stacked` / `max_chip_z_mm` (a chip resting on another: never, chips are planar),
    `max_chip_speed_mm_s`.

    ## Starting State
    Chips scattered without overlap over a random square patch of side 250-350 mm; the board lifted
    above a random table point. The goal is a random square of side 160-220 mm (sized so the chips
    fill ≤ 70 % of it) with the chips on a jittered grid inside it. The square is part of every state
    (its last 3 entries, metres) and belongs to the goal: `reset(options={"goal_state": g})` takes it
    from `g`, overwriting the square stored in an `init_state`. Options: `init_state`, `goal_state`,
    `goal_region` (`(cx, cy, side)` in mm; the goal chips are placed on a grid inside it).

    ## Episode End
    Never terminates; `gymnasium.make` truncates after 40 pushes.
    """

    allowed_options = ("init_state", "goal_state", "goal_region")

    def __init__(
        self,
        n_chips: int = 100,
        image_size: int = 64,
        render_mode: str | None = "rgb_array",
        push_speed_mm_s: float = 150.0,
    ):
        self.cfg = ChipsConfig(n_chips=n_chips, push_speed_mm_s=push_speed_mm_s)
        self.n_chips = self.cfg.n_chips
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.proprio_dim = 4
        self._region_mm = np.array([self.cfg.table_mm / 2, self.cfg.table_mm / 2, self.cfg.region_side_mm[1]])
        self._pending_region_mm: np.ndarray | None = None
        super().__init__(image_size=image_size, render_mode=render_mode)
        self._board_mocap = self.model.body("board_target").mocapid[0]
        self._settle_steps = round(self.cfg.settle_s / self.cfg.timestep)

    # ----------------------------------------------------------------- task quantities (mm)
    def chip_positions_mm(self, state=None) -> np.ndarray:
        """(N, 3) chip centres in mm, of `state` or of the current state."""
        qpos = self.data.qpos if state is None else np.asarray(state)[: self.model.nq]
        xy = qpos[7:].reshape(self.n_chips, 2)  # qpos[:7] is the board's free joint, then (x, y) per chip
        z = np.full((self.n_chips, 1), self.cfg.chip_half_height_mm * MM)  # planar chips lie flat
        return np.concatenate([xy, z], axis=1) / MM

    def chip_speeds_mm_s(self) -> np.ndarray:
        return np.linalg.norm(self.data.qvel[6:].reshape(self.n_chips, 2), axis=1) / MM

    def region_of(self, state) -> np.ndarray:
        """The goal square `(cx, cy, side)` in mm stored in a state vector."""
        return np.asarray(state, dtype=np.float64)[-3:] / MM

    @property
    def goal_region_mm(self) -> np.ndarray:
        return self.region_of(self.goal_state)

    def off_table_mask(self, pos_mm: np.ndarray) -> np.ndarray:
        t = self.cfg.table_mm
        outside = (pos_mm[:, 0] < 0) | (pos_mm[:, 0] > t) | (pos_mm[:, 1] < 0) | (pos_mm[:, 1] > t)
        return outside | (pos_mm[:, 2] < -self.cfg.chip_half_height_mm)

    def fraction_inside(self, pos_mm: np.ndarray, region_mm: np.ndarray) -> float:
        inside = inside_mask(pos_mm[:, :2], region_mm) & ~self.off_table_mask(pos_mm)
        return float(inside.mean())

    def stacked_mask(self, pos_mm: np.ndarray) -> np.ndarray:
        """Chips on the table whose centre sits above resting height (on or leaning on another)."""
        on_table = ~self.off_table_mask(pos_mm)
        return on_table & (pos_mm[:, 2] > self.cfg.chip_half_height_mm + self.cfg.stack_dz_mm)

    def is_success(self, fraction_inside: float) -> bool:
        return fraction_inside >= self.cfg.success_fraction

    def board_xy_mm(self) -> np.ndarray:
        return self.data.qpos[:2] / MM

    # ----------------------------------------------------------------- MujocoEnv hooks
    def _build_xml(self) -> str:
        return build_xml(self.cfg)

    def _task_info(self) -> dict:
        pos = self.chip_positions_mm()
        goal_pos = self.chip_positions_mm(self.goal_state)
        frac = self.fraction_inside(pos, self.goal_region_mm)
        return {
            "reward": frac,
            "fraction_inside": frac,
            "success": self.is_success(frac),
            "chamfer_mm": chamfer_mm(pos[:, :2], goal_pos[:, :2]),
            "n_off_table": int(self.off_table_mask(pos).sum()),
            "board_xy_mm": self.board_xy_mm(),
            "stacked": bool(self.stacked_mask(pos).any()),
            "max_chip_z_mm": float(pos[~self.off_table_mask(pos), 2].max(initial=0.0)),
            "max_chip_speed_mm_s": float(self.chip_speeds_mm_s().max()),
        }

    def _proprio(self) -> np.ndarray:
        xy = self.board_xy_mm() / (self.cfg.table_mm / 2) - 1.0
        w, _, _, z = self.data.qpos[3:7]
        heading = 2 * math.atan2(z, w) + math.pi / 2  # the board's local +y is the push direction
        return np.array([xy[0], xy[1], math.cos(heading), math.sin(heading)])

    def _extra_state(self) -> np.ndarray:
        return self._region_mm * MM

    def _set_extra_state(self, extra: np.ndarray) -> None:
        self._region_mm = extra / MM

    def _check_state(self, state: np.ndarray) -> None:
        check_region(self.region_of(state), self.cfg)

    def _state_from(self, chips_xy_mm: np.ndarray, board_xy_mm: np.ndarray, region_mm: np.ndarray) -> np.ndarray:
        """A resting state: flat chips at `chips_xy_mm`, lifted board (heading +y), goal square."""
        n, cfg = self.n_chips, self.cfg
        board = np.array([*board_xy_mm, cfg.lift_mm + cfg.board_half_mm[2]]) * MM
        board_pose = np.concatenate([board, _QUAT_ID])  # the board's free joint and its mocap target
        chips = np.asarray(chips_xy_mm, dtype=np.float64).ravel() * MM  # (x, y) per chip
        parts = [board_pose, chips, np.zeros(6 + 2 * n), board_pose[:3], board_pose[3:], region_mm * MM]
        return np.concatenate(parts)

    def _sample_init_state(self, rng: np.random.Generator, options: dict) -> np.ndarray:
        if options.get("goal_state") is not None:
            region = self.region_of(self.validate_state(options["goal_state"]))
        elif options.get("goal_region") is not None:
            region = self._checked_goal_region(options["goal_region"])
        else:
            region = sample_region(rng, self.cfg)
        self._pending_region_mm = region
        board = rng.uniform(0, self.cfg.table_mm, size=2)
        return self._state_from(scatter_chips(rng, self.cfg), board, region)

    def _sample_goal_state(self, rng: np.random.Generator, options: dict) -> np.ndarray:
        if options.get("goal_region") is not None:
            region = self._checked_goal_region(options["goal_region"])
        elif options.get("init_state") is not None:
            region = self.region_of(self.validate_state(options["init_state"]))
        else:
            region = self._pending_region_mm
        return self._state_from(grid_chips(rng, self.cfg, region), self._goal_board_xy(region), region)

    def _checked_goal_region(self, region) -> np.ndarray:
        region = check_region(region, self.cfg)
        if region[2] < self.cfg.min_region_side_mm() - 1e-9:
            raise EnvInputError(
                f"goal region side {region[2]:.1f} mm is too small for {self.n_chips} chips "
                f"(min {self.cfg.min_region_side_mm():.1f} mm)"
            )
        return region

    def _goal_board_xy(self, region: np.ndarray) -> np.ndarray:
        """Park the goal's board just below (or above) the square so it hides no goal chip."""
        cx, cy, side = region
        below = cy - side / 2 - self.cfg.board_half_mm[1] - 10.0
        return np.array([cx, below if below >= 0 else cy + side / 2 + self.cfg.board_half_mm[1] + 10.0])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = dict(options or {})
        if options.get("goal_state") is not None and options.get("init_state") is not None:
            # The goal square belongs to the goal: carry it into the initial state.
            init = self.validate_state(options["init_state"]).copy()
            init[-3:] = self.validate_state(options["goal_state"])[-3:]
            options["init_state"] = init
        return super().reset(seed=seed, options=options)

    # ----------------------------------------------------------------- the push
    def action_to_points_mm(self, action) -> tuple[np.ndarray, np.ndarray]:
        points = (np.asarray(action, dtype=np.float64) + 1.0) / 2.0 * self.cfg.table_mm
        return points[:2], points[2:]

    def points_to_action(self, start_mm, end_mm) -> np.ndarray:
        """Inverse of `action_to_points_mm`, clipped to the action space."""
        points = np.concatenate([start_mm, end_mm]) / (self.cfg.table_mm / 2) - 1.0
        return np.clip(points, -1.0, 1.0).astype(np.float32)

    def _apply_action(self, action: np.ndarray) -> None:
        cfg = self.cfg
        start, end = self.action_to_points_mm(action)
        delta = end - start
        d = self.data
        if np.hypot(*delta) >= 1.0:
            # Board's long (local x) axis across the push: local +y points along it.
            d.mocap_quat[self._board_mocap] = _yaw_quat(math.atan2(delta[1], delta[0]) - math.pi / 2)
        lifted, lowered = cfg.lift_mm + cfg.board_half_mm[2], cfg.board_clearance_mm + cfg.board_half_mm[2]
        # Lowering and lifting are instantaneous: the board (and its target) jump, so board-chip
        # contacts only ever exist with the board lowered, where their normals are horizontal; a chip
        # under the landing board is eased out sideways (`ChipsConfig.board_solref_s`).
        self._place_board(np.array([*start, lowered]))
        self._move_board(np.array([*end, lowered]), cfg.push_speed_mm_s)
        self._place_board(np.array([*end, lifted]))
        self._settle()

    def _place_board(self, pos_mm: np.ndarray) -> None:
        """Put the board and its mocap target at `pos_mm`, at rest, with the target's heading."""
        d = self.data
        d.mocap_pos[self._board_mocap] = pos_mm * MM
        d.qpos[:3], d.qpos[3:7], d.qvel[:6] = d.mocap_pos[self._board_mocap], d.mocap_quat[self._board_mocap], 0.0

    def _settle(self) -> None:
        """Step until every chip is slower than `rest_speed_mm_s`, for at most `settle_s`."""
        for _ in range(self._settle_steps):
            if self.chip_speeds_mm_s().max() < self.cfg.rest_speed_mm_s:
                break
            mujoco.mj_step(self.model, self.data)
        # mj_step leaves positions-derived quantities one step behind (and none after the lift):
        # recompute them so the frame shows exactly this state, as after `set_state`.
        mujoco.mj_forward(self.model, self.data)

    def _move_board(self, target_mm: np.ndarray, speed_mm_s: float) -> None:
        """Move the mocap board in a straight line at constant speed, one physics step at a time."""
        src = self.data.mocap_pos[self._board_mocap].copy()
        dst = target_mm * MM
        n = max(1, math.ceil(np.linalg.norm(dst - src) / (speed_mm_s * MM * self.cfg.timestep)))
        for k in range(1, n + 1):
            self.data.mocap_pos[self._board_mocap] = src + (dst - src) * (k / n)
            mujoco.mj_step(self.model, self.data)
