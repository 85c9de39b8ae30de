"""Gradient-descent planning through the world model (DINO-WM's GD baseline; Adam, Kingma & Ba 2015).

Actions are optimised in box-normalised coordinates ``u = (a - centre) / half_range`` so one learning
rate fits every action scale; after each Adam step they are projected back onto the box. Several
starts (the warm start, any carried elites, then noisy copies of the warm start) descend in
parallel inside one batched objective call per step; the best iterate seen is returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from wmplan.planners.base import BestTracker, Planner, PlanResult, Problem

__all__ = ["GDConfig", "GDPlanner"]


@dataclass(frozen=True)
class GDConfig:
    """Settings of `GDPlanner`."""

    num_starts: int = 8  # S, parallel starts per environment (multi-start)
    iterations: int = 50  # Adam steps per re-plan
    lr: float = 0.1  # Adam learning rate in units of the half action range
    final_lr: float = 0.05  # cosine-annealed final learning rate, as a fraction of `lr`
    init_noise: float = 0.5  # std of the extra starts around the warm start, fraction of half range
    violation_weight: float = 1e3  # cost added per unit of constraint violation

    def __post_init__(self):
        if self.num_starts < 1 or self.iterations < 1:
            raise ValueError(f"need num_starts >= 1 and iterations >= 1, got {self.num_starts}, {self.iterations}")
        if not 0 < self.final_lr <= 1:
            raise ValueError(f"final_lr must be in (0, 1], got {self.final_lr}")
        if self.lr <= 0 or self.init_noise < 0 or self.violation_weight < 0:
            raise ValueError("need lr > 0, init_noise >= 0, violation_weight >= 0")


class GDPlanner(Planner):
    """Multi-start projected Adam on the action sequence."""

    needs_grad = True

    def __init__(self, config: GDConfig = GDConfig(), device: str | torch.device = "cpu"):
        super().__init__(device)
        self.config = config

    def _optimise(self, problem: Problem) -> PlanResult:
        best = BestTracker(problem)
        self.descend(problem, self.starts(problem, problem.init_elites), best)
        return best.result()

    def starts(self, problem: Problem, seeds: torch.Tensor | None) -> torch.Tensor:
        """Starting sequences ``[B, S, H, A]``: warm start, then `seeds` ``[B, K, H, A]``, then noise."""
        S, B, H, A = self.config.num_starts, problem.batch_size, problem.horizon, problem.action_dim
        parts = [problem.init[:, None]] + ([seeds] if seeds is not None else [])
        n_fixed = sum(p.shape[1] for p in parts)
        noise = torch.randn((B, max(S - n_fixed, 0), H, A), generator=problem.generator, device=problem.low.device)
        parts.append(problem.init[:, None] + self.config.init_noise * problem.half_range * noise)
        return problem.clamp(torch.cat(parts, dim=1)[:, :S])

    def descend(self, problem: Problem, starts: torch.Tensor, best: BestTracker) -> None:
        """Run projected Adam from ``starts [B, S, H, A]``, folding every iterate into `best`."""
        cfg = self.config
        centre = (problem.low + problem.high) / 2
        half = problem.half_range.clamp_min(1e-8)
        with torch.inference_mode(False), torch.enable_grad():
            centre, half = centre.clone(), half.clone()  # normal tensors even if made in inference mode
            u = ((starts.clone() - centre) / half).requires_grad_(True)  # [B, S, H, A] in [-1, 1]
            optim = torch.optim.Adam([u], lr=cfg.lr)
            for step in range(cfg.iterations + 1):
                actions = centre + half * u
                out = problem.evaluate(actions)
                best.update(actions, out)
                if step == cfg.iterations:
                    break  # the last iterate is evaluated, not stepped
                loss = (out.total + cfg.violation_weight * out.violation).sum()  # candidates are independent
                anneal = 0.5 * (1 + math.cos(math.pi * step / max(cfg.iterations - 1, 1)))
                optim.param_groups[0]["lr"] = cfg.lr * (cfg.final_lr + (1 - cfg.final_lr) * anneal)
                # autograd.grad, not backward: the world model's parameters get no .grad
                (u.grad,) = torch.autograd.grad(loss, u)
                u.grad.nan_to_num_(0.0)
                optim.step()
                with torch.no_grad():
                    u.clamp_(-1.0, 1.0)  # projection onto the box
