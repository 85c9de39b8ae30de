"""Chip sweeping: configuration, MJCF, layouts and task metrics (pure functions, no env state).

Units: everything task-facing here (configs, layouts, regions, metrics) is in **millimetres** in
table coordinates, the table being the square [0, 512]² mm with its top at z = 0. The MuJoCo model
and the env's state vector are in SI **metres**; `MM` converts at that one boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from envs.base import FAST_RENDER_VISUAL, EnvInputError

MM = 1e-3  # metres per millimetre
_MIN_GAP_MM = 1.0  # clearance between sampled chips so that no contact starts in penetration


@dataclass(frozen=True)
class ChipsConfig:
    """Geometry, physics and task constants of the chip-sweeping env (ENVS.md, "Chip sweeping")."""

    n_chips: int = 100  # number of chips, 30-150
    table_mm: float = 512.0  # side of the square table
    chip_radius_mm: float = 7.5  # flat cylinder radius
    chip_half_height_mm: float = 2.5  # flat cylinder half-height
    chip_mass_g: tuple[float, float] = (2.0, 5.0)  # masses spread evenly over this range (fixed per chip)
    friction: float = 0.5  # sliding friction between chips and between chips and board
    # Table friction: chips slide in the table plane, where gravity cannot load a contact (ENVS.md), so
    # each slide has damping m / tau. tau = 0.03 s matches Coulomb friction 0.5 (m g 0.5 = m v / tau)
    # at the 150 mm/s push speed; a released chip coasts v tau (4.5 mm at 150 mm/s).
    slide_time_const_s: float = 0.03
    # Board-chip contact time constant, softer than chip-chip (2 timesteps): a board lowered onto
    # chips eases them out from under it (peaks <= 0.3 m/s) instead of flinging them (0.55 m/s at
    # 0.01 s); while pushing, the board penetrates chips by at most ~1.3 mm.
    board_solref_s: float = 0.02
    timestep: float = 0.005  # physics step in seconds
    board_half_mm: tuple[float, float, float] = (50.0, 5.0, 12.0)  # half-sizes: across, along the push, height
    push_speed_mm_s: float = 150.0  # board speed while pushing, 100-200
    board_clearance_mm: float = 0.5  # gap between the lowered board and the table
    lift_mm: float = 30.0  # gap between the lifted board and the table
    board_mass_kg: float = 0.1  # the welded board's mass: 20-50x a chip, so chips barely deflect it
    settle_s: float = 0.2  # at most this much simulated time after each push with the board lifted
    patch_side_mm: tuple[float, float] = (250.0, 350.0)  # initial scatter patch side range
    max_patch_density: float = 0.35  # chip discs (+ gap) cover at most this share of the patch
    region_side_mm: tuple[float, float] = (160.0, 220.0)  # goal square side range
    max_region_fill: float = 0.7  # chips cover at most this share of the goal square
    success_fraction: float = 0.9  # success: at least this share of chip centres inside the square
    stack_dz_mm: float = 2.0  # a chip whose centre is this far above resting height counts as stacked
    rest_speed_mm_s: float = 1.0  # chips slower than this count as at rest; the settle phase waits for it

    def __post_init__(self):
        if not isinstance(self.n_chips, (int, np.integer)) or not 30 <= self.n_chips <= 150:
            raise EnvInputError(f"n_chips must be an int in [30, 150], got {self.n_chips!r}")
        if not 100.0 <= self.push_speed_mm_s <= 200.0:
            raise EnvInputError(f"push_speed_mm_s must be in [100, 200] mm/s, got {self.push_speed_mm_s}")
        if self.min_region_side_mm() > self.region_side_mm[1]:
            raise EnvInputError(f"{self.n_chips} chips do not fit a {self.region_side_mm[1]} mm goal square")

    def min_region_side_mm(self) -> float:
        """Smallest goal square that holds the chips' grid and keeps the fill ≤ `max_region_fill`."""
        chips_area = self.n_chips * math.pi * self.chip_radius_mm**2
        nx, ny = grid_shape(self.n_chips)
        grid_side = max(nx, ny) * (2 * self.chip_radius_mm + _MIN_GAP_MM)
        return max(math.sqrt(chips_area / self.max_region_fill), grid_side, self.region_side_mm[0])

    def min_patch_side_mm(self) -> float:
        disc = math.pi * (self.chip_radius_mm + _MIN_GAP_MM / 2) ** 2
        return max(math.sqrt(self.n_chips * disc / self.max_patch_density), self.patch_side_mm[0])

    def chip_masses_kg(self) -> np.ndarray:
        return np.linspace(*self.chip_mass_g, self.n_chips) * 1e-3


# --------------------------------------------------------------------------- MJCF
def build_xml(cfg: ChipsConfig) -> str:
    """The MJCF (metres): table plane, a board welded to a mocap target, `n_chips` planar chips.

    Chips slide in the table plane (joints slide x, slide y): they cannot tip, ride on each other or
    stack, and need no table contacts, which made most of the contact work of free chips. A chip
    collides as a sphere of its radius at its centre height and is drawn as a flat cylinder; the
    spheres all share that height, so their contacts act exactly as the discs' rims do. A disc's
    yaw is invisible and only couples to rim friction, so chips have no hinge (no unobservable state).
    """
    half_table = cfg.table_mm / 2 * MM
    bx, by, bz = (v * MM for v in cfg.board_half_mm)
    lifted = (cfg.lift_mm + cfg.board_half_mm[2]) * MM
    board_inertia = cfg.board_mass_kg * bx**2 / 3
    r, h = cfg.chip_radius_mm * MM, cfg.chip_half_height_mm * MM
    # The board's collision box reaches `reach` below its visible bottom (never the table: the table
    # collides with nothing), so a chip centre under the lowered board is always nearer a side face
    # than the bottom and every board-chip normal is horizontal. Lifted, it clears the spheres.
    reach = (cfg.board_clearance_mm + cfg.chip_half_height_mm + 10.0) * MM
    assert cfg.lift_mm * MM - reach > h + r, "the lifted board's collision box must clear the chips"
    # numslices: a 64-px frame needs few facets per cylinder, and 100 cylinders dominate render time.
    visual = FAST_RENDER_VISUAL.replace('offsamples="0"/>', 'offsamples="0" numslices="8"/>')
    assert "numslices" in visual
    chips = "\n".join(
        f'    <body name="chip{i}" pos="0 0 {h:.5f}">'
        f'<joint name="chip{i}_x" axis="1 0 0" damping="{m / cfg.slide_time_const_s:.6g}"/>'
        f'<joint name="chip{i}_y" axis="0 1 0" damping="{m / cfg.slide_time_const_s:.6g}"/>'
        f'<geom class="chip" mass="{m:.6f}"/><geom class="chip_visual"/></body>'
        for i, m in enumerate(cfg.chip_masses_kg())
    )
    # The board is a heavy gravity-compensated free body welded to the mocap target `board_target`,
    # so its contacts see a real velocity (a mocap body's contacts are penetration-driven).
    # jacobian="dense": with sparse Jacobians, MuJoCo 4.0.0's Newton solver returns wrong constraint
    # forces for piles of these slide-joint chips (the same efc_J, R and aref solved densely or by
    # CG agree; sparse differs and pushed chips reached metres per second).
    # Collision bits: chips 1/1, board 1/0, table 0/0 -> chips touch chips and the board only.
    return f"""<mujoco model="chips">
  <option timestep="{cfg.timestep}" cone="elliptic" integrator="implicitfast" jacobian="dense"/>
  {visual}
  <default>
    <geom friction="{cfg.friction} 0.005 0.0001" solref="{2 * cfg.timestep} 1" solimp="0.95 0.99 0.001"/>
    <joint type="slide"/>
    <default class="chip">
      <geom type="sphere" size="{r}" contype="1" conaffinity="1" group="3"/>
    </default>
    <default class="chip_visual">
      <geom type="cylinder" size="{r} {h}" contype="0" conaffinity="0" mass="0" rgba="0.95 0.55 0.1 1"/>
    </default>
  </default>
  <worldbody>
    <camera name="top" projection="orthographic" fovy="{2 * half_table}" pos="{half_table} {half_table} 1"
            xyaxes="1 0 0 0 1 0"/>
    <geom name="table" type="plane" size="{half_table} {half_table} 0.01" pos="{half_table} {half_table} 0"
          rgba="0.85 0.85 0.85 1" contype="0" conaffinity="0"/>
    <body name="board_target" mocap="true" pos="{half_table} {half_table} {lifted}"/>
    <body name="board" pos="{half_table} {half_table} {lifted}" gravcomp="1">
      <freejoint name="board"/>
      <inertial pos="0 0 0" mass="{cfg.board_mass_kg}" diaginertia="{board_inertia} {board_inertia} {board_inertia}"/>
      <geom name="board" type="box" size="{bx} {by} {bz}" rgba="0.15 0.3 0.8 1" contype="0" conaffinity="0"/>
      <geom name="board_collision" type="box" size="{bx} {by} {bz + reach / 2}" pos="0 0 {-reach / 2}"
            contype="1" conaffinity="0" priority="1" group="3" solref="{cfg.board_solref_s} 1"/>
    </body>
{chips}
  </worldbody>
  <equality>
    <weld body1="board" body2="board_target" solref="{2 * cfg.timestep} 1"/>
  </equality>
</mujoco>"""


# --------------------------------------------------------------------------- layouts (mm)
def grid_shape(n: int) -> tuple[int, int]:
    nx = math.ceil(math.sqrt(n))
    return nx, math.ceil(n / nx)


def sample_region(rng: np.random.Generator, cfg: ChipsConfig) -> np.ndarray:
    """A goal square `(cx, cy, side)` in mm, wholly on the table."""
    side = rng.uniform(cfg.min_region_side_mm(), cfg.region_side_mm[1])
    centre = rng.uniform(side / 2, cfg.table_mm - side / 2, size=2)
    return np.array([centre[0], centre[1], side])


def check_region(region, cfg: ChipsConfig) -> np.ndarray:
    """Validate a goal square `(cx, cy, side)` in mm; raise `EnvInputError` if it is unusable."""
    region = np.asarray(region, dtype=np.float64)
    if region.shape != (3,) or not np.all(np.isfinite(region)):
        raise EnvInputError(f"goal region must be 3 finite numbers (cx, cy, side) in mm, got {region!r}")
    (cx, cy, side), eps = region, 1e-6
    if side <= 0 or min(cx, cy) - side / 2 < -eps or max(cx, cy) + side / 2 > cfg.table_mm + eps:
        raise EnvInputError(
            f"goal region (cx={cx:.1f}, cy={cy:.1f}, side={side:.1f}) mm is off the table [0, {cfg.table_mm}]²"
        )
    return region


def scatter_chips(rng: np.random.Generator, cfg: ChipsConfig) -> np.ndarray:
    """(N, 2) chip centres in mm scattered without overlap over a random square patch."""
    side = rng.uniform(cfg.min_patch_side_mm(), max(cfg.min_patch_side_mm(), cfg.patch_side_mm[1]))
    r = cfg.chip_radius_mm
    low = rng.uniform(0, cfg.table_mm - side, size=2) + r
    high = low + side - 2 * r
    min_dist = 2 * r + _MIN_GAP_MM
    xy = np.empty((0, 2))
    while len(xy) < cfg.n_chips:  # random sequential addition; the density cap keeps it far from jamming
        cand = rng.uniform(low, high, size=(64, 2))
        for c in cand:
            if len(xy) == 0 or np.min(np.hypot(*(xy - c).T)) >= min_dist:
                xy = np.vstack([xy, c])
                break
    return xy


def grid_chips(rng: np.random.Generator, cfg: ChipsConfig, region: np.ndarray) -> np.ndarray:
    """(N, 2) chip centres in mm on a jittered grid filling the goal square."""
    cx, cy, side = region
    nx, ny = grid_shape(cfg.n_chips)
    step = side / max(nx, ny)
    jitter = max(0.0, (step - 2 * cfg.chip_radius_mm - _MIN_GAP_MM) / 2)
    ix, iy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    slots = np.stack([ix.ravel(), iy.ravel()], axis=1)[rng.permutation(nx * ny)[: cfg.n_chips]]
    centred = (slots - (np.array([nx, ny]) - 1) / 2) * step  # grid centred on the region
    return centred + np.array([cx, cy]) + rng.uniform(-jitter, jitter, size=centred.shape)


# --------------------------------------------------------------------------- task metrics (mm)
def inside_mask(xy: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Which chip centres (N, 2) lie strictly inside the axis-aligned goal square."""
    cx, cy, side = region
    return (np.abs(xy[:, 0] - cx) < side / 2) & (np.abs(xy[:, 1] - cy) < side / 2)


def chamfer_mm(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Chamfer distance between point sets (N, 2) and (M, 2), in their units.

    mean_a min_b |a - b| + mean_b min_a |a - b| (the sum of both directions, as in DINO-WM's
    granular task; halve it for the average-of-directions convention).
    """
    dist = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])  # (N, M)
    return float(dist.min(axis=1).mean() + dist.min(axis=0).mean())
