"""Maze layouts for `envs.maze`: the D4RL maze2d maps and seeded random mazes from labmaze.

A layout is a grid of 1 x 1 cells, ``#`` wall and ``O`` free, row 0 printed (and rendered) at the
top. Cell ``(row, col)`` has its centre at ``x = col``, ``y = n_rows - 1 - row``, so the rendered
image shows the map as printed. Each layout carries a numeric `code` that `MazeEnv` stores in its
state vector: 0, 1, 2 for the standard maps and ``-(seed + 1)`` for the random maze of that seed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from envs.base import EnvInputError

__all__ = ["MazeLayout", "STANDARD_LAYOUTS", "standard_layout", "random_layout", "layout_from_code"]

# D4RL maze2d maps (d4rl/pointmaze/maze_model.py), goal markers removed.
STANDARD_MAPS: dict[str, tuple[str, ...]] = {
    "umaze": ("#####", "#OOO#", "###O#", "#OOO#", "#####"),
    "medium": (
        "########", "#OO##OO#", "#OO#OOO#", "##OOO###",
        "#OO#OOO#", "#O#OO#O#", "#OOO#OO#", "########",
    ),
    "large": (
        "############", "#OOOO#OOOOO#", "#O##O#O#O#O#", "#OOOOOO#OOO#", "#O####O###O#",
        "#OO#O#OOOOO#", "##O#O#O#O###", "#OO#OOO#OOO#", "############",
    ),
}
STANDARD_LAYOUTS = tuple(STANDARD_MAPS)  # names, in code order
_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


@dataclass(frozen=True)
class MazeLayout:
    """A maze grid and the geometry derived from it (all lengths in cells)."""

    name: str  # "umaze", "medium", "large" or "random"
    rows: tuple[str, ...]  # the map, '#' wall, 'O' free, row 0 at the top
    code: float  # identifies the layout inside a state vector
    seed: int | None = None  # labmaze seed of a random layout

    def __post_init__(self):
        if len({len(r) for r in self.rows}) != 1 or set("".join(self.rows)) - {"#", "O"}:
            raise EnvInputError(f"maze map must be a rectangle of '#' and 'O', got {self.rows}")
        if not self.free_cells:
            raise EnvInputError(f"maze {self.name!r} has no free cell")

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.rows[0])

    @cached_property
    def free_cells(self) -> tuple[tuple[int, int], ...]:
        return tuple((r, c) for r, row in enumerate(self.rows) for c, ch in enumerate(row) if ch == "O")

    def in_grid(self, cell) -> bool:
        return 0 <= cell[0] < self.shape[0] and 0 <= cell[1] < self.shape[1]

    def is_free(self, cell) -> bool:
        return self.in_grid(cell) and self.rows[cell[0]][cell[1]] == "O"

    def cell_center(self, cell) -> np.ndarray:
        """World (x, y) of a cell's centre."""
        return np.array([cell[1], self.shape[0] - 1 - cell[0]], dtype=np.float64)

    def cell_of(self, pos) -> tuple[int, int]:
        """The (row, col) of the cell containing world position `pos` (may lie outside the grid)."""
        x, y = float(pos[0]), float(pos[1])
        return int(np.floor(self.shape[0] - 1 - y + 0.5)), int(np.floor(x + 0.5))

    def wall_clearance(self, pos) -> float:
        """Distance from `pos` to the nearest wall cell; 0 inside a wall cell or outside the grid."""
        r0, c0 = self.cell_of(pos)
        if not self.is_free((r0, c0)):
            return 0.0
        best = np.inf
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                cell = (r0 + dr, c0 + dc)
                if self.in_grid(cell) and not self.is_free(cell):
                    gap = np.maximum(np.abs(np.asarray(pos, float) - self.cell_center(cell)) - 0.5, 0.0)
                    best = min(best, float(np.hypot(*gap)))
        return best

    def distances_to(self, goal_cell) -> dict[tuple[int, int], int]:
        """Breadth-first cell distances from every reachable free cell to `goal_cell`."""
        dist = {tuple(goal_cell): 0}
        queue = deque([tuple(goal_cell)])
        while queue:
            r, c = queue.popleft()
            for dr, dc in _NEIGHBOURS:
                nxt = (r + dr, c + dc)
                if nxt not in dist and self.is_free(nxt):
                    dist[nxt] = dist[(r, c)] + 1
                    queue.append(nxt)
        return dist

    def shortest_path(self, start_cell, goal_cell) -> list[tuple[int, int]]:
        """Cells from `start_cell` to `goal_cell` inclusive along a shortest path ([] if unreachable)."""
        dist = self.distances_to(goal_cell)
        return path_from(tuple(start_cell), dist)

    def wall_runs(self) -> list[tuple[int, int, int]]:
        """Wall cells merged into horizontal runs (row, first col, last col): fewer geoms to collide/draw."""
        runs = []
        for r, row in enumerate(self.rows):
            c = 0
            while c < len(row):
                if row[c] == "#":
                    end = c
                    while end + 1 < len(row) and row[end + 1] == "#":
                        end += 1
                    runs.append((r, c, end))
                    c = end
                c += 1
        return runs


def path_from(start_cell, dist: dict) -> list[tuple[int, int]]:
    """Follow decreasing breadth-first distances from `start_cell` down to 0."""
    if start_cell not in dist:
        return []
    path = [start_cell]
    while dist[path[-1]]:
        r, c = path[-1]
        path.append(min(((r + dr, c + dc) for dr, dc in _NEIGHBOURS), key=lambda n: dist.get(n, np.inf)))
    return path


def standard_layout(name: str) -> MazeLayout:
    if name not in STANDARD_MAPS:
        raise EnvInputError(f"unknown maze layout {name!r}; choose one of {list(STANDARD_LAYOUTS)} or 'random'")
    return MazeLayout(name, STANDARD_MAPS[name], float(STANDARD_LAYOUTS.index(name)))


def random_layout(seed: int, shape: tuple[int, int] = (9, 9)) -> MazeLayout:
    """The labmaze `RandomMaze` of `seed`: corridors one cell wide, outer wall included.

    Same seed and shape, same maze, so train/test splits of layouts are splits of seeds.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**31:
        raise EnvInputError(f"layout_seed must be an int in [0, 2**31), got {seed!r}")
    n_rows, n_cols = shape
    if n_rows % 2 == 0 or n_cols % 2 == 0 or min(shape) < 5:
        raise EnvInputError(f"random maze shape must be odd and >= 5 in both sizes, got {shape}")
    import labmaze  # dm-control's maze generator; imported here so standard mazes do not need it

    maze = labmaze.RandomMaze(
        height=n_rows, width=n_cols, max_rooms=0, simplify=False, random_seed=int(seed)
    )
    rows = tuple("".join("#" if ch == "*" else "O" for ch in line) for line in str(maze.entity_layer).splitlines() if line)
    return MazeLayout("random", rows, float(-(int(seed) + 1)), seed=int(seed))


def layout_from_code(code: float, random_shape: tuple[int, int] = (9, 9)) -> MazeLayout:
    """Inverse of `MazeLayout.code`."""
    if not np.isfinite(code) or code != np.round(code) or code >= len(STANDARD_LAYOUTS):
        raise EnvInputError(f"invalid maze layout code {code!r} in state")
    if code >= 0:
        return standard_layout(STANDARD_LAYOUTS[int(code)])
    return random_layout(int(-code) - 1, random_shape)
