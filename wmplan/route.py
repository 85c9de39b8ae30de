"""Route energy: the distance to the goal measured along places the dataset has been.

The latent goal energy pulls straight towards the goal. In a maze, a goal behind a wall then pulls
the agent against the wall: no short-horizon plan moving away from the goal scores better, so MPC
stalls there (every U-maze failure of the plain planners is such a goal across the middle wall).
Search on the replay buffer (Eysenbach et al. 2019, SoRB) removes that local minimum with a graph
over states seen in the data; this module does the same with the agent position the probe reads
from latents, so nothing leaves representation space and nothing consults the simulator:

    dataset latents --probe--> positions --farthest-point sampling--> M nodes
    consecutive frames of an episode --> edges between their nearest nodes
    Floyd-Warshall --> dist[M, M], the length of the shortest path through the data

`RouteEnergy` charges a predicted position p its distance-to-go towards the goal position g (both
read by the probe)::

    cost(p) = min( near(|p - g|),  min_n near(|p - n|) + min_m (dist[n, m] + near(|m - g|)) )

with ``near(d) = d + slope * max(0, d - reach)``: straight lines only count up to `reach` (less than
a wall's thickness), farther ones are charged steeply. The cost is zero at the goal, decreases along
the data's routes, and is differentiable almost everywhere (gradient planners can use it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from wmplan.checkpoint import CheckpointError, load_checkpoint, save_atomic
from wmplan.costs import CostTerm, _step_weights

__all__ = ["RouteGraphConfig", "RouteGraph", "RouteEnergy", "dataset_positions"]

KIND = "wmplan-route-graph"
UNREACHABLE = 1e4  # stands in for an infinite path length, so sums and gradients stay finite


@dataclass(frozen=True)
class RouteGraphConfig:
    """How the graph is built from a dataset's positions."""

    nodes: int = 200  # places kept by farthest-point sampling
    stride: int = 7  # sample every stride-th frame as a node candidate (all frames still make edges)
    seed: int = 0  # picks the first node

    def __post_init__(self):
        if self.nodes < 2 or self.stride < 1:
            raise ValueError(f"a route graph needs nodes >= 2 and stride >= 1, got {self.nodes} and {self.stride}")


class RouteGraph:
    """Nodes ``[M, 2]`` (positions) and a symmetric adjacency ``[M, M]`` from observed transitions."""

    def __init__(self, nodes: torch.Tensor, adjacency: torch.Tensor, meta: Optional[dict] = None):
        nodes, adjacency = torch.as_tensor(nodes, dtype=torch.float32), torch.as_tensor(adjacency, dtype=torch.bool)
        M = nodes.shape[0]
        if nodes.ndim != 2 or nodes.shape[1] != 2 or adjacency.shape != (M, M) or not torch.isfinite(nodes).all():
            raise ValueError(f"a route graph needs finite nodes [M, 2] and adjacency [M, M], got "
                             f"{tuple(nodes.shape)} and {tuple(adjacency.shape)}")
        self.nodes, self.adjacency, self.meta = nodes, adjacency | adjacency.T, dict(meta or {})

    @classmethod
    def build(cls, positions: Sequence[np.ndarray], config: RouteGraphConfig = RouteGraphConfig()) -> "RouteGraph":
        """From per-episode positions ``[T_e, 2]`` (consecutive frames are transitions)."""
        episodes = [torch.as_tensor(np.ascontiguousarray(p, dtype=np.float32)) for p in positions]
        if not episodes or any(p.ndim != 2 or p.shape[1] != 2 for p in episodes):
            raise ValueError("route graph: expected a non-empty list of [T, 2] position arrays")
        frames = torch.cat(episodes)  # [F, 2]
        if not torch.isfinite(frames).all():
            raise ValueError("route graph: positions contain NaN or inf")
        nodes = _farthest_points(frames[:: config.stride], config.nodes, config.seed)  # [M, 2]
        adjacency = torch.zeros(len(nodes), len(nodes), dtype=torch.bool)
        for p in episodes:
            place = torch.cdist(p, nodes).argmin(1)  # [T] nearest node of each frame
            adjacency[place[:-1], place[1:]] = True
        adjacency.fill_diagonal_(False)
        return cls(nodes, adjacency, {"config": asdict(config), "frames": len(frames), "episodes": len(episodes)})

    def distances(self, exclude: Sequence = ()) -> torch.Tensor:
        """Shortest path lengths ``[M, M]`` (`UNREACHABLE` if none), avoiding nodes inside any
        ``(x, y, radius)`` disc of `exclude` (e.g. a keep-out region with its margin)."""
        allowed = self.adjacency.clone()
        for x, y, radius in exclude:
            inside = (self.nodes - torch.tensor([x, y])).norm(dim=1) < radius  # [M]
            allowed &= ~inside[:, None] & ~inside[None]
        step = torch.cdist(self.nodes, self.nodes)  # [M, M] edge lengths
        dist = torch.where(allowed, step, torch.full_like(step, float("inf")))
        dist.fill_diagonal_(0.0)
        for k in range(len(self.nodes)):  # Floyd-Warshall, vectorised over (i, j)
            dist = torch.minimum(dist, dist[:, k : k + 1] + dist[k : k + 1, :])
        return dist.clamp(max=UNREACHABLE)

    def spacing(self) -> float:
        """Median distance from a node to its nearest neighbour."""
        d = torch.cdist(self.nodes, self.nodes)
        d.fill_diagonal_(float("inf"))
        return float(d.min(1).values.median())

    def save(self, path) -> Path:
        return save_atomic({"kind": KIND, "nodes": self.nodes, "adjacency": self.adjacency, "meta": self.meta}, path)

    @classmethod
    def load(cls, path) -> "RouteGraph":
        d = load_checkpoint(path, kind=KIND)
        try:
            return cls(d["nodes"], d["adjacency"], d.get("meta"))
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"{path} is not a valid route graph ({err}); rebuild it with `wmplan route-graph`") from None


def _farthest_points(points: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """`count` points ``[count, 2]`` spread over `points` ``[F, 2]`` (greedy farthest-point sampling)."""
    if len(points) < count:
        raise ValueError(f"route graph: {len(points)} candidate positions for {count} nodes; lower nodes or stride")
    first = int(torch.randint(len(points), (1,), generator=torch.Generator().manual_seed(seed)))
    chosen, gap = [first], (points - points[first]).norm(dim=1)  # gap: distance to the nearest chosen point
    for _ in range(count - 1):
        j = int(gap.argmax())
        chosen.append(j)
        gap = torch.minimum(gap, (points - points[j]).norm(dim=1))
    return points[chosen]


class RouteEnergy(CostTerm):
    """Distance-to-go of the predicted agent positions along a `RouteGraph` (see the module doc).

    Args:
        graph: the route graph (positions in the probe's units).
        steps: "last", "all" (uniform) or H weights over predicted steps.
        reach: longest straight line between a position and a node (or the goal); keep it below the
            thinnest wall. Default: 2.5 x the graph's node spacing.
        slope: extra cost per unit beyond `reach`.
        exclude: ``(x, y, radius)`` discs whose nodes the route may not use (keep-out regions).
        readout: position readout (default: the context's).
    """

    def __init__(self, graph: RouteGraph, name="route", weight=1.0, steps="all", reach: Optional[float] = None,
                 slope: float = 10.0, exclude: Sequence = (), readout: Optional[Callable] = None):
        super().__init__(name, weight, "penalty")
        self.nodes, self.dist = graph.nodes, graph.distances(exclude)  # [M, 2], [M, M]
        self.reach = 2.5 * graph.spacing() if reach is None else float(reach)
        if not self.reach > 0 or slope < 0:
            raise ValueError(f"route energy needs reach > 0 and slope >= 0, got {self.reach} and {slope}")
        self.steps, self.slope, self.readout = steps, slope, readout

    def _near(self, d: torch.Tensor) -> torch.Tensor:
        return d + self.slope * (d - self.reach).clamp_min(0)

    def _to_goal(self, ctx) -> tuple:
        """Goal position ``[B, 2]`` and each node's distance-to-go ``[B, M]``, once per context."""
        key = ("route_to_goal", id(self))
        if key not in ctx.cache:
            readout = self.readout or ctx.readout
            if readout is None or ctx.z_goal is None:
                raise ValueError("the route energy needs a goal latent and a position readout (probe)")
            goal = readout(ctx.z_goal)  # [B, 2]
            last_leg = self._near(torch.cdist(goal[:, None], self.nodes[None].to(goal)))  # [B, 1, M]
            ctx.cache[key] = goal, (self.dist[None].to(goal) + last_leg).min(-1).values  # [B, M]
        return ctx.cache[key]

    def amount(self, ctx):
        pos = ctx.positions(self.readout)  # [B, N, H, 2]
        goal, to_goal = self._to_goal(ctx)  # [B, 2], [B, M]
        B, N, H, _ = pos.shape
        first_leg = self._near(torch.cdist(pos.reshape(B, N * H, 2), self.nodes[None].to(pos).expand(B, -1, -1)))
        via = (first_leg + to_goal[:, None]).min(-1).values.reshape(B, N, H)  # through the graph
        direct = self._near((pos - goal[:, None, None]).norm(dim=-1))  # [B, N, H]
        per_step = torch.minimum(via, direct)
        return per_step @ _step_weights(H, self.steps, per_step.device)


def dataset_positions(world_model, dataset, names=("agent_x", "agent_y"), device: str = "cpu",
                      progress: bool = True) -> list[np.ndarray]:
    """Per-episode positions ``[T+1, 2]`` read by the world model's probe from the dataset's latents
    (cached encoder features plus proprio), the way a planner reads predicted ones."""
    from wmplan.costs import probe_readout
    from wmplan.train import LatentData

    if world_model.probe is None:
        raise ValueError("the world model has no probe; train it with `wmplan train` (it fits one)")
    readout = probe_readout(world_model.probe, names)
    data = LatentData(dataset, world_model.encoder, device=device, progress=progress)
    mean, std = world_model.proprio_mean.cpu(), world_model.proprio_std.cpu()
    with torch.no_grad():
        return [readout(z.to(world_model.device)).cpu().numpy() for z in data.latents(mean, std)]
